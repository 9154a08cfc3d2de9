"""Issue 9's augmentation: full-circle rotation, truncation, occluders; LSPET's unknown visibility."""
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal import pixels
from posecal.data import topdown
from posecal.data.coco import load_coco_persons, load_lspet
from posecal.data.topdown import TopDownDataset
from posecal.data.transforms import (AugmentConfig, apply_affine, cut_line, inside_frame, paste_occluders,
                                     sample_augmentation, truncate)
from posecal.training.losses import visibility_ce
from posecal.skeleton import COCO_KEYPOINTS, LSP_KEYPOINTS

from conftest import STANDING

NO_AUG = dict(flip_prob=0.0, scale_range=0.0, rotation_prob=0.0, half_body_prob=0.0, color_jitter=0.0)
LEFT_SH, RIGHT_SH = COCO_KEYPOINTS.index("left_shoulder"), COCO_KEYPOINTS.index("right_shoulder")


def _marked_person(tmp_path):
    """A 120x160 image with a red left shoulder and a blue right shoulder, and its COCO file."""
    img = np.zeros((160, 120, 3), np.uint8)
    kp = STANDING.copy()
    cv2.circle(img, tuple(int(v) for v in kp[LEFT_SH]), 3, (0, 0, 255), -1)    # BGR red
    cv2.circle(img, tuple(int(v) for v in kp[RIGHT_SH]), 3, (255, 0, 0), -1)   # BGR blue
    cv2.imwrite(str(tmp_path / "p.png"), img)
    flat = np.concatenate([kp, np.full((17, 1), 2.0)], 1).reshape(-1).tolist()
    ann = {"images": [{"id": 1, "file_name": "p.png", "width": 120, "height": 160}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "keypoints": flat,
                            "num_keypoints": 17, "bbox": [35, 20, 50, 135], "area": 3000.0}]}
    (tmp_path / "a.json").write_text(json.dumps(ann))
    return load_coco_persons(tmp_path / "a.json", tmp_path)


def _colour_at(item, xy):
    """Mean RGB (0..255) of the un-normalised input crop in a 3x3 window at xy."""
    mean = torch.tensor(pixels.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(pixels.IMAGENET_STD)[:, None, None]
    rgb = ((item["image"] * std + mean) * 255).numpy()
    x, y = int(round(xy[0])), int(round(xy[1]))
    return rgb[:, y - 1:y + 2, x - 1:x + 2].mean((1, 2))


@pytest.mark.parametrize("flip", [False, True])
def test_rotation_by_180_moves_keypoints_with_the_pixels_and_keeps_sides(tmp_path, monkeypatch, flip):
    recs = _marked_person(tmp_path)
    monkeypatch.setattr(topdown, "sample_augmentation", lambda cfg, rng: (1.0, 180.0, flip))
    item = TopDownDataset(recs, (96, 128), AugmentConfig(**NO_AUG))[0]
    kp = item["keypoints"].numpy()
    # Upside down: the head is now below the ankles.
    assert kp[0, 1] > kp[15, 1] + 40
    # A rotation keeps the person's sides: the red pixel is still the left shoulder. A mirror swaps them.
    red, blue = (RIGHT_SH, LEFT_SH) if flip else (LEFT_SH, RIGHT_SH)
    assert _colour_at(item, kp[red, :2])[0] > 150 and _colour_at(item, kp[red, :2])[2] < 80
    assert _colour_at(item, kp[blue, :2])[2] > 150 and _colour_at(item, kp[blue, :2])[0] < 80
    # In the photo the left shoulder is left of the right one; turned by 180 degrees it is right of it.
    assert recs[0].keypoints[LEFT_SH, 0] < recs[0].keypoints[RIGHT_SH, 0]
    if not flip:
        assert kp[LEFT_SH, 0] > kp[RIGHT_SH, 0]
        np.testing.assert_allclose(kp[:, :2], apply_affine(recs[0].keypoints[:, :2], item["matrix"].numpy()),
                                   atol=1e-4)


def test_full_circle_rotation_probability():
    cfg = AugmentConfig(rotation_full_prob=0.5, rotation_prob=0.0)
    rng = np.random.default_rng(0)
    rots = np.array([sample_augmentation(cfg, rng)[1] for _ in range(4000)])
    assert np.mean(rots != 0) == pytest.approx(0.5, abs=0.03)
    big = np.abs(rots[rots != 0])
    assert big.max() > 170 and np.mean(big > 90) == pytest.approx(0.5, abs=0.05)   # uniform over the circle


def test_truncate_bottom_cuts_image_box_and_keypoints():
    img = np.full((100, 80, 3), 200, np.uint8)
    kp = np.array([[40, 10, 2], [40, 50, 2], [40, 70, 1], [0, 0, 0]], float)
    line = cut_line([20, 0, 40, 100], "bottom", 0.4)
    assert line == pytest.approx(60)
    out, box, k = truncate(img, [20, 0, 40, 100], kp, "bottom", line)
    assert out[:60].min() == 200 and out[60:].max() == 0 and img.min() == 200   # input untouched
    np.testing.assert_allclose(box, [20, 0, 40, 60])
    assert k[:, 2].tolist() == [2, 2, 0, 0]


def test_truncate_left_side():
    img = np.full((50, 100, 3), 9, np.uint8)
    kp = np.array([[10, 20, 2], [70, 20, 2]], float)
    out, box, k = truncate(img, [0, 0, 100, 50], kp, "left", cut_line([0, 0, 100, 50], "left", 0.3))
    assert out[:, :30].max() == 0 and out[:, 30:].min() == 9
    np.testing.assert_allclose(box, [30, 0, 70, 50])
    assert k[:, 2].tolist() == [0, 2]


def test_occluders_mark_covered_keypoints_occluded():
    crop = np.full((64, 48, 3), 128, np.uint8)
    kp = np.zeros((17, 3))
    kp[:, :2] = [24, 32]
    kp[:, 2] = 2
    kp[3] = (2, 2, 2)
    kp[4] = (0, 0, 0)
    cfg = AugmentConfig(occluder_max=1, occluder_size=(0.3, 0.3))
    hits = 0
    for seed in range(20):
        out, covered = paste_occluders(crop, kp, cfg, np.random.default_rng(seed))
        assert not covered[4]                                  # never labelled: stays absent
        changed = np.any(out != crop, axis=2)
        for i in np.flatnonzero(kp[:, 2] > 0):
            x, y = kp[i, :2].astype(int)
            if covered[i]:
                hits += 1
                assert changed[y, x] or np.array_equal(out[y, x], crop[y, x])  # covered pixel was pasted over
        assert crop.min() == crop.max() == 128                 # the input crop is not modified
    assert hits > 0


def test_dataset_occluder_targets(tiny_coco, monkeypatch):
    ann, img_dir = tiny_coco
    recs = load_coco_persons(ann, img_dir)

    def cover_all(crop, kp, cfg, rng):
        return crop, kp[:, 2] > 0
    monkeypatch.setattr(topdown, "paste_occluders", cover_all)
    item = TopDownDataset(recs, (48, 64), AugmentConfig(**NO_AUG, occluder_prob=1.0))[1]
    v = item["keypoints"][:, 2].numpy()
    labelled = recs[1].keypoints[:, 2] > 0
    assert np.all(v[labelled] == 1) and np.all(v[~labelled] == 0)
    # the position is still known: occluded keypoints keep their heatmap target
    assert np.all(item["target_weight"].numpy()[labelled] == 1)
    assert np.all(item["visibility_weight"].numpy() == 1)


def test_keypoints_outside_the_crop_become_absent(tiny_coco):
    ann, img_dir = tiny_coco
    rec = load_coco_persons(ann, img_dir)[0]
    rec.keypoints[16, :2] = (60, 400)            # far below the image: outside any crop of the box
    item = TopDownDataset([rec], (48, 64))[0]
    assert item["keypoints"][16, 2] == 0 and item["target_weight"][16] == 0
    assert item["visibility_weight"][16] == 1     # known to be absent from what the network sees
    assert inside_frame(item["keypoints"][:16, :2].numpy(), (48, 64)).all()


def _lspet_file(tmp_path):
    img = np.zeros((160, 120, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "im00001.jpg"), img)
    coco = {n: STANDING[i] for i, n in enumerate(COCO_KEYPOINTS)}
    joints = []
    for name in LSP_KEYPOINTS:
        if name in coco:
            joints += [*coco[name], 2]
        else:                                           # neck, head_top
            joints += [60.0, 25.0 if name == "neck" else 10.0, 2]
    joints[3 * LSP_KEYPOINTS.index("left_knee") + 2] = 0   # "position unknown"
    joints[3 * LSP_KEYPOINTS.index("left_knee")] = 0
    joints[3 * LSP_KEYPOINTS.index("left_knee") + 1] = -5
    ann = {"images": [{"id": 1, "file_name": "im00001.jpg", "width": 120, "height": 160}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "keypoints": joints,
                            "num_keypoints": 13, "bbox": [30, 5, 60, 150], "area": 4500.0}]}
    (tmp_path / "lspet.json").write_text(json.dumps(ann))
    return load_lspet(tmp_path / "lspet.json", tmp_path)


def test_lspet_records_train_with_zero_face_weight(tmp_path):
    recs = _lspet_file(tmp_path)
    assert recs[0].visibility_known is False
    item = TopDownDataset(recs, (48, 64))[0]
    w = item["target_weight"].numpy()
    face = [COCO_KEYPOINTS.index(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
    assert np.all(w[face] == 0)
    assert w[COCO_KEYPOINTS.index("left_knee")] == 0          # v = 0: position unknown, no heatmap target
    assert w.sum() == 11                                      # the other 11 limb joints train
    assert np.all(item["heatmaps"].numpy()[face] == 0)
    # visibility: LSPET does not say visible/occluded/absent, so the visibility loss ignores its keypoints
    assert np.all(item["visibility_weight"].numpy() == 0)


def test_masked_visibility_ce_matches_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    target = torch.tensor([[0, 2]])
    w = torch.tensor([1.0, 3.0, 2.0])
    ce0 = -torch.log_softmax(logits[0, 0], 0)[0]
    ce1 = -torch.log_softmax(logits[0, 1], 0)[2]
    full = visibility_ce(logits, target, w)
    assert float(full) == pytest.approx(float((1 * ce0 + 2 * ce1) / 3), rel=1e-6)
    torch_ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), target.reshape(-1), weight=w)
    assert float(full) == pytest.approx(float(torch_ref), rel=1e-6)
    masked = visibility_ce(logits, target, w, mask=torch.tensor([[0.0, 1.0]]))
    assert float(masked) == pytest.approx(float(ce1), rel=1e-6)


def test_rotated_box_is_the_box_of_the_turned_corners():
    from posecal.data.transforms import rotated_box
    np.testing.assert_allclose(rotated_box([0, 0, 10, 20], 90), [-5, 5, 20, 10], atol=1e-9)
    np.testing.assert_allclose(rotated_box([0, 0, 10, 20], 180), [0, 0, 10, 20], atol=1e-9)
    s = 30 / np.sqrt(2)                       # at 45 degrees both sides are (10 + 20) / sqrt(2)
    np.testing.assert_allclose(rotated_box([0, 0, 10, 20], -45), [5 - s / 2, 10 - s / 2, s, s], atol=1e-9)


@pytest.mark.parametrize("rebox, whole", [(False, False), (True, True)])
def test_rebox_frames_a_person_turned_by_90_degrees_whole(tmp_path, monkeypatch, rebox, whole):
    """Turned with the picture, the upright 3:4 frame cuts a lying person's head and feet off; re-boxed, the crop
    covers the turned box, as a detector frames a lying person, and every keypoint stays in it."""
    recs = _marked_person(tmp_path)
    monkeypatch.setattr(topdown, "sample_augmentation", lambda cfg, rng: (1.0, 90.0, False))
    item = TopDownDataset(recs, (96, 128), AugmentConfig(**NO_AUG, rotation_rebox=rebox))[0]
    kp = item["keypoints"].numpy()
    assert bool((kp[:, 2] > 0).all()) == whole
    if whole:   # lying: the head and the ankles are side by side, not above one another
        assert abs(kp[0, 0] - kp[15, 0]) > 3 * abs(kp[0, 1] - kp[15, 1])
