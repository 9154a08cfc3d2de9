"""The turned look (posecal/detect/turned.py): the detector again on the picture turned half a turn, its boxes
turned back by hand, and asked for by the orientations."""
import numpy as np
import pytest

from posecal.detect.turned import TurnedLook, turned_back


class UprightOnly:
    """A stand-in detector that finds a 'person' only where a bright head (a white block) is above a grey body:
    it sees the drawn figure upright and misses it upside down, as person detectors miss handstands."""

    score_threshold, nms_threshold = 0.3, 0.45

    def __call__(self, bgr):
        grey = bgr[..., 0]
        head_y, head_x = np.nonzero(grey > 200)
        body_y, body_x = np.nonzero((grey > 100) & (grey < 200))
        if not len(head_y) or not len(body_y) or head_y.min() > body_y.min():     # no head above a body
            return np.zeros((0, 4)), np.zeros(0)
        x0, y0 = min(head_x.min(), body_x.min()), head_y.min()
        x1, y1 = max(head_x.max(), body_x.max()), body_y.max()
        return np.array([[x0, y0, x1 - x0 + 1, y1 - y0 + 1]], float), np.array([0.9])


def figure(upside_down: bool) -> np.ndarray:
    img = np.zeros((120, 160, 3), np.uint8)
    img[20:35, 60:80] = 255        # head
    img[35:100, 60:80] = 150       # body
    return img[::-1, ::-1].copy() if upside_down else img


def test_turned_back_by_hand():
    assert turned_back(np.array([[10, 20, 30, 40]]), 160, 120).tolist() == [[120, 60, 30, 40]]


def test_a_figure_upside_down_is_found_by_the_turned_look_only():
    det = UprightOnly()
    upright, _ = det(figure(False))
    assert upright.tolist() == [[60, 20, 20, 80]]
    assert len(det(figure(True))[0]) == 0
    boxes, scores = TurnedLook(det)(figure(True))
    # the upright box turned back: x = 160 - 60 - 20, y = 120 - 20 - 80
    assert boxes.tolist() == [[80, 20, 20, 80]] and scores.tolist() == pytest.approx([0.9])
    # upright, both looks agree on nothing turned: one box, the upright one
    boxes, _ = TurnedLook(det)(figure(False))
    assert boxes.tolist() == [[60, 20, 20, 80]]
    assert TurnedLook(det).nms_threshold == 0.45 and TurnedLook(det).score_threshold == 0.3


def test_the_orientations_ask_for_the_turned_look():
    from posecal.inference.predictor import Predictor
    from posecal.models.shipped import is_installed

    if not is_installed("accurate"):
        pytest.skip("shipped model not available")
    assert isinstance(Predictor("accurate", orientations="auto", threads=1).detector, TurnedLook)
    assert not isinstance(Predictor("accurate", threads=1).detector, TurnedLook)
