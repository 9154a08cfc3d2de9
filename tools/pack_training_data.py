"""Pack a config's training persons into small JPEG shards that can be carried to a GPU machine.

Usage: python tools/pack_training_data.py CONFIG.yaml --out .gpu_data [--input-h 256] [--quality 80]
                                          [--shard-mib 40] [--margin 1.6] [--no-val]
                                          [--trust] [--first-shard-mib M] [--max-shards N]

Training persons: the config's COCO train split plus LSPET when the config names it (never the val split), in
the order `posecal train` reads them, split into OUT/shard_000/, shard_001/, ... of at most --shard-mib each
(file bytes, index included). The val split goes to OUT/val/ (only for validation; see posecal/data/packed.py);
its size counts against shard_000's budget, since the two travel together in the first device call.
Train with `data.packed: OUT` (lab/tools/gpu_train.md).

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
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from posecal.training.config import DataConfig, load_train_config
from posecal.data.coco import load_coco_persons, load_lspet, pseudo_label_ids, read_image
from posecal.data.neighbours import neighbours_by_image
from posecal.data.packed import INDEX, PSEUDO_SOURCE, VAL_DIR
from posecal.errors import PosecalInputError

sys.path.insert(0, str(Path(__file__).resolve().parent))   # trust_online.py (--trust), pack_writer.py: beside
from pack_writer import coco_entries, folder_bytes, pack_person, write_index  # noqa: E402
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


class _Plan(NamedTuple):
    """What every part of a pack shares: where it goes, the region's aspect, the shards' byte budgets and the
    parameters each index records."""

    out: Path
    aspect: float
    budget: int          # bytes of a shard
    first_budget: int    # bytes of shard_000 plus val (they travel together)
    progress: bool
    params: dict


def _load_config(args):
    """The training config, or with --trust the GPU trust config."""
    if args.trust:
        from trust_online import load_online_config   # noqa: PLC0415 (only for --trust; beside this tool)
        return load_online_config(args.config)
    return load_train_config(args.config)


def _check_options(args) -> None:
    """Refuse options out of range; --val-quality defaults to --quality (set on args)."""
    args.val_quality = args.val_quality or args.quality
    if args.margin < 1.0 or args.val_margin < 1.0 or args.input_h < 8 or not (
            1 <= args.quality <= 100 and 1 <= args.val_quality <= 100):
        raise PosecalInputError("--margin and --val-margin must be >= 1, --input-h >= 8, --quality in 1..100")


def _plan(args, cfg) -> _Plan:
    """The pack's _Plan; an --out folder that exists and is not empty is refused (a pack is never mixed)."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise PosecalInputError(f"{out}: exists and is not empty (delete it first)")
    aspect = 1.0 if args.trust else cfg.model.input_wh[0] / cfg.model.input_wh[1]
    return _Plan(out, aspect, int(args.shard_mib * MIB), int((args.first_shard_mib or args.shard_mib) * MIB),
                 not args.no_progress,
                 {"input_h": args.input_h, "quality": args.quality, "aspect": aspect, "config": str(args.config)})


def _pack_val(args, cfg, plan: _Plan) -> int:
    """The val split packed into OUT/val (at --val-margin, --val-quality); its bytes. Refused when it alone
    exceeds the first call's budget."""
    val = load_coco_persons(*cfg.data.required("val_annotations", "val_images"))
    folder = plan.out / VAL_DIR
    folder.mkdir(parents=True)
    images, anns = [], []
    vargs = argparse.Namespace(**{**vars(args), "margin": args.val_margin, "quality": args.val_quality})
    for source, rec, p in _pack_list(val, ["coco"] * len(val), plan.aspect, vargs, plan.progress, "val"):
        name = Path(rec.file_name).name or f"{rec.ann_id}.jpg"
        (folder / name).write_bytes(p.jpeg)
        img, ann = coco_entries(p, name, rec.image_id, rec.ann_id, source)
        images.append(img)
        anns.append(ann)
    write_index(folder, images, anns, {**plan.params, "margin": args.val_margin, "quality": args.val_quality,
                                       "split": "val"})
    val_bytes = folder_bytes(folder)[0]
    print(f"val: {len(anns)} persons, {val_bytes / MIB:.1f} MiB -> {folder}")
    if val_bytes >= plan.first_budget:
        raise PosecalInputError(f"the val split alone ({val_bytes / MIB:.1f} MiB) exceeds --shard-mib")
    return val_bytes


def _lspet_persons(args, cfg, params: dict) -> list:
    """The LSPET persons the pack carries: with --trust, all but the trust model's held-out ones (recorded in
    `params`); else all but --lspet-holdout's last N, which stay unseen by what trains on the pack."""
    lspet = load_lspet(cfg.data.lspet_annotations, cfg.data.lspet_images)
    if args.trust:                 # the persons bench/trust_conditions.py judges the trust model on
        from posecal.training.trust_samples import lspet_trust_split   # noqa: PLC0415
        from trust_online import TRUST_PACK_KEY, TRUST_PACK_VALUE   # noqa: PLC0415
        keep = lspet_trust_split(len(lspet))[0]
        params.update({TRUST_PACK_KEY: TRUST_PACK_VALUE, "lspet_persons_of": len(lspet)})
        print(f"LSPET: {len(keep)} of {len(lspet)} persons (the trust model's {len(lspet) - len(keep)} "
              "held-out ones left out)")
        return [lspet[i] for i in keep]
    if args.lspet_holdout > 0:     # the persons bench/lspet_ap.py scores
        return lspet[:-args.lspet_holdout]
    return lspet


class _Training(NamedTuple):
    """The training persons in the order `posecal train` reads them, each with its source ("coco", pseudo-
    labelled or "lspet"), and the labelled people beside them."""

    records: list
    sources: list[str]
    neighbours: dict            # image path -> (N, K, 3) the other labelled people of a COCO crop
    neighbours_of_pseudo: dict  # ann id -> (N, K, 3) the labelled people beside a pseudo-labelled person

    def beside(self, source: str, rec) -> np.ndarray | None:
        """The labelled people that travel with a person (negatives); LSPET has one person a photo."""
        if source == PSEUDO_SOURCE:
            return self.neighbours_of_pseudo.get(rec.ann_id)
        return self.neighbours.get(rec.image_path) if source == "coco" else None


def _training_persons(args, cfg, params: dict) -> _Training:
    """The config's COCO train split (pseudo-labelled people marked) and then its LSPET persons, if any."""
    records = load_coco_persons(*cfg.data.required("train_annotations", "train_images"))
    # pseudo-labelled people (lab/tools/pseudo_labels.py) travel marked, so a run can leave them out
    # (data.pseudo_labels)
    pseudo = pseudo_label_ids(cfg.data.train_annotations)
    sources = [PSEUDO_SOURCE if r.ann_id in pseudo else "coco" for r in records]
    # the crops' other labelled people travel with each person (negatives, configs' lambda_negatives)
    neighbours = neighbours_by_image(cfg.data.train_annotations, cfg.data.train_images)
    neighbours_of_pseudo = _pseudo_neighbours(records, sources, neighbours)
    if cfg.data.lspet_annotations:
        lspet = _lspet_persons(args, cfg, params)
        records += lspet
        sources += ["lspet"] * len(lspet)
    return _Training(records, sources, neighbours, neighbours_of_pseudo)


class _ShardWriter:
    """Writes packed persons into OUT/shard_000/, shard_001/, ...: a shard is closed when the next person would
    take it over its budget (shard_000's budget less the val split's bytes); with max_shards, once the last shard
    is full the persons left are counted out instead."""

    def __init__(self, plan: _Plan, margin: float, val_bytes: int, max_shards: int | None):
        self.plan, self.margin, self.val_bytes, self.max_shards = plan, margin, val_bytes, max_shards
        self.shards: list[dict] = []   # the closed ones: folder, persons
        self.n, self.shrunk, self.kept, self.left_out = 0, 0, 0, {"coco": 0, "lspet": 0}
        self._start()

    def _start(self) -> None:
        self.images, self.anns, self.bytes = [], [], INDEX_OVERHEAD
        self.folder = self.plan.out / f"shard_{len(self.shards):03d}"
        self.folder.mkdir(parents=True)

    def _finish(self) -> None:
        write_index(self.folder, self.images, self.anns,
                    {**self.plan.params, "margin": self.margin, "split": "train", "shard": len(self.shards)})
        self.shards.append({"folder": self.folder, "persons": len(self.anns)})

    def _limit(self) -> int:
        return (self.plan.first_budget - self.val_bytes) if not self.shards else self.plan.budget

    def _last_shard_full(self) -> bool:
        return bool(self.max_shards) and len(self.shards) + 1 >= self.max_shards

    def add(self, source: str, rec, p, beside) -> None:
        """One packed person (p: its PackedPerson), numbered in the order written."""
        img, ann = coco_entries(p, f"{self.n + 1:06d}.jpg", self.n + 1, self.n + 1, source, beside)
        size = len(p.jpeg) + _entry_bytes(img, ann)
        if self.anns and self.bytes + size > self._limit():
            if self._last_shard_full():
                self.left_out["lspet" if source == "lspet" else "coco"] += 1   # the rest stays out
                return
            self._finish()
            self._start()
        self.n += 1
        (self.folder / f"{self.n:06d}.jpg").write_bytes(p.jpeg)
        self.images.append(img)
        self.anns.append(ann)
        self.bytes += size
        self.shrunk += bool(p.matrix[1, 1] < 1.0)
        self.kept += p.original

    def close(self) -> list[dict]:
        """Close the last shard, then write into each index how many shards the pack has, so that a missing one is
        noticed; the shards."""
        self._finish()
        for s in self.shards:
            index = json.loads((s["folder"] / INDEX).read_text())
            write_index(s["folder"], index["images"], index["annotations"], {**index["info"], "of": len(self.shards)})
        return self.shards


def _pack_training(args, plan: _Plan, training: _Training, val_bytes: int) -> _ShardWriter:
    """Every readable training person packed into shards; the writer, closed, with its counts."""
    writer = _ShardWriter(plan, args.margin, val_bytes, args.max_shards)
    for source, rec, p in _pack_list(training.records, training.sources, plan.aspect, args, plan.progress, "train"):
        writer.add(source, rec, p, training.beside(source, rec))
    writer.close()
    return writer


def _report_shards(shards: list[dict], val_bytes: int, budget: int) -> tuple[int, int]:
    """Print each shard's persons and bytes (warning when over budget); the total (file bytes, bytes on disk)."""
    total, total_du = 0, 0
    for s in shards:
        b, du = folder_bytes(s["folder"])
        total, total_du = total + b, total_du + du
        extra = f" (+ val {val_bytes / MIB:.1f} MiB = {(b + val_bytes) / MIB:.1f} MiB in the first call)" \
            if s is shards[0] and val_bytes else ""
        print(f"{s['folder'].name}: {s['persons']} persons, {b / MIB:.1f} MiB ({du / MIB:.1f} MiB on disk){extra}")
        if b > budget:
            print(f"warning: {s['folder']} is over --shard-mib (one person larger than the budget?)")
    return total, total_du


def _report_travel(shards: list[dict], val_bytes: int) -> None:
    """Print what the largest device call would carry with the repo's own files, warning over the 64 MiB limit."""
    repo = repo_travel_bytes()
    if repo is None:
        return
    biggest = max(folder_bytes(s["folder"])[0] + (val_bytes if s is shards[0] else 0) for s in shards)
    print(f"the repo's files that travel with every device call: {repo / MIB:.1f} MiB; with the largest "
          f"call's data {(repo + biggest) / MIB:.1f} MiB (limit 64 MiB)")
    if repo + biggest > 63 * MIB:
        print("warning: over the device tool's 64 MiB per call: pack again with a smaller --shard-mib")


def _report_total(args, training: _Training, writer: _ShardWriter, totals: tuple[int, int], val_bytes: int,
                  seconds: float) -> None:
    """Print the persons left out by --max-shards, if any, and the pack's totals."""
    records, sources, left_out, n = training.records, training.sources, writer.left_out, writer.n
    total, total_du = totals
    n_coco = sources.count("coco") + sources.count(PSEUDO_SOURCE)
    if any(left_out.values()):
        print(f"left out by --max-shards {args.max_shards}: {left_out['coco']} COCO, {left_out['lspet']} LSPET "
              "persons (they did not fit)")
    print(f"total: {n} training persons ({n_coco - left_out['coco']} COCO, "
          f"{len(records) - n_coco - left_out['lspet']} LSPET; "
          f"{len(records) - n - sum(left_out.values())} skipped, {writer.shrunk} shrunk to input-h {args.input_h}, "
          f"{writer.kept} kept as they were), "
          f"{len(writer.shards)} shards, "
          f"{total / MIB:.1f} MiB ({total_du / MIB:.1f} MiB on disk)"
          + (f", + val {val_bytes / MIB:.1f} MiB" if val_bytes else "")
          + f"; margin {args.margin}, quality {args.quality}, {seconds:.0f} s")


def _run(args) -> int:
    """Pack the val split (unless --no-val), then the training persons into shards, and report the pack."""
    t0 = time.time()
    cfg = _load_config(args)
    _check_options(args)
    plan = _plan(args, cfg)
    val_bytes = 0 if args.no_val else _pack_val(args, cfg, plan)
    training = _training_persons(args, cfg, plan.params)
    writer = _pack_training(args, plan, training, val_bytes)
    totals = _report_shards(writer.shards, val_bytes, plan.budget)
    _report_travel(writer.shards, val_bytes)
    _report_total(args, training, writer, totals, val_bytes, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
