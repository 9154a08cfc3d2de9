"""Fine-tune the whole person verifier (its EfficientNet-Lite0 trunk too) on a GPU, then judge it here.

    python lab/tools/gpu_verifier.py pack                   # here, ~15 min on 2 cores: .gpu_data/verifier/*.npz
    # on the device (lab/tools/gpu_train.md section 7): the packs carried, then
    python lab/tools/gpu_verifier.py train --data DIR --out $OUT --seconds 330
    python lab/tools/gpu_verifier.py export RUN/verifier.pt OUT.onnx       # here: the shipped graph's format
    python lab/tools/gpu_verifier.py judge OUT.onnx         # here: the held-out boxes of train_person_verifier fit

Why: the shipped verifier is a head on the frozen ImageNet trunk's pooled features (tools/train_person_verifier.py),
and a frozen trunk tells shifted boxes, parts and things from people only so far (val AUROC 0.856). Fine-tuning
the trunk needs the pictures, not cached features, and fresh degradations each epoch: a GPU's work. The device
reads no ../shared, so `pack` writes the boxes train_person_verifier makes (the same kinds, labels and seeds) with
their photos: COCO train crops made smaller (long side <= 320 px: the verifier reads a box at 192 px, so little
is lost) and the val crops and LSPET photos as they are. The epoch and the calibration are chosen on the val
crops with even ids; `judge` scores the exported graph on exactly the boxes and degradations the shipped
verifier was judged on (val odd ids, LSPET photos 0 mod 5, photos without people, the clips' objects).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))
import train_person_verifier as tpv  # noqa: E402

PACK = ROOT / ".gpu_data/verifier"
TRAIN_SIDE = 320          # long side of the COCO train photos in the pack
TRAIN_QUALITY = 85
TRAIN_SHARDS = 3
LSPET_PHOTOS = 3000       # as train_person_verifier collect --lspet


def photo_rows(key, bgr: np.ndarray, boxes: list, people: np.ndarray, scale: float, source: Path) -> tuple:
    """(JPEG bytes: the photo's file, or the photo made `scale` times smaller; its labelled boxes as rows)."""
    if scale != 1.0:
        bgr = cv2.resize(bgr, (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
        jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, TRAIN_QUALITY])[1].tobytes()
    else:
        jpeg = source.read_bytes()
    rows = []
    for kind, box, label, cut in tpv.labelled_boxes(boxes, people):
        axis, at = cut if cut is not None else (-1, 0.0)
        rows.append([int(key), tpv.KINDS.index(kind), int(label), *(np.asarray(box) * scale), axis, at * scale])
    return jpeg, rows


def write_pack(path: Path, photos: list) -> None:
    """photos [(jpeg bytes, rows)] -> one .npz: blob, offsets, rows (key, kind, label, x, y, w, h, cut axis, cut
    at, photo index)."""
    blob = np.frombuffer(b"".join(p[0] for p in photos), np.uint8)
    offsets = np.cumsum([0] + [len(p[0]) for p in photos])
    rows = np.array([r + [i] for i, p in enumerate(photos) for r in p[1]], np.float64).reshape(-1, 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, blob=blob, offsets=offsets, rows=rows)
    print(f"{path}: {len(photos)} photos, {len(rows)} boxes, {path.stat().st_size / 2**20:.1f} MiB", flush=True)


def pack(args) -> None:
    import torch

    from posecal.detect.detector import load_detector
    from posecal.models.verifier import PersonVerifierNet

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = PersonVerifierNet()          # ImageNet trunk, a fresh head
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, out / "init.pt")
    detector = load_detector("default", 0.1, threads=args.threads)
    for split in ("val", "train"):
        if split == "val" and (out / "val.npz").is_file() or split == "train" and (out / "train_0.npz").is_file():
            continue
        photos, t0 = [], time.time()
        files = {im["id"]: tpv.COCO / "images" / im["file_name"]
                 for im in json.loads((tpv.COCO / f"annotations/{split}.json").read_text())["images"]}
        for n, (key, bgr, boxes, people, rng) in enumerate(tpv.coco_photos(split, detector)):
            if args.photos and n >= args.photos:
                break
            # the cut things too, the same boxes as train_person_verifier's *_cut_things sets
            boxes = boxes + tpv.cut_things(boxes, people, bgr.shape[1], bgr.shape[0], rng)
            scale = min(1.0, TRAIN_SIDE / max(bgr.shape[:2])) if split == "train" else 1.0
            jpeg, rows = photo_rows(key, bgr, boxes, people, scale, files[key])
            if split == "val":   # a detector's box on no labelled person is a thing (train_person_verifier report)
                d = {"key": np.array([r[0] for r in rows]), "box": np.array([r[3:7] for r in rows]).reshape(-1, 4)}
                cover = tpv.person_cover(d, "val")
                for r, c in zip(rows, cover):
                    if r[1] == tpv.KINDS.index("detector") and r[2] == 0 and c < 0.1:
                        r[1] = tpv.KINDS.index("thing")
            photos.append((jpeg, rows))
            if n % 500 == 0:
                print(f"{split}: {n} photos, {time.time() - t0:.0f} s", flush=True)
        if split == "val":
            write_pack(out / "val.npz", photos)
        else:
            for s in range(TRAIN_SHARDS):
                write_pack(out / f"train_{s}.npz", photos[s::TRAIN_SHARDS])
    if not (out / "lspet.npz").is_file():
        write_pack(out / "lspet.npz", [photo_rows(key, bgr, boxes, people, 1.0,
                                                  tpv.LSPET / "images" / f"im{key:05d}.jpg")
                                       for key, bgr, boxes, people, _ in tpv.lspet_photos(args.photos or LSPET_PHOTOS)])


class PackedBoxes:
    """The boxes of packs as (crop (3, H, W) normalised, mask (1, MH, MW), label, kind), made as the product reads
    them; train: a fresh degradation and a mirror by chance each epoch; else one fixed draw per box."""

    def __init__(self, paths: list[Path], train: bool, keep=None):
        self.blobs, self.offsets, rows = [], [], []
        for i, p in enumerate(paths):
            d = np.load(p)
            self.blobs.append(d["blob"])
            self.offsets.append(d["offsets"])
            r = d["rows"]
            rows.append(np.concatenate([r, np.full((len(r), 1), i)], 1))
        self.rows = np.concatenate(rows)
        if keep is not None:
            self.rows = self.rows[keep(self.rows)]
        self.train, self.epoch = train, 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from posecal.data.crops import crops_to_batch

        key, kind, label, x, y, w, h, axis, at, photo, pack_i = self.rows[i]
        off = self.offsets[int(pack_i)]
        bgr = cv2.imdecode(self.blobs[int(pack_i)][off[int(photo)]:off[int(photo) + 1]], cv2.IMREAD_COLOR)
        rng = np.random.default_rng([self.epoch, i] if self.train else [1000003, i])
        if axis >= 0:
            bgr = tpv.with_cut(bgr, (int(axis), at))
        crop, mask = tpv.degraded_crop(bgr, np.array([x, y, w, h]), rng)
        if self.train and rng.random() < 0.5:
            crop, mask = crop[:, ::-1], mask[..., ::-1]
        return (crops_to_batch([np.ascontiguousarray(crop)])[0], np.ascontiguousarray(mask, np.float32),
                np.float32(label), int(kind))


def train(args) -> None:
    import torch
    from torch.utils.data import DataLoader

    from posecal.models.verifier import PersonVerifierNet

    t_start = time.time()
    torch.manual_seed(0)
    data = Path(args.data)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = PersonVerifierNet(imagenet=False)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in torch.load(data / "init.pt", map_location="cpu").items()})
    net = net.to(dev).to(memory_format=torch.channels_last)
    fit_sets = [data / f"train_{s}.npz" for s in range(TRAIN_SHARDS)] + [data / "lspet.npz"]
    fit_rows = PackedBoxes(fit_sets, True, keep=lambda r: (r[:, 10] < TRAIN_SHARDS) | (r[:, 0] % 5 != 0))
    tune = PackedBoxes([data / "val.npz"], False, keep=lambda r: r[:, 0] % 2 == 0)
    held = {"val_held_out": PackedBoxes([data / "val.npz"], False, keep=lambda r: r[:, 0] % 2 == 1),
            "lspet_held_out": PackedBoxes([data / "lspet.npz"], False, keep=lambda r: r[:, 0] % 5 == 0)}
    if args.limit:
        for d in [fit_rows, tune, *held.values()]:
            d.rows = d.rows[np.random.default_rng(0).permutation(len(d.rows))[:args.limit]]
    print(f"fit {len(fit_rows)} boxes ({int(fit_rows.rows[:, 2].sum())} persons), tune {len(tune)}", flush=True)

    def loader(ds, shuffle):
        return DataLoader(ds, batch_size=args.batch, shuffle=shuffle, num_workers=args.workers, drop_last=shuffle,
                          pin_memory=dev.type == "cuda")

    trunk = list(net.trunk.parameters())
    opt = torch.optim.AdamW([{"params": trunk, "lr": args.lr_trunk, "weight_decay": 1e-5},
                             {"params": net.head.parameters(), "lr": args.lr_head, "weight_decay": 1e-2}])
    steps = args.epochs * (len(fit_rows) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [args.lr_trunk, args.lr_head], total_steps=max(steps, 1),
                                                pct_start=0.1)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def logits(ds):
        net.eval()
        out, ys, kinds = [], [], []
        with torch.no_grad(), torch.autocast(**amp):
            for x, m, y, k in loader(ds, False):
                x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                out.append(net.head.logit(net.features(x, m.to(dev))).float().cpu())
                ys.append(y)
                kinds.append(k)
        return torch.cat(out), torch.cat(ys), torch.cat(kinds)

    log, best, step = [], (np.inf, None, -1), 0
    for epoch in range(args.epochs):
        t0 = time.time()
        net.train()
        fit_rows.epoch = epoch
        total = 0.0
        for x, m, y, _ in loader(fit_rows, True):
            x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(**amp):
                lg = net.head.logit(net.features(x, m.to(dev, non_blocking=True)))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(lg.float(), y.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < steps:
                sched.step()
            step += 1
            total += loss.item()
        lg, y, _ = logits(tune)
        tl = torch.nn.functional.binary_cross_entropy_with_logits(lg, y).item()
        auc = tpv.auroc_of(lg.numpy(), y.numpy())
        log.append({"epoch": epoch, "train_loss": round(total / max(1, len(fit_rows) // args.batch), 4),
                    "tune_loss": round(tl, 4), "tune_auroc": round(auc, 4), "seconds": round(time.time() - t0, 1)})
        print(json.dumps(log[-1]), flush=True)
        if tl < best[0]:
            best = (tl, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, epoch)
        if time.time() - t_start + (time.time() - t0) * 1.3 > args.seconds:
            print(f"stopping after epoch {epoch}: the time budget ({args.seconds} s) is near", flush=True)
            break
    net.load_state_dict(best[1])
    lg, y, _ = logits(tune)
    a, b = calibration(lg, y)
    net.head.calibration.copy_(torch.tensor([a, b]))
    results = {"best_epoch": best[2], "calibration": [a, b], "log": log, "fit_boxes": len(fit_rows)}
    for name, ds in held.items():      # approximate: the exact held-out judgement is `judge`, here
        lg, y, k = logits(ds)
        p = torch.sigmoid(a * lg + b).numpy().astype(np.float64)
        results[name] = tpv.report(p, {"label": y.numpy(), "kind": k.numpy()}, np.ones(len(p), bool), name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.cpu().state_dict().items()},
               out / "verifier.pt")
    (out / "report.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out / 'verifier.pt'} in {time.time() - t_start:.0f} s", flush=True)


def calibration(logit, y) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a * logit + b) by the least log loss."""
    import torch

    ab = torch.tensor([1.0, 0.0], requires_grad=True)
    lbfgs = torch.optim.LBFGS([ab], max_iter=200)

    def closure():
        lbfgs.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * logit + ab[1], y)
        loss.backward()
        return loss

    lbfgs.step(closure)
    return ab[0].item(), ab[1].item()


def open_net(path: Path):
    import torch

    from posecal.models.verifier import PersonVerifierNet

    net = PersonVerifierNet(imagenet=False)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in torch.load(path, map_location="cpu").items()})
    return net.eval()


def export(args) -> None:
    from verifier_export import export_verifier

    report = json.loads((Path(args.checkpoint).parent / "report.json").read_text())
    info = {"trained_by": "lab/tools/gpu_verifier.py (trunk fine-tuned on a GPU)", "fit_boxes": report["fit_boxes"],
            "best_epoch": report["best_epoch"]}
    if args.judged and Path(args.judged).is_file():
        info["judged"] = json.loads(Path(args.judged).read_text())
    size = export_verifier(open_net(Path(args.checkpoint)), Path(args.out), info)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


def judge(args) -> None:
    """The graph on the held-out boxes train_person_verifier fit judges (same boxes, same degradations)."""
    from posecal.data.crops import crops_to_batch
    from posecal.detect.detector import load_detector
    from posecal.detect.verifier import PersonVerifier

    verifier = PersonVerifier(args.onnx, threads=args.threads)
    detector = load_detector("default", 0.1, threads=args.threads)

    def probs(items):
        ps, meta = [], []
        for key, its in items:
            if not its:
                continue
            crops = crops_to_batch([it[3] for it in its])
            masks = np.stack([it[4] for it in its])
            ps.append(verifier.session.run(None, {"crops": crops, "masks": masks})[0].reshape(-1))
            meta += [(key, tpv.KINDS.index(it[0]), it[2], *it[1], it[5] if len(it) > 5 else "") for it in its]
        d = {"key": np.array([m[0] for m in meta]), "kind": np.array([m[1] for m in meta]),
             "label": np.array([m[2] for m in meta]), "box": np.array([m[3:7] for m in meta]),
             "name": np.array([m[7] for m in meta])}
        return np.concatenate(ps).astype(np.float64), d

    results = {}
    held = itertools.chain(tpv.coco_items("val", detector), tpv.coco_cut_things("val", detector))
    pv, val = probs((k, i) for k, i in held if k % 2 == 1)
    things = (val["kind"] == tpv.KINDS.index("detector")) & (val["label"] == 0) & (tpv.person_cover(val, "val") < 0.1)
    val["kind"] = np.where(things, tpv.KINDS.index("thing"), val["kind"])
    results["val_held_out"] = tpv.report(pv, val, np.ones(len(pv), bool), "val crops, odd ids (held out):")
    pl, lsp = probs((k, i) for k, i in tpv.lspet_items(LSPET_PHOTOS) if k % 5 == 0)
    results["lspet_held_out"] = tpv.report(pl, lsp, np.ones(len(pl), bool), "LSPET photos 0 mod 5 (held out):")
    pn, _ = probs(tpv.nopeople_items(detector))
    results["no_people_photos"] = {"boxes": len(pn), "mean_p": round(float(pn.mean()), 3),
                                   "over_0.5": int((pn >= 0.5).sum()), "max_p": round(float(pn.max()), 3)}
    pc, clips = probs(tpv.clip_items())
    results["clips_auroc"] = round(tpv.auroc_of(pc, clips["label"]), 4)
    results["clip_objects_over_0.5"] = int(((pc >= 0.5) & (clips["label"] == 0)).sum())
    results["clip_persons_under_0.5"] = int(((pc < 0.5) & (clips["label"] == 1)).sum())
    print(json.dumps({k: results[k] for k in ("no_people_photos", "clips_auroc", "clip_objects_over_0.5",
                                              "clip_persons_under_0.5")}), flush=True)
    Path(args.report).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.report}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", default=str(PACK))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--photos", type=int, default=0, help="the first N photos of each set (a smoke test)")
    t = sub.add_parser("train")
    t.add_argument("--data", default=str(PACK))
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=16)
    t.add_argument("--seconds", type=float, default=360, help="stop before an epoch would end past this")
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--workers", type=int, default=14)
    t.add_argument("--lr-trunk", type=float, default=3e-4)
    t.add_argument("--lr-head", type=float, default=2e-3)
    t.add_argument("--limit", type=int, default=0, help="a few boxes of each set (a smoke test)")
    e = sub.add_parser("export")
    e.add_argument("checkpoint")
    e.add_argument("out")
    e.add_argument("--judged", default=None, help="judge's report, stored in the graph's metadata")
    j = sub.add_parser("judge")
    j.add_argument("onnx")
    j.add_argument("--report", default=str(ROOT / "runs/person_verifier_gpu/judged.json"))
    j.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    {"pack": pack, "train": train, "export": export, "judge": judge}[args.stage](args)


if __name__ == "__main__":
    main()
