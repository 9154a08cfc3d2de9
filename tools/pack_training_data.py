"""Pack a config's training persons into small JPEG shards that can be carried to a GPU machine.

Usage: python tools/pack_training_data.py CONFIG.yaml --out .gpu_data [--input-h 256] [--quality 80]
                                          [--shard-mib 40] [--margin 1.6] [--no-val]
                                          [--trust] [--first-shard-mib M] [--max-shards N]

Training persons: the config's COCO train split plus LSPET when the config names it (never the val split), in
the order `posecal train` reads them, split into OUT/shard_000/, shard_001/, ... of at most --shard-mib each
(file bytes, index included). The val split goes to OUT/val/ (only for validation; see posecal/data/packed.py);
its size counts against shard_000's budget, since the two travel together in the first device call.
Train with `data.packed: OUT` (tools/gpu_train.md).

--margin: the packed region is the usual 1.25-padded box times this. 1.6 is what the COCO crops themselves hold
(they were cut at 2.0 = 1.25 x 1.6 around the box), so a training crop taken from the pack sees the same region,
and the same black border, as one taken from the COCO crops; a larger margin would add only black. LSPET images
hold ~1.04 of the padded box (1.3 / 1.25), so any margin from ~1.05 up keeps all of them (most are kept as their
own files). What
the augmentation asks for beyond the region (zoom-out up to x1.45; a 3:4 crop turned by angle a spans
h*cos(a) + w*sin(a) high and w*cos(a) + h*sin(a) wide, up to 1.25 h = 1.67 w) is black in both pipelines.
Bytes grow with margin^2 (1.6 vs 1.5: +14%); a smaller margin would put black where the COCO crops have image.

--trust: CONFIG is a GPU trust config (tools/trust_online.py, configs/trust/accurate_gpu.yaml): the
regions are square (the base MoveNet's crops), and of LSPET the persons the trust model never trains on
(posecal.training.trust_samples.lspet_trust_split: 1,000 held out for bench/trust_conditions.py) are left out
instead of --lspet-holdout's last N; each index records it (`lspet_trust_heldout: excluded`), and the online
trust training refuses a pack with LSPET persons that does not. --first-shard-mib: the budget of shard_000 plus
val (the first call carries more than data, e.g. weights); --max-shards: stop when that many shards are full
(the persons left out, LSPET's last ones, are counted).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from posecal.training.config import DataConfig, load_train_config
from posecal.data.coco import load_coco_persons, load_lspet, pseudo_label_ids, read_image
from posecal.data.neighbours import neighbours_by_image
from posecal.data.packed import INDEX, PSEUDO_SOURCE, VAL_DIR, coco_entries, folder_bytes, pack_person, write_index
from posecal.errors import PosecalInputError

sys.path.insert(0, str(Path(__file__).resolve().parent))   # trust_online.py (--trust), beside this tool
MIB = 2 ** 20
INDEX_OVERHEAD = 1024   # header and categories of an index file


def repo_travel_bytes() -> int | None:
    """Bytes of the files a device call sends besides what it carries (tracked + untracked-not-ignored files)."""
    try:
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                               check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum(os.path.getsize(n) for n in names if n and os.path.isfile(n))


def _entry_bytes(img: dict, ann: dict) -> int:
    return len(json.dumps(img, separators=(", ", ": "))) + len(json.dumps(ann, separators=(", ", ": "))) + 4


def _pack_list(records, sources, aspect, args, progress: bool, desc: str):
    """Yield (source, PackedPerson) for each readable record; unreadable images are skipped with a warning."""
    for rec, source in tqdm(list(zip(records, sources)), desc=desc, disable=not progress, leave=False):
        try:
            image = read_image(rec.image_path)
        except PosecalInputError as e:
            warnings.warn(f"skipping: {e}", stacklevel=1)
            continue
        original = Path(rec.image_path).read_bytes() if args.keep_originals else None
        yield source, rec, pack_person(image, rec, aspect, args.input_h, args.margin, args.quality, original)


def _pseudo_neighbours(records, sources, neighbours: dict) -> dict:
    """ann id -> (N, K, 3) the labelled people beside each pseudo-labelled person: its crop's labelled target and
    that target's neighbours (a pseudo-labelled person shares its crop with them; they are its negatives)."""
    targets = {r.image_path: r.keypoints for r, s in zip(records, sources) if s == "coco"}
    out = {}
    for r, s in zip(records, sources):
        if s == PSEUDO_SOURCE and r.image_path in targets:
            k = len(r.keypoints)
            out[r.ann_id] = np.concatenate([targets[r.image_path][None],
                                            neighbours.get(r.image_path, np.zeros((0, k, 3)))])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--out", default=".gpu_data")
    ap.add_argument("--input-h", type=int, default=256, help="padded box at most this many pixels high")
    ap.add_argument("--quality", type=int, default=80, help="JPEG quality")
    ap.add_argument("--shard-mib", type=float, default=40.0, help="largest shard (file bytes, index included)")
    ap.add_argument("--margin", type=float, default=1.6, help="packed region = padded box x this")
    ap.add_argument("--val-margin", type=float, default=1.1,
                    help="margin of the val split (evaluation crops take the padded box alone)")
    ap.add_argument("--val-quality", type=int,
                    help="JPEG quality of the val split (default: --quality). The shipped model's val AP (no flip, "
                         "oks score) was 32.3 on the source crops, 31.5 on a q80 or q90 pack, 32.0 on q95")
    ap.add_argument("--no-val", action="store_true", help="leave the val split out")
    ap.add_argument("--lspet-holdout", type=int, default=DataConfig.lspet_holdout, metavar="N",
                    help="leave LSPET's last N persons out (bench/lspet_ap.py scores them; 0: pack all of LSPET, "
                         "as the packs before November 2026 did)")
    ap.add_argument("--no-keep-originals", dest="keep_originals", action="store_false",
                    help="always re-encode (by default an image that lies wholly inside its region, needs no "
                         "shrinking and is no larger than its re-encoding is kept as it is)")
    ap.add_argument("--trust", action="store_true",
                    help="CONFIG is a GPU trust config: square regions, the trust model's held-out LSPET persons "
                         "left out (not --lspet-holdout's)")
    ap.add_argument("--first-shard-mib", type=float, help="budget of shard_000 + val (default: --shard-mib)")
    ap.add_argument("--max-shards", type=int, help="at most this many shards; the persons that do not fit are "
                                                   "left out (reported)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except PosecalInputError as e:
        print(f"pack_training_data: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    t0 = time.time()
    if args.trust:
        from trust_online import load_online_config   # noqa: PLC0415 (only for --trust; beside this tool)
        cfg = load_online_config(args.config)
    else:
        cfg = load_train_config(args.config)
    args.val_quality = args.val_quality or args.quality
    if args.margin < 1.0 or args.val_margin < 1.0 or args.input_h < 8 or not (
            1 <= args.quality <= 100 and 1 <= args.val_quality <= 100):
        raise PosecalInputError("--margin and --val-margin must be >= 1, --input-h >= 8, --quality in 1..100")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise PosecalInputError(f"{out}: exists and is not empty (delete it first)")
    aspect = 1.0 if args.trust else cfg.model.input_wh[0] / cfg.model.input_wh[1]
    budget = int(args.shard_mib * MIB)
    first_budget = int((args.first_shard_mib or args.shard_mib) * MIB)
    progress = not args.no_progress
    params = {"input_h": args.input_h, "quality": args.quality, "aspect": aspect, "config": str(args.config)}

    val_bytes = 0
    if not args.no_val:
        val = load_coco_persons(*cfg.data.required("val_annotations", "val_images"))
        folder = out / VAL_DIR
        folder.mkdir(parents=True)
        images, anns = [], []
        vargs = argparse.Namespace(**{**vars(args), "margin": args.val_margin, "quality": args.val_quality})
        for source, rec, p in _pack_list(val, ["coco"] * len(val), aspect, vargs, progress, "val"):
            name = Path(rec.file_name).name or f"{rec.ann_id}.jpg"
            (folder / name).write_bytes(p.jpeg)
            img, ann = coco_entries(p, name, rec.image_id, rec.ann_id, source)
            images.append(img)
            anns.append(ann)
        write_index(folder, images, anns, {**params, "margin": args.val_margin, "quality": args.val_quality,
                                           "split": "val"})
        val_bytes = folder_bytes(folder)[0]
        print(f"val: {len(anns)} persons, {val_bytes / MIB:.1f} MiB -> {folder}")
        if val_bytes >= first_budget:
            raise PosecalInputError(f"the val split alone ({val_bytes / MIB:.1f} MiB) exceeds --shard-mib")

    records = load_coco_persons(*cfg.data.required("train_annotations", "train_images"))
    # pseudo-labelled people (tools/pseudo_labels.py) travel marked, so a run can leave them out (data.pseudo_labels)
    pseudo = pseudo_label_ids(cfg.data.train_annotations)
    sources = [PSEUDO_SOURCE if r.ann_id in pseudo else "coco" for r in records]
    # the crops' other labelled people travel with each person (negatives, configs' lambda_negatives)
    neighbours = neighbours_by_image(cfg.data.train_annotations, cfg.data.train_images)
    neighbours_of_pseudo = _pseudo_neighbours(records, sources, neighbours)
    if cfg.data.lspet_annotations:
        lspet = load_lspet(cfg.data.lspet_annotations, cfg.data.lspet_images)
        if args.trust:                 # the persons bench/trust_conditions.py judges the trust model on
            from posecal.training.trust_samples import lspet_trust_split   # noqa: PLC0415
            from trust_online import TRUST_PACK_KEY, TRUST_PACK_VALUE   # noqa: PLC0415
            keep = lspet_trust_split(len(lspet))[0]
            params.update({TRUST_PACK_KEY: TRUST_PACK_VALUE, "lspet_persons_of": len(lspet)})
            print(f"LSPET: {len(keep)} of {len(lspet)} persons (the trust model's {len(lspet) - len(keep)} "
                  "held-out ones left out)")
            lspet = [lspet[i] for i in keep]
        elif args.lspet_holdout > 0:   # the persons bench/lspet_ap.py scores stay unseen by what trains on the pack
            lspet = lspet[:-args.lspet_holdout]
        records += lspet
        sources += ["lspet"] * len(lspet)

    shards: list[dict] = []
    cur: dict = {}

    def start():
        cur.update(images=[], anns=[], bytes=INDEX_OVERHEAD, folder=out / f"shard_{len(shards):03d}")
        cur["folder"].mkdir(parents=True)

    def finish():
        write_index(cur["folder"], cur["images"], cur["anns"],
                    {**params, "margin": args.margin, "split": "train", "shard": len(shards)})
        shards.append({"folder": cur["folder"], "persons": len(cur["anns"])})

    start()
    n, shrunk, kept, left_out = 0, 0, 0, {"coco": 0, "lspet": 0}
    for source, rec, p in _pack_list(records, sources, aspect, args, progress, "train"):
        beside = (neighbours_of_pseudo.get(rec.ann_id) if source == PSEUDO_SOURCE
                  else neighbours.get(rec.image_path) if source == "coco" else None)   # LSPET: one person a photo
        img, ann = coco_entries(p, f"{n + 1:06d}.jpg", n + 1, n + 1, source, beside)
        size = len(p.jpeg) + _entry_bytes(img, ann)
        limit = (first_budget - val_bytes) if not shards else budget
        if cur["anns"] and cur["bytes"] + size > limit:
            if args.max_shards and len(shards) + 1 >= args.max_shards:
                left_out["lspet" if source == "lspet" else "coco"] += 1   # the last shard is full: the rest stays out
                continue
            finish()
            start()
        n += 1
        name = f"{n:06d}.jpg"
        (cur["folder"] / name).write_bytes(p.jpeg)
        cur["images"].append(img)
        cur["anns"].append(ann)
        cur["bytes"] += size
        shrunk += bool(p.matrix[1, 1] < 1.0)
        kept += p.original
    finish()
    for s in shards:     # each index says how many shards the pack has, so a missing one is noticed
        index = json.loads((s["folder"] / INDEX).read_text())
        write_index(s["folder"], index["images"], index["annotations"], {**index["info"], "of": len(shards)})

    total, total_du = 0, 0
    for s in shards:
        b, du = folder_bytes(s["folder"])
        total, total_du = total + b, total_du + du
        extra = f" (+ val {val_bytes / MIB:.1f} MiB = {(b + val_bytes) / MIB:.1f} MiB in the first call)" \
            if s is shards[0] and val_bytes else ""
        print(f"{s['folder'].name}: {s['persons']} persons, {b / MIB:.1f} MiB ({du / MIB:.1f} MiB on disk){extra}")
        if b > budget:
            print(f"warning: {s['folder']} is over --shard-mib (one person larger than the budget?)")
    repo = repo_travel_bytes()
    if repo is not None:
        biggest = max(folder_bytes(s["folder"])[0] + (val_bytes if s is shards[0] else 0) for s in shards)
        print(f"the repo's files that travel with every device call: {repo / MIB:.1f} MiB; with the largest "
              f"call's data {(repo + biggest) / MIB:.1f} MiB (limit 64 MiB)")
        if repo + biggest > 63 * MIB:
            print("warning: over the device tool's 64 MiB per call: pack again with a smaller --shard-mib")
    n_coco = sources.count("coco") + sources.count(PSEUDO_SOURCE)
    if any(left_out.values()):
        print(f"left out by --max-shards {args.max_shards}: {left_out['coco']} COCO, {left_out['lspet']} LSPET "
              "persons (they did not fit)")
    print(f"total: {n} training persons ({n_coco - left_out['coco']} COCO, "
          f"{len(records) - n_coco - left_out['lspet']} LSPET; "
          f"{len(records) - n - sum(left_out.values())} skipped, {shrunk} shrunk to input-h {args.input_h}, {kept} kept as they were), "
          f"{len(shards)} shards, "
          f"{total / MIB:.1f} MiB ({total_du / MIB:.1f} MiB on disk)"
          + (f", + val {val_bytes / MIB:.1f} MiB" if val_bytes else "")
          + f"; margin {args.margin}, quality {args.quality}, {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
