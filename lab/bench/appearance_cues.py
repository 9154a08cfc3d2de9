"""Which appearance cue tells people apart in tracking: colour histograms or the pose network's own features?
(python lab/bench/appearance_cues.py, after bench/track_ids.py has written its scenes to track_ids/)

Issue 31 asked for "an appearance cue stronger than colour histograms (features the pose network already
computes, pooled inside the person)". Measured, not assumed: on the track_ids scenes (real COCO val people
pasted over the real vtest background, truth ids known), every 10th frame, each person at least 25 % visible
is estimated by the accurate model in their truth box, and for every two people of one scene at most 30 frames
apart, each cue's similarity is computed. AUC = the chance that a pair of the same person scores higher than a
pair of two people (1: perfect, 0.5: no better than chance). Cues:
* colour: tracking/associate.colour_histogram (hue x saturation of the box's centre), Bhattacharyya coefficient;
* torso colour: the same histogram over the quadrilateral of the predicted shoulders and hips;
* pose features: the trust model's own stride-4 features (what its keypoint heatmaps are read from) at each
  predicted keypoint, unit length, mean cosine over all keypoints, or over those both call visible.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from posecal.inference.predictor import Predictor
from posecal.models.trust.network import TRUST_INPUT
from posecal.tracking.associate import HIST_BINS, appearance_similarity, colour_histogram

TORSO = [5, 6, 12, 11]    # left/right shoulder, right/left hip: a convex quadrilateral


def pose_features(predictor: Predictor, frame: np.ndarray, boxes: np.ndarray, people: list) -> np.ndarray:
    """(P, K, C) the trust model's stride-4 features at each person's predicted keypoints, unit length."""
    model = predictor.model
    crops, pts = [], []
    for box, p in zip(boxes, people):
        crop, m = predictor.estimator._crop(frame, box)
        crops.append(crop)
        pts.append(np.c_[p.keypoints, np.ones(len(p.keypoints))] @ m.T)
    from posecal.data.topdown import to_batch

    images = F.interpolate(to_batch(crops), size=(TRUST_INPUT, TRUST_INPUT), mode="bilinear", align_corners=False)
    scale = TRUST_INPUT / np.array(predictor.config.input_wh, float)
    grid = torch.tensor((np.array(pts) + 0.5) * scale / TRUST_INPUT * 2 - 1, dtype=torch.float32)
    with torch.no_grad():
        feature, _, _ = model.trust.own_pose(images)
        at = F.grid_sample(feature, grid[:, :, None, :], align_corners=False)[..., 0].transpose(1, 2)
    return F.normalize(at, dim=-1).numpy()


def torso_histogram(frame: np.ndarray, person) -> np.ndarray | None:
    if (person.visibility[TORSO] == 0).sum() > 1:
        return None
    pts = person.keypoints[TORSO]
    pts = pts.mean(0) + 1.1 * (pts - pts.mean(0))
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, pts.astype(np.int32), 1)
    if mask.sum() < 20:
        return None
    hist = cv2.calcHist([cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)], [0, 1], mask, list(HIST_BINS),
                        [0, 180, 0, 256]).reshape(-1)
    return hist / hist.sum()


def auc(same: list[float], other: list[float]) -> float:
    s, o = np.array(same)[:, None], np.array(other)[None]
    return float((s > o).mean() + 0.5 * (s == o).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("track_ids"))
    ap.add_argument("--scenes", type=int, default=5)
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    predictor = Predictor("accurate", backend="torch", flip=False, threads=1, detector=None)
    rows = []
    for s in range(args.scenes):
        truth = json.loads((args.work / f"scene{s}.json").read_text())
        cap, t = cv2.VideoCapture(str(args.work / f"scene{s}.avi")), 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            anns = [a for a in truth["annotations"] if a["image_id"] == t and a["visible_fraction"] >= 0.25]
            if t % args.every == 0 and anns:
                boxes = np.array([a["bbox"] for a in anns], float)
                people = predictor.predict_many([(frame, boxes, np.ones(len(anns)))], bgr=True)[0]
                features = pose_features(predictor, frame, boxes, people)
                for a, p, feat in zip(anns, people, features):
                    rows.append({"scene": s, "t": t, "id": a["track_id"], "vis": p.visibility, "feat": feat,
                                 "colour": colour_histogram(frame, a["bbox"]), "torso": torso_histogram(frame, p)})
            t += 1
    both_visible = lambda a, b: (a["vis"] == 2) & (b["vis"] == 2)  # noqa: E731
    cues = {
        "colour (box centre; tracking's cue)": lambda a, b: appearance_similarity(a["colour"], b["colour"]),
        "torso colour (from the pose)": lambda a, b: appearance_similarity(a["torso"], b["torso"]),
        "pose features, all keypoints": lambda a, b: float((a["feat"] * b["feat"]).sum(-1).mean()),
        "pose features, both visible": lambda a, b: float((a["feat"] * b["feat"]).sum(-1)[both_visible(a, b)].mean())
        if both_visible(a, b).sum() >= 3 else float((a["feat"] * b["feat"]).sum(-1).mean()),
    }
    print(f"{len(rows)} people (every {args.every}th frame of {args.scenes} scenes); pairs in one scene <= 30 frames apart")
    for name, cue in cues.items():
        same, other = [], []
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                if a["scene"] == b["scene"] and abs(a["t"] - b["t"]) <= 30:
                    (same if a["id"] == b["id"] else other).append(cue(a, b))
        print(f"{name:38s} AUC {auc(same, other):.3f} ({len(same)} same-person / {len(other)} two-person pairs)")


if __name__ == "__main__":
    main()
