"""Packed training data, read: one small JPEG per person (its crop region with room for augmentation) and a
COCO-style index per shard, for machines that get the data carried to them in pieces. The packer is a tool of the
source tree (tools/pack_training_data.py): training reads packs, nothing the product runs writes one.

Each packed image is the person's top-down region (box made `aspect`, padded by 1.25) times `margin`, black outside
the source image, area-shrunk to at most `input_h` pixels high. Keypoints, box and area are mapped by the exact
affine map, so the records load back as ordinary `PersonRecord`s that `TopDownDataset` trains on unchanged.

Layout of a pack folder:
    shard_000/index.json, shard_000/000001.jpg, ...   training persons (`load_packed_persons`)
    val/index.json, val/*.jpg                          validation only (`packed_val_paths`)
The index files are COCO keypoint JSON; each annotation also carries `visibility_known` (False for LSPET),
`source` and the original file name and ids.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posecal.data.coco import PersonRecord, load_coco_persons, read_coco, read_json
from posecal.errors import PosecalInputError

FORMAT = "posecal-packed-v1"
INDEX = "index.json"
VAL_DIR = "val"
# The `source` of a packed person whose keypoints a model gave (lab/tools/pseudo_labels.py), not a labeller.
PSEUDO_SOURCE = "pseudo"


def _check_index(path: Path) -> dict:
    data = read_json(path)
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise PosecalInputError(f"{path}: not a posecal pack index (expected info.format = {FORMAT!r}, as "
                                "the packer in posecal's source tree, tools/pack_training_data.py, writes)")
    return data


def load_packed_persons(folder, pseudo: bool = True) -> list[PersonRecord]:
    """Training persons of a pack folder (all its shard_*/ in order) as PersonRecords in packed-image pixels;
    `pseudo=False` leaves out the pseudo-labelled ones (source "pseudo"), so that one pack serves a run with
    them and its control without."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PosecalInputError(f"{folder}: pack folder not found (data.packed / --packed)")
    shards = sorted(p for p in folder.glob("shard_*") if p.is_dir())
    if not shards:
        raise PosecalInputError(f"{folder}: no shard_*/ folders (not a pack made by posecal's packer, "
                                "tools/pack_training_data.py in its source tree, "
                                "or its shards were not all brought here)")
    records = []
    for i, shard in enumerate(shards):
        index = shard / INDEX
        data = _check_index(index)
        of = data["info"].get("of")
        if shard.name != f"shard_{i:03d}" or (of is not None and of != len(shards)):
            raise PosecalInputError(f"{folder}: has {', '.join(s.name for s in shards)}, but the pack has "
                                    f"{of} shards (shard_000 ... shard_{(of or 1) - 1:03d}): bring all of them")
        annotations = read_coco(index)["annotations"]   # its fields checked, as every COCO file's
        known = {a["id"]: bool(a.get("visibility_known", True)) for a in annotations}
        left_out = {a["id"] for a in annotations if not pseudo and a.get("source") == PSEUDO_SOURCE}
        recs = load_coco_persons(index, shard)
        if len(recs) != len(annotations):
            raise PosecalInputError(f"{index}: {len(annotations) - len(recs)} persons without labelled "
                                    "keypoints (a pack holds none)")
        for r in recs:
            r.visibility_known = known[r.ann_id]
        records += [r for r in recs if r.ann_id not in left_out]
    return records


def packed_neighbours(folder) -> dict[str, np.ndarray]:
    """Image path (as load_packed_persons names it) -> (N, K, 3) the other labelled people of that packed person's
    photograph in its packed image's pixels, for the persons whose index entry has them (tools/pack_training_data.py
    stores them for COCO crop sets)."""
    out = {}
    for shard in sorted(p for p in Path(folder).glob("shard_*") if p.is_dir()):
        data = _check_index(shard / INDEX)
        files = {im["id"]: im["file_name"] for im in data["images"]}
        for a in data["annotations"]:
            if a.get("neighbours"):
                k = len(a["keypoints"]) // 3
                points = np.asarray(a["neighbours"], np.float64).reshape(-1, k, 3)
                out[os.path.join(shard, files[a["image_id"]])] = points
    return out


def packed_val_paths(folder) -> tuple[str, str] | None:
    """(annotation file, image folder) of the pack's validation split, or None when it has none."""
    index = Path(folder) / VAL_DIR / INDEX
    if not index.is_file():
        return None
    _check_index(index)
    return str(index), str(index.parent)
