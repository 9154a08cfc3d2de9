"""Picture.to_supervision(): posecal's people as supervision's KeyPoints and Detections, drawn by supervision's own
annotators. The numbers come back unchanged (keypoints, qualities, boxes, track ids, the trust fields in `data`),
an absent keypoint is not drawn but keeps its position, and an empty or unreadable picture gives supervision's
empty results."""
import sys
import time
import types

import cv2
import numpy as np
import pytest

from posecal.errors import MissingPackage, PosecalInputError
from posecal.inference.picture import Picture
from posecal.integrations.supervision import SKELETON_EDGES, SupervisionPoses, picture_to_supervision
from posecal.skeleton import COCO_LIMBS

from conftest import KNOWN_ABSENT, known_person

sv = pytest.importorskip("supervision")

K = 17
ABSENT = KNOWN_ABSENT
ORANGE = sv.Color(r=255, g=128, b=0)
person = known_person   # keypoints on a diagonal 10 px apart from (offset+20, offset+20)


def picture(people, tracked=False, error=None, size=(240, 260)) -> Picture:
    return Picture("image", "", people, np.zeros((*size, 3), np.uint8), tracked=tracked, error=error)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and len(text) < 300, text
    return text


# --- the numbers, round trip ------------------------------------------------------------------------------------

def test_round_trip_gives_back_the_pictures_numbers():
    pic = picture([person(0, person_probability=0.9), person(30)])
    result = pic.to_supervision()
    key_points, detections = result                                   # a tuple...
    assert isinstance(result, SupervisionPoses) and result.key_points is key_points   # ...with names
    assert isinstance(key_points, sv.KeyPoints) and isinstance(detections, sv.Detections)
    assert len(key_points) == len(detections) == 2

    assert key_points.xy.dtype == np.float32 and key_points.xy.shape == (2, K, 2)
    np.testing.assert_allclose(key_points.xy, pic.keypoints, atol=1e-4)    # absent ones too: true positions
    np.testing.assert_allclose(key_points.keypoint_confidence, pic.keypoint_quality, atol=1e-6)
    np.testing.assert_allclose(key_points.detection_confidence, pic.pose_quality, atol=1e-6)
    assert key_points.class_id.tolist() == [0, 0]
    expected_visible = pic.visibility != 0
    assert not expected_visible[0, ABSENT] and expected_visible[0, ABSENT + 1]   # occluded is still drawn
    np.testing.assert_array_equal(key_points.visible, expected_visible)

    x, y, w, h = pic.boxes.T
    np.testing.assert_allclose(detections.xyxy, np.stack([x, y, x + w, y + h], 1), atol=1e-4)
    np.testing.assert_allclose(sv.xyxy_to_xywh(detections.xyxy), pic.boxes, atol=1e-4)
    np.testing.assert_allclose(detections.confidence, pic.pose_quality, atol=1e-6)
    assert detections.class_id.tolist() == [0, 0] and detections.tracker_id is None


def test_data_holds_every_trust_field_exactly():
    pic = picture([person(0, person_probability=0.9), person(30)])
    key_points, detections = picture_to_supervision(pic)
    for name in ("visibility", "visibility_probs", "keypoint_radius", "in_frame", "pose_quality"):
        np.testing.assert_array_equal(key_points.data[name], getattr(pic, name), err_msg=name)
    np.testing.assert_array_equal(key_points.data["person_probability"], [0.9, np.nan])   # NaN: not judged
    np.testing.assert_array_equal(detections.data["person_probability"], [0.9, np.nan])
    np.testing.assert_array_equal(detections.data["pose_quality"], pic.pose_quality)
    assert key_points.data["class_name"].tolist() == detections.data["class_name"].tolist() == ["person"] * 2
    assert "track_ids" not in key_points.data                        # not tracked
    assert key_points[1:].data["keypoint_radius"].shape == (1, K)    # supervision slices data with the rows
    first = detections[detections.confidence > 0.79]                 # and filters both alike
    assert len(first) == 1 and first.data["pose_quality"][0] == pic.pose_quality[0]


def test_a_model_without_visibility_head_leaves_every_keypoint_visible():
    key_points, _ = picture([person(0, visibility=False)]).to_supervision()
    assert key_points.visible is None
    assert "visibility" not in key_points.data and "visibility_probs" not in key_points.data


def test_a_tracked_picture_gives_tracker_ids():
    pic = picture([person(0, track_id=7), person(30, track_id=None), person(60, track_id=2)], tracked=True)
    key_points, detections = pic.to_supervision()
    assert detections.tracker_id.tolist() == [7, -1, 2] == pic.track_ids.tolist()   # -1: a person without one
    assert key_points.data["track_ids"].tolist() == [7, -1, 2]
    assert detections.data["track_ids"].tolist() == [7, -1, 2]
    trace = sv.TraceAnnotator().annotate(np.zeros((300, 300, 3), np.uint8), detections)   # supervision follows them
    assert trace.shape == (300, 300, 3)


# --- drawing with supervision's annotators -----------------------------------------------------------------------

def test_an_absent_keypoint_is_not_drawn_but_a_present_one_is():
    pic = picture([person(0)])
    key_points, _ = pic.to_supervision()
    blank = np.zeros((260, 240, 3), np.uint8)
    drawn = sv.VertexAnnotator(color=ORANGE, radius=3).annotate(blank.copy(), key_points)
    ax, ay = np.round(pic.keypoints[0, ABSENT]).astype(int)
    px, py = np.round(pic.keypoints[0, ABSENT + 1]).astype(int)     # occluded: drawn
    assert drawn[ay, ax].tolist() == [0, 0, 0]                      # absent: the pixel stays blank
    assert drawn[ay - 3:ay + 4, ax - 3:ax + 4].max() == 0
    assert drawn[py, px].tolist() == list(ORANGE.as_bgr())
    assert drawn[int(pic.keypoints[0, 0, 1]), int(pic.keypoints[0, 0, 0])].tolist() == list(ORANGE.as_bgr())
    hidden = key_points.xy[0, ABSENT]
    np.testing.assert_allclose(hidden, pic.keypoints[0, ABSENT], atol=1e-4)   # not drawn, not lost


def test_edges_to_an_absent_keypoint_are_not_drawn():
    key_points, _ = picture([person(0)]).to_supervision()
    xy = key_points.xy[0]
    to_absent = [(ABSENT + 1, ABSENT + 2)]         # 1-based: the absent keypoint and its neighbour
    drawn = sv.EdgeAnnotator(color=ORANGE, thickness=2, edges=to_absent).annotate(
        np.zeros((260, 240, 3), np.uint8), key_points)
    assert drawn.max() == 0
    between_present = [(ABSENT + 2, ABSENT + 3)]
    drawn = sv.EdgeAnnotator(color=ORANGE, thickness=2, edges=between_present).annotate(
        np.zeros((260, 240, 3), np.uint8), key_points)
    mid = np.round((xy[ABSENT + 1] + xy[ABSENT + 2]) / 2).astype(int)
    assert drawn[mid[1], mid[0]].tolist() == list(ORANGE.as_bgr())


def test_skeleton_edges_are_posecals_limbs_one_based():
    assert [(a - 1, b - 1) for a, b in SKELETON_EDGES] == list(COCO_LIMBS)
    key_points, _ = picture([person(0, visibility=False)]).to_supervision()
    drawn = sv.EdgeAnnotator(edges=list(SKELETON_EDGES)).annotate(np.zeros((260, 240, 3), np.uint8), key_points)
    assert drawn.any()


@pytest.mark.parametrize("pic", [picture([]), picture([], error="cannot read: not an image")],
                         ids=["nobody", "error"])
def test_an_empty_or_unreadable_picture_gives_empty_results_that_annotators_accept(pic):
    key_points, detections = pic.to_supervision()
    assert key_points.is_empty() and detections.is_empty()
    scene = np.full((50, 60, 3), 7, np.uint8)
    for annotator, result in ((sv.VertexAnnotator(), key_points), (sv.EdgeAnnotator(), key_points),
                              (sv.BoxAnnotator(), detections), (sv.LabelAnnotator(), detections)):
        assert np.array_equal(annotator.annotate(scene.copy(), result), scene), type(annotator).__name__
    assert sv.KeyPoints.merge([key_points, picture([person(0)]).to_supervision().key_points]).xy.shape == (1, K, 2)


# --- mistakes and missing packages: one line ---------------------------------------------------------------------

def test_a_list_or_another_object_is_one_clear_line():
    with pytest.raises(PosecalInputError) as e:
        picture_to_supervision([picture([person(0)])])
    assert "one Picture" in one_line(e) and "[p.to_supervision() for p in pictures]" in one_line(e)
    with pytest.raises(PosecalInputError) as e:
        picture_to_supervision(person(0))
    assert "not a PersonPose" in one_line(e)


def test_without_supervision_one_line_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)            # import supervision raises ImportError
    with pytest.raises(MissingPackage) as e:
        picture([person(0)]).to_supervision()
    assert "pip install 'posecal[supervision]'" in one_line(e)


def test_a_supervision_without_visible_keypoints_is_one_line(monkeypatch):
    class OldKeyPoints:                                                # supervision < 0.29's constructor
        def __init__(self, xy, class_id=None, confidence=None, data=None):
            pass

    monkeypatch.setitem(sys.modules, "supervision", types.SimpleNamespace(KeyPoints=OldKeyPoints,
                                                                          __version__="0.25.1"))
    with pytest.raises(MissingPackage) as e:
        picture([person(0)]).to_supervision()
    assert "0.25.1" in one_line(e) and "pip install -U 'posecal[supervision]'" in one_line(e)


# --- a real photo ---------------------------------------------------------------------------------------------------

@pytest.mark.slow   # the shipped model: ~3 s with its imports on two cores
def test_the_astronaut_drawn_by_supervision():
    data = pytest.importorskip("skimage.data")
    from posecal import Predictor
    from posecal.models.checkpoint import SHIPPED_MODELS

    if not SHIPPED_MODELS["accurate"].is_file():
        pytest.skip("shipped model not available")
    start = time.perf_counter()
    bgr = np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    pic = Predictor()(bgr)
    key_points, detections = pic.to_supervision()
    print(f"astronaut: {len(pic)} person(s), {time.perf_counter() - start:.1f} s")
    assert len(pic) >= 1 and len(key_points) == len(detections) == len(pic)
    np.testing.assert_allclose(key_points.xy, pic.keypoints, atol=1e-3)
    np.testing.assert_allclose(key_points.keypoint_confidence, pic.keypoint_quality, atol=1e-6)
    np.testing.assert_allclose(sv.xyxy_to_xywh(detections.xyxy), pic.boxes, atol=1e-3)
    np.testing.assert_allclose(detections.confidence, pic.pose_quality, atol=1e-6)
    np.testing.assert_array_equal(key_points.visible, pic.visibility != 0)

    drawn = sv.EdgeAnnotator(thickness=3).annotate(bgr.copy(), key_points)
    drawn = sv.BoxAnnotator().annotate(drawn, detections)
    assert drawn.shape == bgr.shape and (drawn != bgr).any(axis=2).sum() > 500
    x0, y0, x1, y1 = np.round(detections.xyxy[0]).astype(int)
    assert (drawn[max(y0, 0):y1 + 1, max(x0, 0)] != bgr[max(y0, 0):y1 + 1, max(x0, 0)]).any()   # the box's left side

    absent = np.flatnonzero(pic.visibility[0] == 0)                 # the astronaut's legs are out of the picture
    if len(absent) >= 2:
        edges = [(int(a) + 1, int(b) + 1) for a, b in COCO_LIMBS if a in absent or b in absent]
        alone = sv.EdgeAnnotator(edges=edges).annotate(np.zeros_like(bgr), key_points[:1])
        assert alone.max() == 0                                        # no limb to an absent keypoint
