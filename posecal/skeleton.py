"""Keypoint definitions: COCO-17 (names, flip pairs, OKS sigmas, limbs) and LSP-14 with its COCO mapping."""
from __future__ import annotations

import numpy as np

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINTS)
COCO_SIGMAS = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062,
                        .107, .107, .087, .087, .089, .089])
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
UPPER_BODY = tuple(range(0, 11))
LOWER_BODY = tuple(range(11, 17))
# 0-based limb pairs for drawing (the COCO category skeleton, made 0-based).
COCO_LIMBS = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))

LSP_KEYPOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                 "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top")
# LSP joint index -> COCO index (None for neck and head_top, which COCO lacks).
LSP_TO_COCO = tuple(COCO_KEYPOINTS.index(n) if n in COCO_KEYPOINTS else None for n in LSP_KEYPOINTS)


def flip_permutation(num_keypoints: int = NUM_KEYPOINTS) -> np.ndarray:
    """Index array that swaps left and right: keypoints[perm] is the mirrored person's order."""
    perm = np.arange(num_keypoints)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm
