"""Issue 62's training pieces for hard people: a person pasted in front keeps every label right (positions; the
target's keypoints it covers become occluded), the neighbours of a crop set read from its annotations, the
negatives each item carries (own left/right partner, people beside) and the loss term that holds a heatmap low
there, checked against hand-computed values; and a pose network initialised from a model with a trust model."""
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from posecal.data.coco import PersonRecord
from posecal.data.neighbours import neighbours_by_image
from posecal.data.transforms import AugmentConfig, paste_person, person_mask
from posecal.skeleton import flip_permutation

K = 17


def standing(cx: float, top: float, height: float) -> np.ndarray:
    """(17, 3) keypoints of an upright person `height` px tall, all visible."""
    u = height / 8
    xy = {0: (0, 0.5), 1: (-0.2, 0.3), 2: (0.2, 0.3), 3: (-0.4, 0.4), 4: (0.4, 0.4), 5: (-1, 1.5), 6: (1, 1.5),
          7: (-1.3, 2.8), 8: (1.3, 2.8), 9: (-1.4, 4), 10: (1.4, 4), 11: (-0.7, 4.2), 12: (0.7, 4.2),
          13: (-0.8, 6), 14: (0.8, 6), 15: (-0.8, 7.8), 16: (0.8, 7.8)}
    kp = np.zeros((K, 3))
    for j, (x, y) in xy.items():
        kp[j] = (cx + x * u, top + y * u, 2)
    return kp


def test_person_mask_covers_the_skeleton_and_not_far_from_it():
    kp = standing(60, 10, 100)
    kp[15:, 2] = 0                                       # ankles not labelled: not drawn
    mask = person_mask(kp, (120, 120), height=100)
    assert mask.shape == (120, 120) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    for j in range(15):
        assert mask[int(round(kp[j, 1])), int(round(kp[j, 0]))] > 0.9, j
    assert mask[5:110, 0:20].max() < 0.05                # far left of the person: untouched
    assert mask[110:, :].max() < 0.05                    # below the knees' reach (ankles unlabelled)
    # the torso between shoulders and hips is filled
    assert mask[int(kp[5, 1] + 20), 60] > 0.9


def test_pasted_person_covers_the_keypoints_under_it_and_keeps_their_positions():
    crop = np.full((100, 100, 3), 40, np.uint8)
    target = np.zeros((K, 3))
    target[0] = (20, 20, 2)       # far from the pasted person
    target[9] = (70, 50, 2)       # under its torso
    target[10] = (71, 52, 1)      # under it, already occluded
    target[11] = (70, 50, 0)      # under it but not labelled: stays 0
    person = np.full((100, 100, 3), 200, np.uint8)
    mask = np.zeros((100, 100), np.float32)
    mask[30:80, 55:95] = 1.0
    out, covered = paste_person(crop, target, person, mask)
    assert covered.tolist() == [j in (9, 10) for j in range(K)]
    assert out[50, 70].tolist() == [200, 200, 200] and out[20, 20].tolist() == [40, 40, 40]
    mask[:] = 0.25                                       # a soft edge blends and covers nothing
    out, covered = paste_person(crop, target, person, mask)
    assert not covered.any() and out[0, 0].tolist() == [80, 80, 80]     # 40 * 0.75 + 200 * 0.25


def write_crop_set(tmp_path, n_people: int = 2):
    """A crop set as shared/data/coco-val2017-crops writes it: a photograph with people side by side, one crop
    image per person (its crop_transform a scale and a shift), each labelling one person."""
    images, anns = [], []
    photo_kps = [standing(60 + 70 * i, 20, 120) for i in range(n_people)]
    for i in range(n_people):
        s, tx, ty = 1.0, -(60 + 70 * i - 80), 0.0          # each crop 160 x 160 centred on its person
        kp = photo_kps[i].copy()
        kp[:, 0] = s * kp[:, 0] + tx
        kp[:, 1] = s * kp[:, 1] + ty
        images.append({"id": 100 + i, "file_name": f"crop_{i}.jpg", "width": 160, "height": 160})
        anns.append({"id": 10 + i, "image_id": 100 + i, "orig_image_id": 7, "category_id": 1, "iscrowd": 0,
                     "keypoints": kp.reshape(-1).tolist(), "num_keypoints": K, "area": 5000.0,
                     "bbox": [float(kp[:, 0].min()) - 10, 10, float(np.ptp(kp[:, 0])) + 20, 140],
                     "crop_transform": [[s, 0.0, tx], [0.0, s, ty]]})
        cv2.imwrite(str(tmp_path / f"crop_{i}.jpg"), np.full((160, 160, 3), 90 + 40 * i, np.uint8))
    path = tmp_path / "crops.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path, photo_kps


def test_neighbours_by_image_maps_each_crops_other_people(tmp_path):
    path, photo = write_crop_set(tmp_path, 2)
    found = neighbours_by_image(path, str(tmp_path))
    assert sorted(found) == sorted(str(tmp_path / f"crop_{i}.jpg") for i in range(2))
    nb = found[str(tmp_path / "crop_0.jpg")]
    assert nb.shape == (1, K, 3)
    # person 1 stands 70 px right of person 0 in the photograph; crop 0 shifts the photograph by +20 in x
    np.testing.assert_allclose(nb[0, :, 0], photo[1][:, 0] + 20)
    np.testing.assert_allclose(nb[0, :, 1], photo[1][:, 1])
    # a file without crop fields (not a crop set) has no neighbours
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        del a["crop_transform"]
    path.write_text(json.dumps(data))
    assert neighbours_by_image(path, str(tmp_path)) == {}


def test_items_carry_negatives_of_partner_and_neighbours(tmp_path):
    from posecal.data.topdown import NEGATIVE_SLOTS, TopDownDataset

    path, _ = write_crop_set(tmp_path, 2)
    data = json.loads(path.read_text())
    ann = data["annotations"][0]
    kp = np.asarray(ann["keypoints"]).reshape(K, 3)
    rec = PersonRecord(str(tmp_path / "crop_0.jpg"), 100, np.asarray(ann["bbox"]), kp, 5000.0, ann_id=10)
    nbs = neighbours_by_image(path, str(tmp_path))
    ds = TopDownDataset([rec], (160, 160), augment=None, neighbours=nbs)
    item = ds[0]
    neg = item["negatives"].numpy()
    assert neg.shape == (K, NEGATIVE_SLOTS, 3)
    m = item["matrix"].numpy()
    own = kp[:, :2] @ m[:, :2].T + m[:, 2]
    partner = flip_permutation(K)
    # slot 0: the target's own left/right partner (the nose has none)
    assert neg[0, 0, 2] == 0
    for j in range(1, K):
        np.testing.assert_allclose(neg[j, 0, :2], own[partner[j]], atol=1e-4)
        assert neg[j, 0, 2] == 1
    # slot 1: the same joint of the neighbour, where it falls inside the crop
    other = nbs[rec.image_path][0][:, :2] @ m[:, :2].T + m[:, 2]
    inside = (other[:, 0] >= -0.5) & (other[:, 0] < 159.5) & (other[:, 1] >= -0.5) & (other[:, 1] < 159.5)
    assert inside.any() and not inside.all()
    np.testing.assert_allclose(neg[inside, 1, :2], other[inside], atol=1e-4)
    assert (neg[inside, 1, 2] == 1).all() and (neg[~inside, 1, 2] == 0).all()
    assert (neg[:, 2:, 2] == 0).all()
    # the mirrored crop swaps the neighbour's joint types with the target's
    aug = AugmentConfig(flip_prob=1.0, scale_range=0.0, rotation_prob=0.0, half_body_prob=0.0, color_jitter=0.0)
    flipped = TopDownDataset([rec], (160, 160), augment=aug, neighbours=nbs)[0]
    mf = flipped["matrix"].numpy()
    other_f = (nbs[rec.image_path][0][:, :2] @ mf[:, :2].T + mf[:, 2])[partner]
    ok = flipped["negatives"][:, 1, 2].numpy() > 0
    np.testing.assert_allclose(flipped["negatives"][ok, 1, :2].numpy(), other_f[ok], atol=1e-4)


def test_a_pasted_person_sets_the_covered_labels_occluded(tmp_path):
    from posecal.data.topdown import TopDownDataset

    path, _ = write_crop_set(tmp_path, 2)
    data = json.loads(path.read_text())
    recs = []
    for ann, im in zip(data["annotations"], data["images"]):
        kp = np.asarray(ann["keypoints"]).reshape(K, 3)
        recs.append(PersonRecord(str(tmp_path / im["file_name"]), im["id"], np.asarray(ann["bbox"]), kp, 5000.0,
                                 ann_id=ann["id"]))
    aug = AugmentConfig(flip_prob=0.0, scale_range=0.0, rotation_prob=0.0, half_body_prob=0.0, color_jitter=0.0,
                        paste_person_prob=1.0, paste_person_scale=(1.0, 1.0), paste_person_shift=(0.2, 0.2))
    plain = TopDownDataset(recs, (160, 160), augment=AugmentConfig(
        flip_prob=0.0, scale_range=0.0, rotation_prob=0.0, half_body_prob=0.0, color_jitter=0.0))
    pasted_any = False
    for seed in range(12):
        ds = TopDownDataset(recs, (160, 160), augment=aug, seed=seed)
        item, before = ds[0], plain[0]
        # positions never move; a label only ever goes from visible to occluded
        np.testing.assert_allclose(item["keypoints"][:, :2], before["keypoints"][:, :2])
        v0, v1 = before["keypoints"][:, 2].numpy(), item["keypoints"][:, 2].numpy()
        assert ((v1 == v0) | ((v0 == 2) & (v1 == 1))).all()
        changed = v1 != v0
        if changed.any():
            pasted_any = True
            # the occluded ones are where the picture changed (the pasted person is brighter than crop 0)
            img, img0 = item["image"].numpy(), before["image"].numpy()
            for j in np.flatnonzero(changed):
                x, y = (int(round(c)) for c in item["keypoints"][j, :2].numpy())
                assert img[:, y, x].mean() > img0[:, y, x].mean() + 0.05
            assert item["visibility_weight"][changed].min() == 1.0
            # and the pasted person's joints are negatives (slot 1)
            assert item["negatives"][:, 1, 2].sum() > 0
    assert pasted_any


def test_negative_cells_loss_against_hand_computed_values():
    from posecal.training.losses import negative_cells_loss

    logits = torch.full((1, 2, 8, 8), -10.0)
    logits[0, 0, 4, 5] = 0.0                             # p = 0.5 where keypoint 0 must not be
    cells = torch.zeros(1, 2, 2, 2)
    cells[0, 0, 0] = torch.tensor([5.0, 4.0])            # x, y: a negative on that cell
    cells[0, 0, 1] = torch.tensor([1.0, 1.0])            # a negative next to the keypoint's own cell: left out
    valid = torch.tensor([[[True, True], [False, False]]])
    own = torch.tensor([[[1.0, 2.0], [3.0, 3.0]]])
    got = negative_cells_loss(logits, cells, valid, own, torch.tensor(2.0))
    p = torch.sigmoid(torch.tensor(-10.0))
    rest = 8 * (-(p ** 2) * F.logsigmoid(torch.tensor(10.0)))
    want = (0.25 * np.log(2) + rest) / 2                 # -p^2 log(1 - p) at p = 1/2, over 3x3 cells, / 2
    assert got.item() == pytest.approx(float(want), rel=1e-5)
    # at a frame corner only the cells inside count; invalid negatives count nothing
    cells[0, 0, 0] = torch.tensor([0.0, 0.0])
    logits[0, 0] = 0.0
    got = negative_cells_loss(logits, cells, torch.tensor([[[True, False], [False, False]]]), own + 5,
                              torch.tensor(1.0))
    assert got.item() == pytest.approx(4 * 0.25 * np.log(2), rel=1e-5)


def test_a_pose_network_initialises_from_a_model_with_a_trust_model(tmp_path):
    from posecal.models.checkpoint import load_state_from, model_from_config
    from posecal.models.config import ModelConfig

    cfg = ModelConfig(head_widths=(16, 16, 8))
    source = model_from_config(cfg, imagenet=False)
    state = dict(source.state_dict())
    state["trust.extra.weight"] = torch.ones(3)          # a trust model's weights the pose network lacks
    torch.save({"state_dict": state, "meta": {}}, tmp_path / "with_trust.pt")
    target = model_from_config(cfg, imagenet=False)
    load_state_from(target, tmp_path / "with_trust.pt")
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def _pack_crop_set(tmp_path, path):
    """tools/pack_training_data.py run on the crop set at `path` (64 px high, no val split); the pack's folder."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("pack_training_data", root / "tools" / "pack_training_data.py")
    pack_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_tool)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {{train_annotations: {path}, train_images: {tmp_path}, val_annotations: {path}, "
                   f"val_images: {tmp_path}}}\nmodel: {{input_wh: [48, 64], head_widths: [16, 16, 8]}}\n")
    out = tmp_path / "pack"
    assert pack_tool.main([str(cfg), "--out", str(out), "--input-h", "64", "--no-val", "--no-progress"]) == 0
    return out


def test_a_pack_carries_each_persons_neighbours_into_its_pixels(tmp_path):
    from posecal.data.coco import load_coco_persons
    from posecal.data.packed import load_packed_persons, packed_neighbours

    path, _ = write_crop_set(tmp_path, 3)
    out = _pack_crop_set(tmp_path, path)
    source = {r.ann_id: r for r in load_coco_persons(path, str(tmp_path))}
    crops = neighbours_by_image(path, str(tmp_path))
    found = packed_neighbours(out)
    index = json.loads((out / "shard_000" / "index.json").read_text())
    packed = load_packed_persons(out)
    assert sorted(found) == sorted(r.image_path for r in packed)
    for rec, ann in zip(packed, index["annotations"]):
        orig = source[ann["orig_ann_id"]]
        before, after = crops[orig.image_path], found[rec.image_path]
        assert after.shape == before.shape
        scale = np.array([rec.bbox[2] / orig.bbox[2], rec.bbox[3] / orig.bbox[3]])   # x, y (rounded sizes)
        assert (scale < 0.7).all()                           # shrunk: the map is not the identity
        # a neighbour's joint keeps its place relative to the person's own joints, scaled as the image was
        np.testing.assert_allclose(after[..., :2] - rec.keypoints[None, :, :2],
                                   scale * (before[..., :2] - orig.keypoints[None, :, :2]), atol=0.05)
        assert (after[..., 2] == before[..., 2]).all()


def _with_a_pseudo_person(path) -> np.ndarray:
    """Add to the crop set at `path` a pseudo-labelled person (lab/tools/pseudo_labels.py: `"pseudo": true`, no crop
    fields) in crop 0, 30 px right of crop 0's labelled person; returns its keypoints in crop 0's pixels."""
    data = json.loads(path.read_text())
    host = np.asarray(data["annotations"][0]["keypoints"], float).reshape(K, 3)
    kp = host.copy()
    kp[:, 0] += 30
    data["annotations"].append({"id": 99, "image_id": data["annotations"][0]["image_id"], "category_id": 1,
                                "iscrowd": 0, "pseudo": True, "keypoints": kp.reshape(-1).tolist(),
                                "num_keypoints": K, "area": 5000.0,
                                "bbox": [float(kp[:, 0].min()) - 10, 10, float(np.ptp(kp[:, 0])) + 20, 140]})
    path.write_text(json.dumps(data))
    return kp


def test_one_pack_serves_the_runs_with_and_without_pseudo_labelled_people(tmp_path):
    from posecal.data.coco import load_coco_persons, pseudo_label_ids
    from posecal.data.packed import PSEUDO_SOURCE, load_packed_persons, packed_neighbours

    path, _ = write_crop_set(tmp_path, 2)
    pseudo_kp = _with_a_pseudo_person(path)
    assert pseudo_label_ids(path) == {99}
    out = _pack_crop_set(tmp_path, path)
    index = json.loads((out / "shard_000" / "index.json").read_text())
    assert [a["source"] for a in index["annotations"]] == ["coco", "coco", PSEUDO_SOURCE]
    everyone, labelled = load_packed_persons(out), load_packed_persons(out, pseudo=False)
    assert len(everyone) == 3 and len(labelled) == 2
    assert {a["orig_ann_id"] for a in index["annotations"] if a["id"] in {r.ann_id for r in labelled}} == {10, 11}
    # the pseudo-labelled person's negatives: its crop's labelled person first, then that person's neighbour,
    # each where it stands relative to the pseudo person's own joints (scaled as its packed image was)
    source = {r.ann_id: r for r in load_coco_persons(path, str(tmp_path))}
    host, other = source[10].keypoints, neighbours_by_image(path, str(tmp_path))[source[10].image_path][0]
    packed = everyone[2]
    found = packed_neighbours(out)[packed.image_path]
    assert found.shape == (2, K, 3)
    scale = np.array([packed.bbox[2] / source[99].bbox[2], packed.bbox[3] / source[99].bbox[3]])
    for got, want in zip(found, (host, other)):
        np.testing.assert_allclose(got[:, :2] - packed.keypoints[:, :2], scale * (want[:, :2] - pseudo_kp[:, :2]),
                                   atol=0.05)
        assert (got[:, 2] == want[:, 2]).all()


def test_training_from_the_files_leaves_pseudo_labelled_people_out_when_told(tmp_path):
    import posecal.training.train as train_mod
    from posecal.training.config import load_train_config

    path, _ = write_crop_set(tmp_path, 2)
    _with_a_pseudo_person(path)
    for flag, want in (("true", {10, 11, 99}), ("false", {10, 11})):
        cfg = tmp_path / f"cfg_{flag}.yaml"
        cfg.write_text(f"data: {{train_annotations: {path}, train_images: {tmp_path}, val_annotations: {path}, "
                       f"val_images: {tmp_path}, pseudo_labels: {flag}}}\n")
        records, _, _ = train_mod._load_data(load_train_config(cfg))
        assert {r.ann_id for r in records} == want
