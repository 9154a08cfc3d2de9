"""Test-time orientation search: estimate each person in crops turned by 0/90/180/270° and keep the turn whose
pose the quality head trusts most.

Why: one network learning every orientation from a few thousand people stays far better upright than lying or
upside down (the robustness bench: AP 32 upright, 7 at 90°, 11 at 180°). Turning the crop so that the person
stands upright moves the hard case onto the easy one, and the pose-quality head (the pose's expected OKS) is what
says which turn gave a pose that holds together. It costs one forward pass per orientation, so it is opt-in
(`--orientations 4`), for photos where people lie, tumble or hang upside down — not for real-time video.
"""
from __future__ import annotations

import numpy as np

ORIENTATIONS = {1: (0.0,), 4: (0.0, 90.0, 180.0, 270.0)}


def orientations_for(count: int) -> tuple[float, ...]:
    """The crop turns tried for `count` orientations (1: upright only; 4: the four right angles)."""
    if count not in ORIENTATIONS:
        raise ValueError(f"orientations must be one of {sorted(ORIENTATIONS)}, got {count!r}")
    return ORIENTATIONS[count]


def orientation_scores(res: dict) -> np.ndarray:
    """(N,) how much to trust each crop's pose: the predicted OKS with quality heads, else the mean heatmap peak."""
    if res.get("oks") is not None:
        return np.asarray(res["oks"], dtype=np.float64).reshape(-1)
    return np.asarray(res["heatmap_scores"], dtype=np.float64).mean(-1)


def best_orientation(scores: np.ndarray) -> np.ndarray:
    """scores (R, N): trust of each of R orientations for N persons -> (N,) index of the orientation kept.
    Ties keep the earliest (upright first), so a model that cannot tell keeps its upright answer."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argmax(scores, axis=0)
