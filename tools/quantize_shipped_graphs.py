"""Make int8 versions of a shipped model's ONNX graphs (issue 55 item 6), beside the float ones: the flip and no-flip
graphs and, for a model that stages its crops, the look and refine graphs (issue 90).

    python tools/quantize_shipped_graphs.py [accurate fast] [--crops 100] [--out DIR]

Writes posecal/weights/posecal_NAME.int8.onnx (flip test built in), posecal_NAME.int8.noflip.onnx and the weights
file both read, posecal_NAME.int8.onnx.data (--out DIR: there instead, candidates for bench/int8_agreement.py
--int8-dir). Each graph is the model file's export (BatchNorm folded), its trust
model's deconvolutions rewritten as sub-pixel convolutions (tools/int8_recipe.py subpixel_deconvolutions: the
same function, which onnxruntime runs in int8), then static int8 (QDQ, per-channel weights, MinMax activation
ranges) on the nodes tools/int8_recipe.py int8_nodes picks (INT8_WEIGHT_PREFIXES: for `accurate` the trust
network and MoveNet's backbone, MoveNet's FPN and heads staying float; for `fast` every convolution); the decode
stays float. The activation ranges come from --crops person crops spread evenly over
the *train* split of ../shared/data/coco-val2017-crops (GT boxes), never from val, which judges the result
(CHANGELOG.md, issue 55 item 6). Deterministic for one onnxruntime version. They open as any exported posecal
.onnx does (`--model posecal/weights/posecal_accurate.int8.onnx`, posecal/export/session.py).
Needs PyTorch, onnx, onnxscript and ../shared (`pip install -e ".[train,dev]"`).
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tools"))
from int8_recipe import INT8_WEIGHT_PREFIXES, int8_nodes, subpixel_deconvolutions  # noqa: E402
from posecal.calibration.reported import META_KEY as REPORTED_META_KEY  # noqa: E402
from posecal.export.quantize import calibration_crops, quantize_int8  # noqa: E402
from posecal.export.onnx import onnx_bytes  # noqa: E402
from posecal.export.session import INT8_KEY, SOURCE_KEY, STAGES, VERSION_KEY  # noqa: E402
from posecal.models.config import stages_crops  # noqa: E402
from posecal.io import write_bytes_atomic  # noqa: E402
from posecal.models.checkpoint import load_model  # noqa: E402
from posecal.models.shipped import SHIPPED_MODELS, int8_graph, int8_graph_weights  # noqa: E402

CROPS = ROOT.parent / "shared" / "data" / "coco-val2017-crops"
EXTERNAL_MIN_BYTES = 1024   # smaller tensors (scales, zero points, shapes) stay inside each graph
ALIGN = 64


def build(name: str, n_crops: int, out: Path | None = None) -> dict:
    """Quantise a shipped model's two graphs; out: write them there (candidates to judge with
    bench/int8_agreement.py --int8-dir) instead of beside the float graphs."""
    import onnx

    path = SHIPPED_MODELS[name]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model, cfg, meta = load_model(path)
    version = f"{meta.get('model_version') or f'{name}-{digest[:12]}'}-int8"
    crops = calibration_crops(CROPS / "annotations" / "train.json", CROPS / "images", cfg.input_wh, n_crops)
    recipe = {"quantised_weights": list(INT8_WEIGHT_PREFIXES[name]),
              "calibration": f"{len(crops)} crops of coco-val2017-crops train (GT boxes)", "format": "QDQ",
              "per_channel": True, "activations": "uint8 MinMax", "weights": "int8"}
    blob, offsets, sizes = bytearray(), {}, {}
    data_path = int8_graph_weights(name) if out is None else out / int8_graph_weights(name).name
    graphs = {}
    kinds = (True, False, *(STAGES if stages_crops(cfg) else ()))
    for kind in kinds:
        stage = None if isinstance(kind, bool) else kind
        proto = onnx.load_from_string(onnx_bytes(model, cfg, kind is not False, meta.get("calibration"), stage=stage,
                                                reported=meta.get(REPORTED_META_KEY)))
        rewritten = subpixel_deconvolutions(proto)
        nodes = int8_nodes(proto, INT8_WEIGHT_PREFIXES[name])
        feeds = refine_feeds(model, crops) if stage == "refine" else crops
        proto = onnx.load_from_string(quantize_int8(proto.SerializeToString(), feeds, nodes))
        recipe_here = recipe | {"deconvolutions_rewritten": rewritten, "nodes_quantized": len(nodes)}
        ours = {VERSION_KEY: version, SOURCE_KEY: digest, INT8_KEY: json.dumps(recipe_here)}
        kept = [entry for entry in proto.metadata_props if entry.key not in ours]   # quantize_int8's plain recipe
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        for key, value in ours.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        _store_external(proto, data_path.name, blob, offsets)
        graphs[kind] = proto
    write_bytes_atomic(data_path, bytes(blob))
    sizes[data_path.name] = len(blob)
    for kind, proto in graphs.items():
        data = proto.SerializeToString()
        path = int8_graph(name, kind) if isinstance(kind, bool) else \
            int8_graph(name, True).with_name(f"posecal_{name}.int8.{kind}.onnx")
        path = path if out is None else out / path.name
        write_bytes_atomic(path, data)
        sizes[path.name] = len(data)
    return {"version": version, "bytes": sizes}


def refine_feeds(model, crops) -> list[dict]:
    """The refine graph's inputs on each calibration crop: the crop and its look (the float model's), so the
    refinement's activation ranges are those of the looks it will refine."""
    import torch

    from posecal.models.estimator import look_outputs
    from posecal.models.outputs import REFINE_GRAPH_INPUTS, REFINE_INPUTS

    feeds, model = [], model.float().eval()
    with torch.no_grad():
        for crop in crops:
            x = torch.from_numpy(crop[None])
            look = look_outputs(model, x)
            feeds.append({graph: (x if name == "images" else look[name]).numpy()
                          for graph, name in zip(REFINE_GRAPH_INPUTS, REFINE_INPUTS)})
    return feeds


def _store_external(proto, location: str, blob: bytearray, offsets: dict) -> None:
    """Initializers of EXTERNAL_MIN_BYTES or more -> external data in `blob` at `location`, each distinct tensor
    once (the two graphs' weights are the same bytes; only their activation ranges differ)."""
    from onnx import TensorProto, numpy_helper

    for init in proto.graph.initializer:
        raw = numpy_helper.from_array(numpy_helper.to_array(init)).raw_data
        if len(raw) < EXTERNAL_MIN_BYTES:
            continue
        key = hashlib.sha256(raw + str(init.data_type).encode() + str(list(init.dims)).encode()).hexdigest()
        if key not in offsets:
            blob.extend(b"\0" * (-len(blob) % ALIGN))
            offsets[key] = len(blob)
            blob.extend(raw)
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            init.ClearField(field)
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for k, v in (("location", location), ("offset", str(offsets[key])), ("length", str(len(raw)))):
            entry = init.external_data.add()
            entry.key, entry.value = k, v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"shipped models (default: {' '.join(INT8_WEIGHT_PREFIXES)})")
    parser.add_argument("--crops", type=int, default=100, help="train crops the activation ranges come from")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the graphs into this folder (candidates) instead of posecal/weights/")
    args = parser.parse_args()
    if set(args.names) - set(INT8_WEIGHT_PREFIXES):
        parser.error(f"int8 recipes exist for {', '.join(INT8_WEIGHT_PREFIXES)} only")
    if not CROPS.is_dir():
        parser.error(f"{CROPS}: the calibration crops are not here (../shared)")
    for name in args.names or list(INT8_WEIGHT_PREFIXES):
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
        made = build(name, args.crops, args.out)
        files = ", ".join(f"{f} {n / 1e6:.2f} MB" for f, n in made["bytes"].items())
        print(f"{name}: version {made['version']}; {files}")


if __name__ == "__main__":
    main()
