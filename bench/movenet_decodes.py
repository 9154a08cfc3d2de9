"""Val AP of raw MoveNet by decode: centre-guided vs DARK, flip test on/off (python bench/movenet_decodes.py).

The raw ported network (no posecal heads) on the val split's GT boxes, square crops of its size (posecal's crop:
side 1.25 x the box's longer edge), the pose score = mean keypoint score, each decode on the same forward passes:

* `movenet`: MoveNet's own centre-guided decode (posecal.codec.movenet), no flip: the original graph's output;
* `movenet + flip`: the crop and its mirror decoded apart and merged (merge_flip);
* `dark` / `dark + flip`: posecal's heatmap decode on MoveNet's keypoint heatmaps (flip-merged heatmaps).

Also the pixel convention of the graph's coordinates (MOVENET_PIXEL_SHIFT): AP with the keypoints shifted by
-0.5/+0.5 crop pixels around the shipped shift.

    python bench/movenet_decodes.py [--variant movenet_thunder|movenet_lightning] [--n 822] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posecal.codec.heatmap import decode, flip_back  # noqa: E402
from posecal.codec.movenet import decode_movenet, merge_flip, movenet_to_crop_pixels  # noqa: E402
from posecal.data.coco import load_coco_persons  # noqa: E402
from posecal.data.topdown import TopDownDataset, heatmap_to_input  # noqa: E402
from posecal.data.transforms import apply_affine, invert_affine  # noqa: E402
from posecal.metrics.coco_ap import coco_keypoint_ap, coco_keypoint_results, load_coco_gt  # noqa: E402
from posecal.models.checkpoint import model_from_config  # noqa: E402
from posecal.models.config import ModelConfig, network_input  # noqa: E402

CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-val2017-crops"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="movenet_thunder", choices=("movenet_thunder", "movenet_lightning"))
    ap.add_argument("--n", type=int, default=None, help="first N val persons (default: all 822)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ann = CROPS / "annotations" / "val.json"
    records = load_coco_persons(ann, CROPS / "images")[: args.n]
    cfg = network_input(ModelConfig(backbone=args.variant), given={"backbone"})
    model = model_from_config(cfg).eval()
    side = cfg.input_wh[0]
    t0 = time.time()
    rows = {name: ([], []) for name in ("movenet", "movenet + flip", "dark", "dark + flip")}
    matrices = []
    with torch.no_grad():
        for batch in DataLoader(TopDownDataset(records, cfg.input_wh), batch_size=32):
            x = batch["image"]
            n = len(x)
            out = model(torch.cat([x, torch.flip(x, dims=[3])]))
            m = out.movenet
            kp = decode_movenet(m.center, m.regress, m.heatmap, m.offset)
            xy, sc = movenet_to_crop_pixels(kp.xy.numpy()), kp.scores.numpy()
            merged = merge_flip(xy[:n], sc[:n], xy[n:], sc[n:], side)
            hm = out.heatmaps[:n]
            hm_flip = 0.5 * (hm + flip_back(out.heatmaps[n:]))
            for name, (k, s) in (("movenet", (xy[:n], sc[:n])), ("movenet + flip", merged),
                                 ("dark", _dark(hm)), ("dark + flip", _dark(hm_flip))):
                rows[name][0].append(k)
                rows[name][1].append(s)
            matrices.append(batch["matrix"].numpy())
    matrices = np.concatenate(matrices)
    gt = load_coco_gt(ann)
    ids = [r.image_id for r in records]

    def score(crop_xy, scores, shift=0.0):
        image_xy = np.array([apply_affine(k + shift, invert_affine(mat)) for k, mat in zip(crop_xy, matrices)])
        res = coco_keypoint_ap(gt, coco_keypoint_results(ids, image_xy, scores, scores.mean(1)), image_ids=ids)
        return res

    print(f"{args.variant}, {len(records)} val persons, GT boxes, square crops {side}x{side}, "
          f"{time.time() - t0:.0f} s of forward passes ({args.threads} threads)")
    print(f"{'decode':16s} {'AP':>5s} {'AP50':>5s} {'AP75':>5s} {'AR':>5s}")
    for name, (k, s) in rows.items():
        r = score(np.concatenate(k), np.concatenate(s))
        print(f"{name:16s} {r['ap']:5.1f} {r['ap50']:5.1f} {r['ap75']:5.1f} {r['ar']:5.1f}")
    k, s = (np.concatenate(v) for v in rows["movenet"])
    shifts = ", ".join(f"{d:+.1f} px: {score(k, s, d)['ap']:.1f}" for d in (-0.5, 0.5))
    print(f"movenet decode, AP with the keypoints shifted from the shipped convention by {shifts}")


def _dark(heatmaps: torch.Tensor):
    xy, scores = decode(heatmaps.float().numpy(), "dark")
    return heatmap_to_input(xy), scores


if __name__ == "__main__":
    main()
