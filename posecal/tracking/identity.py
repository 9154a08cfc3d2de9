"""Identity trust: how likely a tracked record is the same person as its id's previous record (`id_confidence`).

The tracker describes each record that continues an id by what it saw when it gave it (`id_features`: likeness to
the predicted pose, the margin over the best alternative, how crowded the place is, time unseen, how the pose was
obtained, its quality, how far that quality fell below the track's and how much the box grew past the predicted
one); a calibrated logistic (calibration/maps.py LogisticScore, tools/fit_id_confidence.py) turns them into a
probability. The margin matters because ids pass over where two people cross; the fall and the growth because an
id also passes through a box over two people, whose pose mixes both people's joints (less trusted than the person
has been) in a box larger than the one person's. A record that starts its id, or any record without the fitted
file, has id_confidence None.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posecal.calibration.maps import LogisticScore
from posecal.errors import PosecalInputError
from posecal.io import write_json_atomic

# The features, in this order, with the sign their weight is held to (+1: more of it, more likely the same
# person; -1: less likely; 0: free), where the direction is known.
FEATURES = ("similarity", "margin", "box_iou", "appearance", "crowd", "crossing", "gap", "undetected",
            "pose_quality", "carried", "held", "reid", "quality_drop", "box_growth")
SIGNS = (1, 1, 1, 1, -1, -1, -1, -1, 1, 0, 0, 0, -1, -1)
ID_CONFIDENCE_FILE = Path(__file__).resolve().parents[1] / "weights" / "id_confidence.json"
# the score of the pair when it has no alternative at all (nobody else in the frame, no other track)
NO_ALTERNATIVE_MARGIN = 1.0


@dataclass(frozen=True)
class MatchContext:
    """What the tracker saw when it gave ids in one frame, as matrices over all its tracks (rows, before the frame's
    poses were taken) and the frame's poses (columns): `score` the association score (pose similarity + the colour
    tie-breaker), `similarity` the pose similarity alone (OKS, or box IoU for poses with few shared keypoints),
    `box_iou` the IoU of each track's predicted box with each pose's box, `appearance` the colour similarity
    (0.5 unknown), `growth` how much each pose's box is larger than each track's predicted box (box_growth);
    `crowd` (N,) each pose's largest box IoU with another pose of the frame; `gap` and `undetected` (T,) each
    track's frames unmatched and frames without a detector box before this frame, `track_quality` (T,) each
    track's running pose quality."""

    score: np.ndarray
    similarity: np.ndarray
    box_iou: np.ndarray
    appearance: np.ndarray
    crowd: np.ndarray
    gap: np.ndarray
    undetected: np.ndarray
    growth: np.ndarray
    track_quality: np.ndarray


def margin(score: np.ndarray, r: int, c: int) -> float:
    """How much the pair (r, c) beats the best alternative on either side: its score minus the best score of
    track r with another pose, or of pose c with another track (NO_ALTERNATIVE_MARGIN when there is neither)."""
    others = np.r_[np.delete(score[r], c), np.delete(score[:, c], r)]
    others = others[np.isfinite(others)]
    return NO_ALTERNATIVE_MARGIN if not len(others) else float(np.clip(score[r, c] - others.max(), -1, 1))


def crossing(box_iou: np.ndarray, r: int, c: int) -> float:
    """The largest IoU of pose c's box with the predicted box of a track other than r (seen or lost): where
    people cross, another track is expected where this pose is."""
    others = np.delete(box_iou[:, c], r)
    return float(others.max()) if len(others) else 0.0


def quality_drop(pose_quality: float, track_quality: float) -> float:
    """How far a pose's quality falls below the track's running quality, as a share of it (0 where it does not
    fall): a pose that mixes two people's joints is far less trusted than the person has been."""
    return float(max(0.0, 1.0 - float(pose_quality) / track_quality)) if track_quality > 0 else 0.0


def box_growth(predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, N) log of how many times each pose's box area (boxes (N, 4), x y w h) is each track's predicted box
    area (predicted (T, 4)), 0 where it is not larger: a box that takes in a second person grows past the one
    person's, a partly hidden person's only shrinks."""
    return np.maximum(np.log(_areas(boxes)[None] / _areas(predicted)[:, None]), 0.0)


def _areas(boxes) -> np.ndarray:
    """(M,) areas of x y w h boxes, at least one pixel."""
    return np.maximum(np.asarray(boxes, float).reshape(-1, 4)[:, 2:].prod(-1), 1.0)


def id_features(ctx: MatchContext, r: int, c: int, person, reid: bool = False) -> np.ndarray:
    """(len(FEATURES),) the features of pose c continuing track r (FEATURES' order); reid: matched by
    re-identification (a lost track found again by place and colours, not by pose)."""
    return np.array([ctx.similarity[r, c], margin(ctx.score, r, c), ctx.box_iou[r, c], ctx.appearance[r, c],
                     ctx.crowd[c], crossing(ctx.box_iou, r, c), np.log1p(ctx.gap[r]), np.log1p(ctx.undetected[r]),
                     float(person.pose_quality), float(person.pose_source == "carried"), 0.0, float(reid),
                     quality_drop(person.pose_quality, ctx.track_quality[r]), ctx.growth[r, c]])


def held_features(person, crowd: float, gap: int, undetected: int) -> np.ndarray:
    """The features of a hidden track's held pose (no pose was matched: its similarity, margin and box overlap
    are 0, its colours unknown, its quality's fall and its box's growth 0; crowd and crossing are its box's IoU
    with the person in front)."""
    return np.array([0.0, 0.0, 0.0, 0.5, crowd, crowd, np.log1p(gap), np.log1p(undetected),
                     float(person.pose_quality), 0.0, 1.0, 0.0, 0.0, 0.0])


@dataclass
class IdConfidence:
    """The fitted map from id_features to id_confidence, with what it was fitted and judged on (`fit_info`)."""

    score: LogisticScore
    fit_info: dict

    def __call__(self, features) -> np.ndarray:
        """(M,) id_confidence of (M, len(FEATURES)) features."""
        return self.score(np.asarray(features, float).reshape(-1, len(FEATURES)))

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "logistic": self.score.to_dict(), "fit_info": self.fit_info}

    @classmethod
    def from_dict(cls, d: dict, source: str = "id_confidence") -> "IdConfidence":
        """The map from its JSON; a file for other features, or damaged, is one PosecalInputError line."""
        if not isinstance(d, dict) or d.get("features") != list(FEATURES):
            raise PosecalInputError(f"{source}: not an id_confidence map for the features {', '.join(FEATURES)} "
                                    f"(refit it: python tools/fit_id_confidence.py)")
        try:
            score = LogisticScore.from_dict(d["logistic"])
        except (KeyError, TypeError, ValueError) as e:
            raise PosecalInputError(f"{source}: damaged id_confidence map ({e})") from None
        if len(score.weights) != len(FEATURES) or not np.all(np.isfinite(np.r_[score.mean, score.std, score.weights,
                                                                                 score.bias])):
            raise PosecalInputError(f"{source}: damaged id_confidence map (its numbers are not "
                                    f"{len(FEATURES)} finite weights)")
        return cls(score, dict(d.get("fit_info", {})))


def save_id_confidence(model: IdConfidence, path: Path) -> None:
    write_json_atomic(model.to_dict(), Path(path))


def load_id_confidence(path: Path | None = ID_CONFIDENCE_FILE) -> IdConfidence | None:
    """The fitted map at `path` (default the shipped one), None where there is no such file: records then carry
    no id_confidence. A file that cannot be read as one is one PosecalInputError line."""
    if path is None or not Path(path).is_file():
        return None
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PosecalInputError(f"{path}: damaged id_confidence map ({e.__class__.__name__})") from None
    return IdConfidence.from_dict(d, str(path))
