"""CI: posecal installed without extras (`pip install .`: no PyTorch, onnx or onnxscript) runs its API, `predict`,
`track` and `eval` on real photos and a real clip, on the packaged ONNX graphs, with no export.

Run from outside the checkout, so the installed package (not the source tree) is what is imported. The photos are
the first person crops of ../shared/data when CI has them; without them the check only imports, builds the
Predictor and finds nobody on a blank picture.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import posecal
from posecal import PoseTracker, Predictor

repo = Path(sys.argv[1]).resolve()
installed = Path(posecal.__file__).resolve()
assert "site-packages" in installed.parts and installed.parent != repo / "posecal", \
    f"imported the checkout, not the install: {posecal.__file__}"
for module in ("torch", "onnx", "onnxscript"):
    assert importlib.util.find_spec(module) is None, f"{module} is installed: this check needs a plain install"
assert not list((installed.parent / "weights").glob("*.pt")), "the wheel carries PyTorch model files"
work = Path(tempfile.mkdtemp())
os.environ["POSECAL_CACHE_DIR"] = str(work / "cache")   # an export would land here: none may
predictor = Predictor()
from posecal.devices import choose_precision  # noqa: E402

assert predictor.estimator.runner.int8 == (choose_precision("auto")[0] == "int8") == (predictor.precision == "int8"), \
    "the default model should run the graphs its precision rule picks for this CPU"
assert predictor(np.zeros((240, 320, 3), np.uint8)).people == []
data = repo.parent / "shared" / "data"
crops = data / "coco-val2017-crops"
ann = json.loads((crops / "annotations" / "val.json").read_text()) if crops.is_dir() else {"images": []}
photos = [crops / "images" / image["file_name"] for image in ann["images"][:3]]
if not photos:
    print("plain install: posecal imports and its Predictor runs (no shared data here for a photo)")
    sys.exit(0)


def posecal_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "posecal.cli.main", *args, "--no-progress"], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"posecal {args[0]} failed:\n{done.stderr}"
    return done.stdout


import cv2  # noqa: E402

found = 0
for photo in photos:
    people = predictor(cv2.imread(str(photo))).people       # the API takes BGR, as OpenCV reads it
    found += len(people)
    for p in people:
        assert p.keypoints.shape == (17, 2) and 0 <= p.pose_quality <= 1 and p.in_frame is not None
        assert p.person_probability is not None and 0 <= p.person_probability <= 1   # the verifier ran
assert found > 0
posecal_cli("predict", str(photos[0]), "--out", str(work / "p.json"), "--model", "fast", "--no-flip")
assert json.loads((work / "p.json").read_text())
clip = data / "videos" / "intel_two_persons_walking.mp4"
posecal_cli("track", str(clip), "--out", str(work / "t.json"), "--max-frames", "6")
tracker = PoseTracker()
capture = cv2.VideoCapture(str(clip))
ids = set()
for _ in range(6):
    ok, frame = capture.read()
    ids |= {p.track_id for p in tracker(frame).people}
assert ids and None not in ids
names = {p.name for p in photos}
images = [i for i in ann["images"] if i["file_name"] in names]
kept = {i["id"] for i in images}
small = {**ann, "images": images, "annotations": [a for a in ann["annotations"] if a["image_id"] in kept]}
(work / "small.json").write_text(json.dumps(small))
posecal_cli("eval", "--annotations", str(work / "small.json"), "--images", str(photos[0].parent),
            "--out", str(work / "eval"))
metrics = json.loads((work / "eval" / "metrics.json").read_text())
assert metrics["num_instances"] == len(small["annotations"]) and metrics["backend"] == "onnx" and metrics["ap"]["oks"] > 0
assert not (work / "cache").exists() or not list((work / "cache").rglob("*.onnx")), "a model was exported"
print(f"plain install, no PyTorch: {found} people on {len(photos)} real photos; predict, track ({len(ids)} ids on "
      f"6 frames of a real clip) and eval ran on the packaged graphs, with no export")
