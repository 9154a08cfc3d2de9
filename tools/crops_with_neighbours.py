"""A crop set's annotation file with every labelled person of each crop's photograph in the crop: what `posecal eval
--detector` needs to score the poses a detector finds on crops one to one, as bench/reported_poses.py's val world
scores them.

    python tools/crops_with_neighbours.py ../shared/data/coco-val2017-crops/annotations/val.json val_all.json
    posecal eval --annotations val_all.json --images ../shared/data/coco-val2017-crops/images --detector default \
        --out runs/e2e_val_all

Why: a crop set labels one person a crop, so the other people a crop shows are "nobody labelled" to a scorer, and
a pose on one of them that overlaps the labelled person's box counts as a second pose of that person. Each crop's
neighbours (posecal.data.neighbours.with_neighbours: through the photograph, by the crops' affine maps) are added as annotations of
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
from posecal.data.neighbours import with_neighbours  # noqa: E402


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
