"""The second look (posecal/detect/tiles.py): square tiles of a wide frame, by hand, and a detector that, like the
shipped SSD, sees the frame squeezed to 300 x 300: a narrow figure it misses whole is found in a tile, at its place
in the frame."""
import cv2
import numpy as np
import pytest

from posecal.detect.tiles import SecondLook, cut_by_tile, square_tiles


def test_square_tiles_by_hand():
    assert square_tiles(768, 432) == [(0, 0, 432), (336, 0, 432)]
    assert square_tiles(1000, 300) == [(0, 0, 300), (350, 0, 300), (700, 0, 300)]   # a gap: one in the middle
    assert square_tiles(432, 768) == [(0, 0, 432), (0, 336, 432)]                  # portrait: top and bottom
    assert square_tiles(400, 320) == []                                             # about square: no tiles


class SqueezingBlobDetector:
    """Dark blobs of a frame squeezed to 300 x 300, as boxes in the frame's pixels; a blob under 12 px wide in the
    squeezed picture is too thin to see (the SSD's trouble with narrow people in wide frames)."""
    score_threshold, nms_threshold = 0.3, 0.45

    def __call__(self, bgr):
        h, w = bgr.shape[:2]
        small = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (300, 300), interpolation=cv2.INTER_AREA)
        n, _, stats, _ = cv2.connectedComponentsWithStats((small < 100).astype(np.uint8))
        keep = [s for s in stats[1:n] if s[2] >= 12]
        boxes = np.array([[s[0] * w / 300, s[1] * h / 300, s[2] * w / 300, s[3] * h / 300]
                          for s in keep]).reshape(-1, 4)
        return boxes, np.full(len(boxes), 0.9)


def test_a_narrow_figure_is_found_in_a_tile_at_its_place_in_the_frame():
    frame = np.full((300, 1000, 3), 230, np.uint8)
    frame[100:260, 620:650] = 20                     # 30 px wide: 9 px once the frame is squeezed to 300
    frame[50:250, 100:300] = 20                      # a wide one, seen either way
    det = SqueezingBlobDetector()
    assert len(det(frame)[0]) == 1                   # the whole frame alone misses the narrow figure
    boxes, scores = SecondLook(det)(frame)
    assert len(boxes) == 2 and (scores == 0.9).all()  # the wide one once (NMS merges its copies), the narrow found
    narrow = boxes[np.argmin(boxes[:, 2])]
    assert narrow == pytest.approx([620, 100, 30, 160], abs=2)
    assert SecondLook(det).score_threshold == 0.3


def test_a_tile_that_cuts_a_person_does_not_remove_the_whole_persons_box():
    """A person across the two tiles' inner edges of a 1000 x 300 frame: the whole frame sees them whole; the left
    tile (0-300) sees the part left of x = 300 with a higher score. The merge keeps the whole person's box."""
    class Scripted:
        score_threshold, nms_threshold = 0.3, 0.45

        def __call__(self, bgr):
            h, w = bgr.shape[:2]
            if w == 1000:                                   # the whole frame: the whole person, score 0.6
                return np.array([[250.0, 60, 100, 200]]), np.array([0.6])
            if w == 300:                                    # every tile: a part at its right edge, score 0.95
                return np.array([[240.0, 60, 60, 200]]), np.array([0.95])
            return np.zeros((0, 4)), np.zeros(0)

    boxes, scores = SecondLook(Scripted())(np.full((300, 1000, 3), 200, np.uint8))
    assert [250, 60, 100, 200] in boxes.tolist() and 0.6 in scores.tolist()
    # by hand: edges inside the frame cut, the frame's own edges do not
    tile_boxes = np.array([[0.0, 10, 50, 100], [250, 10, 50, 100], [100, 0, 50, 100], [100, 10, 50, 100]])
    assert cut_by_tile(tile_boxes, (0, 0, 300), 1000, 300).tolist() == [False, True, False, False]
    assert cut_by_tile(tile_boxes, (350, 0, 300), 1000, 300).tolist() == [True, True, False, False]
    assert cut_by_tile(tile_boxes, (700, 0, 300), 1000, 300).tolist() == [True, False, False, False]
