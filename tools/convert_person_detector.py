"""Build posecal's shipped person detector (posecal/weights/person_ssd_mobilenetv2.onnx) from its npm package.

A one-off step, run by maintainers; tensorflow and tf2onnx are NOT posecal dependencies. Usage:

    python3 -m venv /work/venvs/tf && /work/venvs/tf/bin/pip install tensorflow-cpu tf2onnx
    npm pack @mediapipe/objectron@0.4.1675468480          # or curl the registry tarball:
    # https://registry.npmjs.org/@mediapipe/objectron/-/objectron-0.4.1675468480.tgz
    /work/venvs/tf/bin/python tools/convert_person_detector.py mediapipe-objectron-0.4.1675468480.tgz

The package (Apache-2.0, see its package.json) bundles MediaPipe's Open Images SSD-MobileNetV2 detector in
`package/objectron_solution_packed_assets.data`: bytes 0-184 are its 24-line label map ("Person" = index 4)
and bytes 184-9,987,912 are `object_detection_ssd_mobilenetv2_oidv4_fp16.tflite`. Why this model: it is the
only permissively licensed person detector found in a package registry; it detects 24 Open Images classes and
posecal keeps the Person logit only (posecal/detection/ssd.py holds the anchors and the box decoding, which
the TFLite graph leaves to MediaPipe's calculators).

tf2onnx turns the fp16 TFLite graph (fp16 weights dequantised to fp32 at load) into an fp32 ONNX graph. The
script then stores the weights as fp16 (onnxconverter-common style: initializers cast to fp16 followed by a
Cast to fp32), which halves the file and leaves the arithmetic in fp32, so onnxruntime on CPU runs it as fast
as the fp32 file; `--fp32` keeps the plain fp32 file. Finally it checks that onnxruntime and the TFLite
interpreter agree on a real-looking input.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

DATA_MEMBER = "package/objectron_solution_packed_assets.data"
LABELS_END, TFLITE_END = 184, 9_987_912
OUT = Path(__file__).resolve().parents[1] / "posecal" / "weights" / "person_ssd_mobilenetv2.onnx"


def extract(tgz: Path, work: Path) -> tuple[Path, list[str]]:
    with tarfile.open(tgz) as tar:
        data = tar.extractfile(DATA_MEMBER).read()
    labels = data[:LABELS_END].decode("utf-8").splitlines()
    tflite = data[LABELS_END:TFLITE_END]
    if tflite[4:8] != b"TFL3":
        sys.exit(f"{tgz}: bytes {LABELS_END}-{TFLITE_END} are not a TFLite model; wrong package version?")
    if labels[4] != "Person":
        sys.exit(f"{tgz}: label 4 is {labels[4]!r}, not 'Person'")
    path = work / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite"
    path.write_bytes(tflite)
    return path, labels


def weights_to_fp16(model, min_size: int = 256):
    """fp32 initializers of at least min_size values stored as fp16, each followed by a Cast back to fp32
    (compute stays fp32); one that fp16 does not hold exactly is named with its largest change.
    tools/convert_nanodet.py uses it too."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    new_inits, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < min_size:
            new_inits.append(init)
            continue
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):
            print(f"note: {init.name} was not exactly fp16 ({np.abs(half - arr).max():.2e})")
        half = numpy_helper.from_array(half, init.name + "_fp16")
        new_inits.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "_cast"))
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def check(tflite: Path, onnx_path: Path) -> float:
    """Max abs difference of both outputs between the TFLite interpreter and onnxruntime."""
    import onnxruntime as ort
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(0, 0.5, (1, 300, 300, 3)), -1, 1).astype(np.float32)
    interp = tf.lite.Interpreter(model_path=str(tflite))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    ref = sorted((interp.get_tensor(d["index"]) for d in interp.get_output_details()), key=lambda a: a.shape[-1])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sorted(sess.run(None, {sess.get_inputs()[0].name: x}), key=lambda a: a.shape[-1])
    return max(float(np.abs(a - b).max()) for a, b in zip(ref, got))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", type=Path, help="mediapipe-objectron-0.4.1675468480.tgz")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    args = ap.parse_args()
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tflite, _ = extract(args.package, work)
        raw = work / "raw.onnx"
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(raw),
                        "--opset", "17"], check=True)
        model = onnx.load(str(raw))
        model.graph.input[0].name  # noqa: B018 - fails loudly on an empty graph
        if not args.fp32:
            model = weights_to_fp16(model)
        onnx.checker.check_model(model)
        final = work / "final.onnx"
        onnx.save(model, str(final))
        diff = check(tflite, final)
        print(f"onnxruntime vs TFLite max abs difference: {diff:.2e}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
