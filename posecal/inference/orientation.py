"""Test-time orientation search: estimate each person in crops turned by 0/90/180/270° and keep the turn whose
pose the quality head trusts most.

Why: one network learning every orientation from a few thousand people stays far better upright than lying or
upside down (the robustness bench: AP 32 upright, 7 at 90°, 11 at 180°). Turning the crop so that the person
stands upright moves the hard case onto the easy one, and the pose-quality head (the pose's expected OKS) is what
says which turn gave a pose that holds together. It costs one forward pass per orientation, so it is opt-in
(`--orientations 4`), for photos where people lie, tumble or hang upside down — not for real-time video.
`--orientations auto` spends the three extra passes only on the persons whose upright pose the quality head
doubts (below AUTO_BELOW) or whose upright torso leans past AUTO_TILT: an upright pose it trusts that stands
upright is rarely beaten by a turned one, and most people stand.
"""
from __future__ import annotations

import numbers

import numpy as np

from posecal.errors import PosecalInputError
from posecal.validation import Rule, describe, parse_int

AUTO = "auto"
ORIENTATIONS = {1: (0.0,), 4: (0.0, 90.0, 180.0, 270.0), AUTO: (0.0, 90.0, 180.0, 270.0)}

AUTO_BELOW = 0.1
"""`auto`: a person whose upright pose has a raw predicted OKS (the quality output before the model's stored
calibration, read by `orientation_scores`) below this also gets the three turned crops, and so does one whose
upright torso leans more than AUTO_TILT (torso_tilt). Raw, not calibrated, because the choice is made before
calibration and must not move when a model is recalibrated. Chosen on val with the trust model
(bench/orientation_auto.py, 400 persons): the quality alone cannot tell a lying person from a small or hidden
upright one (a threshold that turns 10 % of upright people finds half of the turned ones), the torso's lean
can; 0.1 with 60 degrees keeps rot 90 / rot 180 at 0.87 / 0.86 of upright AP for 1.26 passes per upright person."""

AUTO_TILT = 60.0
"""`auto`: degrees between the image's up and the upright pose's torso (hip centre -> shoulder centre) beyond
which a person also gets the turned crops (see AUTO_BELOW)."""


UPSIDE_DOWN_TILT = 120.0
"""Degrees of torso tilt (torso_tilt) from which a pose found upright is upside down (a handstand, a flip): its
visibility is judged in its crop turned half a turn (`visibility_turns`, Estimator). Why: the trust model saw few people
upside down, and in their upright crop it calls most of their plainly visible joints occluded; turned so the person
stands, it calls as many visible as it does for people standing (LSPET's held-out athletes, CHANGELOG). Their pose
stays the upright crop's, which is the more accurate there."""


def torso_tilt(keypoints) -> np.ndarray:
    """(N,) degrees between the picture's up and the torso (hip centre -> shoulder centre) of (N, 17, 2) poses in
    upright crop or image pixels (y down): 0 standing, 90 lying, 180 upside down."""
    kp = np.asarray(keypoints, dtype=np.float64)
    up = kp[:, [5, 6]].mean(1) - kp[:, [11, 12]].mean(1)
    return np.degrees(np.arctan2(np.abs(up[:, 0]), -up[:, 1]))


LYING_TILT = AUTO_TILT
"""Degrees of torso tilt from which a pose found upright lies (on a mat, a "human flag"), up to UPSIDE_DOWN_TILT:
its visibility is judged in its crop turned a quarter turn, the shoulders above the hips (`visibility_turns`), for
the reason people upside down are (their plainly visible joints were called occluded upright: CHANGELOG). The lean
past which `auto` also tries the turned crops."""


TURN_BELOW_VISIBLE = 12
"""A pose upside down or lying is turned only where its upright crop gives fewer than this many of its 17 keypoints
p(visible) >= 0.5 (before calibration): one it already sees has nothing to gain and costs a pass (and turned, lost
visible joints). Chosen on LSPET athletes the held-out 600 do not include (persons
-1200 to -600): the fewest crops turned with the upside-down and lying shares called visible within 0.02 of
turning all and the others' no lower (CHANGELOG)."""


def visibility_turns(upright: dict) -> np.ndarray:
    """(N,) the turn (degrees counter-clockwise, as person_crop_matrix turns a crop) in which each person's visibility
    is judged, from their upright pass (crop pixels, "xy"; "visibility_probs" where there are any): 180 upside down
    (UPSIDE_DOWN_TILT); lying (LYING_TILT) 90 where the shoulders lie right of the hips, 270 where left, so that the
    turn stands them up; 0 otherwise, and for a pose that sees TURN_BELOW_VISIBLE keypoints or more."""
    xy = np.asarray(upright.get("xy", np.zeros((0, 0, 2))))
    if xy.ndim != 3 or xy.shape[1] != 17 or not len(xy):
        return np.zeros(0)
    tilt = torso_tilt(xy)
    right = (xy[:, [5, 6], 0].mean(1) - xy[:, [11, 12], 0].mean(1)) > 0
    quarter = np.where(right, 90.0, 270.0)
    turns = np.where(tilt >= UPSIDE_DOWN_TILT, 180.0, np.where(tilt >= LYING_TILT, quarter, 0.0))
    if upright.get("visibility_probs") is not None:
        seen = (np.asarray(upright["visibility_probs"])[..., 2] >= 0.5).sum(-1)
        turns = np.where(seen < TURN_BELOW_VISIBLE, turns, 0.0)
    return turns


def orientations_problem(value) -> str | None:
    """What is wrong with `value` as an orientations setting, in posecal.validation's words ('must be one of 1,
    4, auto, got 3'), or None. 1 and 4 are integers (numpy's too; not booleans, which would silently be 1)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        return f"expected 1, 4 or {AUTO!r}, got {describe(value)}"
    return Rule(choices=tuple(ORIENTATIONS)).problem(value)


def check_orientations(value) -> int | str:
    """The setting as posecal uses it (1, 4 or 'auto'), or one PosecalInputError line 'orientations: ...'."""
    problem = orientations_problem(value)
    if problem:
        raise PosecalInputError(f"orientations: {problem}")
    return AUTO if value == AUTO else int(value)


def parse_orientations(text: str) -> int | str:
    """--orientations as typed: '1' and '4' become the ints the API takes, 'auto' stays; anything else raises
    ValueError with the problem (the command line turns it into its usage line)."""
    value = parse_int(text)
    value = text.strip() if value is None else value
    problem = orientations_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def orientations_for(setting) -> tuple[float, ...]:
    """The crop turns that may be tried for `setting` (1: upright only; 4 and auto: the four right angles,
    upright first; which persons auto turns is `persons_to_turn`'s choice)."""
    return ORIENTATIONS[check_orientations(setting)]


def persons_to_turn(setting, upright: dict) -> np.ndarray:
    """Indices of the persons whose crops also go through the turns 90/180/270, from the outputs of their upright
    pass (raw, before calibration): none for 1, all for 4, and for auto those whose predicted OKS is below
    AUTO_BELOW or whose torso leans more than AUTO_TILT. A model without quality heads has no predicted OKS to hold to that threshold (its fallback score,
    the mean heatmap peak, is on another scale), so auto is upright only there."""
    setting = check_orientations(setting)
    if setting == 4:
        return np.arange(len(upright["heatmap_scores"]))
    if setting == 1 or upright.get("oks") is None:
        return np.arange(0)
    doubted = orientation_scores(upright) < AUTO_BELOW
    keypoints = upright.get("keypoints", upright.get("xy"))
    if keypoints is not None and np.asarray(keypoints).shape[1] == 17:
        doubted |= torso_tilt(keypoints) > AUTO_TILT
    return np.flatnonzero(doubted)


def keep_best_turn(upright: dict, turned: list[dict], redo: np.ndarray) -> dict:
    """Merge an orientation search. upright: per-person arrays of N persons' upright pass; turned: per extra turn,
    the arrays of its pass over the persons `redo` (indices into the N, in that order). Each person of `redo`
    keeps its most trusted turn (`best_orientation`: ties keep upright), every other person its upright result;
    the arrays come back for all N, in their order."""
    redo = np.asarray(redo, dtype=np.intp)
    if not turned or not len(redo):
        return upright
    best = best_orientation(np.stack([orientation_scores(upright)[redo]] + [orientation_scores(t) for t in turned]))
    rows = np.arange(len(redo))
    merged = {}
    for key, values in upright.items():
        merged[key] = values.copy()
        merged[key][redo] = np.stack([values[redo]] + [t[key] for t in turned])[best, rows]
    return merged


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
