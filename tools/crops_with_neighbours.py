"""A crop set's annotation file with every labelled person of each crop's photograph in the crop: what `posecal eval
--detector` needs to score the poses a detector finds on crops one to one, as bench/reported_poses.py's val world
scores them.

    python tools/crops_with_neighbours.py ../shared/data/coco-val2017-crops/annotations/val.json val_all.json
    posecal eval --annotations val_all.json --images ../shared/data/coco-val2017-crops/images --detector default \
        --out runs/e2e_val_all

Why: a crop set labels one person a crop, so the other people a crop shows are "nobody labelled" to a scorer, and
a pose on one of them that overlaps the labelled person's box counts as a second pose of that person. Each crop's
neighbours (posecal.data.neighbours: through the photograph, by the crops' affine maps) are added as annotations of
the crop, boxes from their photograph's box, keypoints outside the crop kept (a person cut by the crop's edge is
scored on every joint, as the bench scores it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.data.neighbours import by_photo, crop_matrix, keypoints_in_crop  # noqa: E402


def with_neighbours(data: dict) -> dict:
    """`data` (a crop set's COCO dict) with, for each crop, its photograph's other labelled people added."""
    photos = by_photo(data["annotations"])
    extra, next_id = [], max(a["id"] for a in data["annotations"]) + 1
    for ann in data["annotations"]:
        (s, _, tx), (_, _, ty) = crop_matrix(ann)
        for other in photos[ann["orig_image_id"]]:
            if other["id"] == ann["id"]:
                continue
            kp, area = keypoints_in_crop(ann, other)
            x, y, w, h = other["orig_bbox"]
            extra.append({"id": next_id, "image_id": ann["image_id"], "category_id": ann.get("category_id", 1),
                          "iscrowd": 0, "keypoints": [round(float(v), 3) for v in kp.ravel()],
                          "num_keypoints": int((kp[:, 2] > 0).sum()), "area": area,
                          "bbox": [float(s * x + tx), float(s * y + ty), float(s * w), float(s * h)],
                          "neighbour_of": ann["id"]})
            next_id += 1
    return {**data, "annotations": data["annotations"] + extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("annotations", help="a crop set's COCO keypoint file (with orig_image_id and crop_transform)")
    ap.add_argument("out", help="the file to write")
    args = ap.parse_args()
    data = json.loads(Path(args.annotations).read_text())
    out = with_neighbours(data)
    Path(args.out).write_text(json.dumps(out))
    added = len(out["annotations"]) - len(data["annotations"])
    print(f"{len(data['annotations'])} crops, {added} neighbours added "
          f"({np.mean([a['num_keypoints'] for a in out['annotations'][len(data['annotations']):]] or [0]):.1f} "
          f"labelled keypoints each) -> {args.out}")


if __name__ == "__main__":
    main()
