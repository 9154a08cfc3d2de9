"""Keypoints carried between detector frames by optical flow instead of the pose network.

Why: on a few CPU cores the pose network is most of a frame's time, and people move little in a frame or two.
Between detector frames each tracked person's keypoints follow pyramidal Lucas-Kanade flow (all people's points in
one call); a carried pose keeps its last estimate's quality, visibility and scores (flow does not see whether they
are right), and the person policy still decides on it (pose_tracker.carried_people).

A point the flow loses (its status, or forward-backward disagreement above FB_MAX_PX) or called absent moves with
the person's step, and so does the box. The step is the median of the points that held, and where the track's
velocity is known only of those that moved with it (`person_step`): a point at the body's edge "holds" on the still
background (CHANGELOG). With no point holding, the person moves at the track's velocity.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

FB_MAX_PX = 2.0                                  # forward-backward disagreement above which a point is lost
LK_WINDOW = (15, 15)                             # with 2 levels: follows steps up to ~30 px a frame, and the
LK_LEVELS = 2                                    # tracking benchmark scores as with a larger window and more
                                                 # levels, at less cost
LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
# a point moved with the track when its step is within this share of the velocity's length (+ AGREE_PX) of it:
# limbs swing about the body's pace, the still background does not follow it
AGREE_SHARE, AGREE_PX = 0.5, 2.0


def grey(frame_bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)


def flow_points(prev_grey: np.ndarray, next_grey: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) points of prev_grey followed into next_grey: their new places and whether each held (tracked both
    ways to within FB_MAX_PX of where it started, and inside the frame)."""
    pts = np.ascontiguousarray(np.asarray(points, np.float32).reshape(-1, 1, 2))
    if not len(pts):
        return np.zeros((0, 2)), np.zeros(0, bool)
    fwd, ok_f, _ = cv2.calcOpticalFlowPyrLK(prev_grey, next_grey, pts, None, winSize=LK_WINDOW,
                                            maxLevel=LK_LEVELS, criteria=LK_CRITERIA)
    back, ok_b, _ = cv2.calcOpticalFlowPyrLK(next_grey, prev_grey, fwd, None, winSize=LK_WINDOW,
                                             maxLevel=LK_LEVELS, criteria=LK_CRITERIA)
    fwd, back = fwd.reshape(-1, 2).astype(float), back.reshape(-1, 2).astype(float)
    h, w = next_grey.shape[:2]
    held = (ok_f.reshape(-1) == 1) & (ok_b.reshape(-1) == 1) \
        & (np.linalg.norm(back - pts.reshape(-1, 2), axis=1) <= FB_MAX_PX) \
        & (fwd[:, 0] >= 0) & (fwd[:, 1] >= 0) & (fwd[:, 0] <= w - 1) & (fwd[:, 1] <= h - 1)
    return fwd, held


def person_step(steps: np.ndarray, velocity: np.ndarray | None = None) -> np.ndarray:
    """A person's step into the next frame from the steps (M, 2) of their points that held: the median of those
    that moved with `velocity` (the track's px per frame, None: unknown) where any did, else of all of them;
    no point held: the velocity (zero when unknown)."""
    steps = np.asarray(steps, float).reshape(-1, 2)
    if velocity is None:
        return np.median(steps, axis=0) if len(steps) else np.zeros(2)
    velocity = np.asarray(velocity, float)
    if not len(steps):
        return velocity.copy()
    agree = np.linalg.norm(steps - velocity, axis=1) <= AGREE_SHARE * np.linalg.norm(velocity) + AGREE_PX
    return np.median(steps[agree] if agree.any() else steps, axis=0)


def carried_poses(people: list, prev_grey: np.ndarray, next_grey: np.ndarray, velocities=None) -> list:
    """Each pose (PersonPose) moved into the next frame by the flow of its keypoints (see the module's note).
    `velocities`: per pose, its track's velocity (px per frame), which picks the points that moved with the
    person; None: the median of every point that held, and a pose none of whose points held keeps its place."""
    return carried_and_held(people, prev_grey, next_grey, velocities)[0]


def carried_and_held(people: list, prev_grey: np.ndarray, next_grey: np.ndarray, velocities=None
                     ) -> tuple[list, np.ndarray]:
    """carried_poses, and per pose the share of its present keypoints the flow held (1 where none is present): a
    pose whose points the flow lost (a turn, a passing person, blur) is carried on its person's step alone, and
    is the first to be posed again (tracking/pose_tracker.py repose_due)."""
    if not people:
        return [], np.zeros(0)
    xy = [np.asarray(p.keypoints, float).reshape(-1, 2) for p in people]
    present = [np.ones(len(k), bool) if p.visibility is None else np.asarray(p.visibility) > 0
               for p, k in zip(people, xy)]
    moved, held = flow_points(prev_grey, next_grey, np.concatenate(xy))
    out, shares, start = [], [], 0
    velocities = [None] * len(people) if velocities is None else list(velocities)
    for p, k, use, v in zip(people, xy, present, velocities):
        m, h = moved[start:start + len(k)], held[start:start + len(k)] & use
        start += len(k)
        step = person_step(m[h] - k[h], v)
        new = np.where(h[:, None], m, k + step)
        box = np.asarray(p.box, float)
        out.append(dataclasses.replace(p, keypoints=new, box=np.r_[box[:2] + step, box[2:]], pose_source="carried"))
        shares.append(h.sum() / use.sum() if use.any() else 1.0)
    return out, np.asarray(shares, float)


class FrameFlow:
    """The last frame's grey image, kept so the next frame's poses can be carried from it."""

    def __init__(self):
        self.previous: np.ndarray | None = None

    def advance(self, frame_bgr: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(the previous frame's grey or None, this frame's grey); this frame becomes the previous one."""
        previous, self.previous = self.previous, grey(frame_bgr)
        return previous, self.previous
