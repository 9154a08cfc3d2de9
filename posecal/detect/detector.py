"""Which person detector a user asked for: the shipped SSD (posecal/detect/ssd.py), the shipped NanoDet-m
(posecal/detect/nanodet.py), both merged (posecal/detect/union.py), none, or a YOLOX-style ONNX file
(posecal/detect/yolox.py); and when a pose found in a whole image counts as somebody."""
from __future__ import annotations

from pathlib import Path

from posecal.detect.nanodet import NanoDetPersonDetector
from posecal.detect.ssd import SsdPersonDetector
from posecal.detect.union import UnionPersonDetector
from posecal.detect.yolox import YoloxPersonDetector
from posecal.errors import PosecalInputError

# The detectors posecal ships, by the name a user gives (--detector NAME, Predictor(detector=NAME)); "default" is
# the SSD; "ssd+nanodet" runs both and merges their boxes. Anything else but "none" is a YOLOX-style ONNX file.
SHIPPED_DETECTORS = {"default": SsdPersonDetector, "ssd": SsdPersonDetector, "nanodet": NanoDetPersonDetector,
                     "ssd+nanodet": UnionPersonDetector}


def load_detector(spec: str | None, score_threshold: float | None = None, threads: int = 2, device: str = "cpu"):
    """The person detector a user asked for: None, "default" or "ssd" = the shipped SSD (posecal/detect/ssd.py),
    "nanodet" = the shipped NanoDet-m (posecal/detect/nanodet.py), "ssd+nanodet" = both, boxes merged on a common
    score scale (posecal/detect/union.py), "none" = no detector (None: each image is one person box), anything else
    = a YOLOX-style ONNX file. Names are case-blind. score_threshold None = the detector's own default (SSD and
    YOLOX 0.3, NanoDet nanodet.NANODET_THRESHOLD, ssd+nanodet union.COMMON_SURE on its common scale). device: 'cpu'
    or 'cuda' (onnxruntime's CUDA provider; the CPU, said once, where it cannot run: posecal/devices.py)."""
    name = "default" if spec is None else str(spec).lower()
    if name == "none":
        return None
    kwargs = {"threads": threads, "device": device} | ({} if score_threshold is None else
                                                       {"score_threshold": score_threshold})
    if name in SHIPPED_DETECTORS:
        return SHIPPED_DETECTORS[name](**kwargs)
    if not Path(spec).is_file():   # a mistyped name is told from a missing file only by naming both
        raise PosecalInputError(f"{spec}: neither a detector posecal ships ({', '.join([*SHIPPED_DETECTORS, 'none'])})"
                                f" nor a detector model file found")
    return YoloxPersonDetector(spec, **kwargs)
