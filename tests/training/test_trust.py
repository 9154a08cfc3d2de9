"""posecal's trust model (posecal/models/trust): its inputs and outputs, its training targets and samples, the
accurate model reading it inside the graph (torch = ONNX), and visibility on real crops with a known answer."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.codec.movenet import merge_flip
from posecal.data.topdown import to_batch
from posecal.errors import PosecalInputError
from posecal.metrics.oks import opks
from posecal.models.trust import TRUST_INPUT, TrustNet
from posecal.training.trust import batch_targets, make_batch, perturb, trust_losses, TrustTrainConfig
from posecal.training.trust_samples import crops_to_uint8, load_shards, write_samples

from conftest import make_coco, real_person_crops


@pytest.fixture(scope="module")
def trust_net():
    torch.manual_seed(0)
    return TrustNet().eval()


@pytest.mark.slow
def test_outputs_and_scores_unknown_equal_no_scores(trust_net):
    x = torch.randn(3, 3, 256, 256)
    kp = torch.rand(3, 17, 2) * 256
    with torch.no_grad():
        none = trust_net(x, kp)
        nan = trust_net(x, kp, torch.full((3, 17), float("nan")))
        given = trust_net(x, kp, torch.full((3, 17), 0.9))
    assert none.oks.shape == (3,) and none.opks_logits.shape == (3, 17) and none.vis_logits.shape == (3, 17, 3)
    assert ((none.oks > 0) & (none.oks < 1)).all()
    torch.testing.assert_close(none.opks_logits, nan.opks_logits)
    assert not torch.allclose(none.opks_logits, given.opks_logits)


@pytest.mark.slow
def test_keypoints_are_read_in_the_given_crops_pixels(trust_net):
    """A crop at the trust model's own size and the same crop at 2x: the same keypoints (scaled with the crop,
    pixel edges aligned) read the same place, so the outputs agree."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (2, TRUST_INPUT, TRUST_INPUT, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 2, 1), 2, 2)        # nearest 2x: bilinear 2x -> 1x gives `small` back
    kp = torch.from_numpy(rng.uniform(10, 180, (2, 17, 2))).float()
    with torch.no_grad():
        a = trust_net(to_batch(list(small)), kp)
        b = trust_net(to_batch(list(big)), (kp + 0.5) * 2 - 0.5)
    torch.testing.assert_close(a.opks_logits, b.opks_logits, atol=1e-4, rtol=1e-4)


def test_targets_by_hand_and_perturbation_moves_points():
    gt = np.zeros((1, 17, 3))
    gt[0, :, :2] = 50.0
    gt[0, :5, 2] = 2
    xy = gt[..., :2].copy()
    xy[0, 0] += [3.0, 4.0]                                   # 5 px off
    t = batch_targets(xy, gt, np.array([400.0]))
    k2 = (2 * 0.026) ** 2
    assert float(t["opks"][0, 0]) == pytest.approx(np.exp(-25 / (2 * 400 * k2)), rel=1e-5)
    assert float(t["opks"][0, 1]) == pytest.approx(1.0)
    assert float(t["oks"][0]) == pytest.approx((float(t["opks"][0, 0]) + 4) / 5, rel=1e-5)
    assert t["labelled"][0].sum() == 5 and t["vis"][0, 0] == 2 and t["vis"][0, 9] == 0
    moved = perturb(xy, np.array([400.0]), np.random.default_rng(1), swap_prob=1.0)
    assert not np.allclose(moved, xy)
    np.testing.assert_allclose(opks(xy, gt[..., :2], [400.0])[0, 0], t["opks"][0, 0], rtol=1e-5)


def test_losses_fall_when_outputs_meet_their_targets():
    from posecal.models.trust import TrustOutput

    targets = {"opks": torch.tensor([[0.0, 1.0]]), "labelled": torch.tensor([[True, True]]),
               "oks": torch.tensor([1.0]), "has_labels": torch.tensor([True]), "vis": torch.tensor([[0, 2]])}
    good = TrustOutput(oks=torch.tensor([0.999]), opks_logits=torch.tensor([[-9.0, 9.0]]),
                       vis_logits=torch.tensor([[[9.0, 0, 0], [0, 0, 9.0]]]))
    bad = TrustOutput(oks=torch.tensor([0.01]), opks_logits=torch.tensor([[9.0, -9.0]]),
                      vis_logits=torch.tensor([[[0, 0, 9.0], [9.0, 0, 0]]]))
    w = {"opks": 1.0, "vis": 1.0, "oks": 1.0}
    lg, lb = trust_losses(good, targets, torch.ones(1, 2), w), trust_losses(bad, targets, torch.ones(1, 2), w)
    for key in ("opks", "vis", "oks"):
        assert float(lg[key]) < 0.01 < 1.0 < float(lb[key])
    assert float(trust_losses(bad, targets, torch.zeros(1, 2), w)["vis"]) == 0.0   # labels that do not say


def test_samples_round_trip_and_batches(tmp_path):
    """write_samples with a stand-in base model: the stored crop is the crop to the grey level, and its
    batch carries the stored keypoints and scores (scores unknown for dropped-out persons)."""
    from posecal.data.coco import load_coco_persons
    from posecal.inference.torch_runner import pose_output_arrays
    from posecal.models.estimator import PoseOutput

    class Base:   # runs like an OnnxEstimator or a TorchRunner
        def outputs(self, images, flip):
            n = images.shape[0]
            hm = torch.zeros(n, 17, images.shape[2] // 4, images.shape[3] // 4)
            hm[:, :, 5, 7] = 0.8
            return pose_output_arrays(PoseOutput(heatmaps=hm, feature=None))

    ann, img_dir = make_coco(tmp_path / "d", n_images=3)
    records = load_coco_persons(ann, img_dir)
    assert write_samples(Base(), records, (64, 64), tmp_path / "s", augment=None, progress=False,
                         num_workers=0) == 1
    data = load_shards(tmp_path / "s")
    assert data["crops"].shape == (3, 64, 64, 3) and data["crops"].dtype == np.uint8
    np.testing.assert_allclose(data["base_xy"][:, 0], [[29.5, 21.5]] * 3, atol=0.3)   # cell (7, 5), DARK
    back = to_batch([c[..., ::-1] for c in data["crops"]])
    np.testing.assert_array_equal(crops_to_uint8(back), data["crops"])
    cfg = TrustTrainConfig(score_dropout=1.0, perturb_prob=0.0)
    images, xy, scores, targets, vis_w = make_batch(data, np.arange(3), cfg, np.random.default_rng(0))
    assert images.shape == (3, 3, 64, 64) and torch.isnan(scores).all()
    torch.testing.assert_close(xy, torch.from_numpy(data["base_xy"]).float())
    assert targets["opks"].shape == (3, 17) and vis_w.shape == (3, 17)


def test_merge_flip_torch_equals_numpy():
    rng = np.random.default_rng(2)
    a = [rng.uniform(0, 192, (4, 17, 2)), rng.random((4, 17)), rng.uniform(0, 192, (4, 17, 2)), rng.random((4, 17))]
    a[2][:, :8] = 191 - a[0][:, [0, 2, 1, 4, 3, 6, 5, 8]] + 1.0     # some keypoints agree across the flip
    xy_np, s_np = merge_flip(*a, 192)
    xy_t, s_t = merge_flip(*(torch.from_numpy(v) for v in a), 192)
    np.testing.assert_allclose(xy_t.numpy(), xy_np)
    np.testing.assert_allclose(s_t.numpy(), s_np)


def _person_pose(image_bgr, box):
    from posecal.inference.predictor import Predictor

    pred = Predictor("accurate", detector=None, min_pose_quality=0, backend="torch")
    (person,) = pred(image_bgr, boxes=[box])
    return person


@pytest.mark.slow
def test_shipped_model_hides_the_ankles_below_a_cut_at_the_knees(real_person):
    """A real person whose photo ends just below the knees (black beyond, as a photo's border shows in a crop;
    the box clipped there): the ankles are not called visible (MoveNet puts them on the cut line; the trust
    model calls them hidden: not labelled or occluded), while the same ankles in the whole photo are visible,
    and the shoulders stay visible."""
    from posecal.data.coco import read_image

    path, box, kp = real_person
    image = read_image(path)
    cut = int(np.ceil(max(kp[13, 1], kp[14, 1]) + 0.25 * abs(kp[15, 1] - kp[13, 1])))
    image[cut:] = 0
    clipped = [box[0], box[1], box[2], cut - box[1]]
    person = _person_pose(image, clipped)
    assert (person.visibility[[15, 16]] != 2).all() and (person.visibility_probs[[15, 16], 2] < 0.35).all()
    assert (person.visibility[[5, 6]] == 2).all()                              # shoulders
    whole = _person_pose(read_image(path), box)
    assert (whole.visibility[[15, 16]] == 2).all() and (whole.visibility_probs[[15, 16], 2] > 0.5).all()


@pytest.mark.slow
def test_shipped_model_sees_a_painted_occluder_over_a_wrist(real_person):
    """A flat grey block painted over the right wrist (this person holds both hands together, so it hides both):
    the trust model's chance that the wrist is visible falls by more than 0.2 and to at most 0.6 (the trust model
    retrained on the conditions users meet, issue 38, calls it less decisively than the first one, whose hidden
    share passed visible: 0.44 hidden against 0.56 visible now); the ankles, far from the block, keep their answer."""
    from posecal.data.coco import read_image

    path, box, kp = real_person
    image = read_image(path)
    side = int(0.25 * box[2]) + 6
    x, y = (int(round(v)) for v in kp[10, :2])
    painted = image.copy()
    painted[max(y - side, 0):y + side, max(x - side, 0):x + side] = 128
    before, after = _person_pose(image, box), _person_pose(painted, box)
    assert after.visibility_probs[10, 2] < before.visibility_probs[10, 2] - 0.2
    assert after.visibility_probs[10, 2] < 0.6
    assert (after.visibility[[15, 16]] == before.visibility[[15, 16]]).all()


def test_visibility_rule_by_hand_and_its_ratio_chosen_on_labels():
    from posecal.calibration.quality import (DEFAULT_OCCLUDED_OVER_VISIBLE, QualityCalibration,
                                             choose_occluded_ratio, fit_quality_calibration, occluded_rule)

    probs = np.array([[[0.55, 0.25, 0.2], [0.2, 0.5, 0.3], [0.2, 0.35, 0.45], [0.1, 0.2, 0.7], [0.4, 0.35, 0.25]]])
    # absent only when more likely than not: the last keypoint's 0.4 is a plurality, not a majority
    np.testing.assert_array_equal(occluded_rule(probs, 1.0), [[0, 1, 2, 2, 1]])
    np.testing.assert_array_equal(occluded_rule(probs, 0.75), [[0, 1, 1, 2, 1]])   # 0.35 >= 0.75 x 0.45
    np.testing.assert_array_equal(occluded_rule(probs, 2.0), [[0, 2, 2, 2, 2]])    # 0.5 < 2 x 0.3
    # occluded keypoints whose p(occluded) sits at 0.8-0.9 x p(visible), visible ones at 0.3 x: only a ratio
    # at or below 0.75 (of the grid) and above 0.3 finds the occluded ones and keeps the visible ones
    occ = np.tile([0.1, 0.42, 0.48], (40, 1))
    vis = np.tile([0.1, 0.2, 0.7], (160, 1))
    probs = np.concatenate([occ, vis])[None]
    truth = np.r_[np.ones(40, int), np.full(160, 2)][None]
    assert choose_occluded_ratio(probs, truth) in (0.5, 0.75)
    # a fitted calibration carries its ratio through its dict; one written before the field existed reads 2.0
    rng = np.random.default_rng(0)
    n = 60
    gt = np.concatenate([rng.uniform(20, 80, (n, 17, 2)), rng.integers(0, 3, (n, 17, 1))], -1)
    boxes = np.tile([10.0, 10.0, 80.0, 80.0], (n, 1))
    kp = gt[..., :2] + rng.normal(0, 3, (n, 17, 2))
    vis = rng.dirichlet(np.ones(3), (n, 17))
    cal = fit_quality_calibration(rng.random(n), rng.random((n, 17)), vis, kp, boxes, gt, np.full(n, 3000.0))
    d = cal.to_dict()
    assert QualityCalibration.from_dict(d).occluded_over_visible == cal.occluded_over_visible
    d.pop("occluded_over_visible")
    assert QualityCalibration.from_dict(d).occluded_over_visible == DEFAULT_OCCLUDED_OVER_VISIBLE


@pytest.mark.slow
@pytest.mark.onnx_graph("accurate")   # its export (20 s) made ahead, in the background (conftest)
def test_shipped_accurate_trust_outputs_equal_in_torch_and_onnx(real_person):
    """The trust model runs inside the exported graph (MoveNet's decode and flip merge included): onnxruntime's
    quality and visibility outputs equal PyTorch's on real crops."""
    from posecal.export.cache import cached_onnx
    from posecal.inference.estimator import runner_of
    from posecal.models.checkpoint import load_model

    model, cfg, _ = load_model("accurate")
    assert model.trust is not None and cfg.trust
    x = real_person_crops(real_person, cfg.input_wh).numpy()
    ref = runner_of(model).outputs(x, True)
    got = cached_onnx("accurate", flip=True, threads=1).outputs(x, True)
    np.testing.assert_allclose(got["oks"], ref["oks"], atol=1e-4)
    np.testing.assert_allclose(got["opks_logits"], ref["opks_logits"], atol=1e-3)
    np.testing.assert_allclose(got["vis_logits"], ref["vis_logits"], atol=1e-3)


@pytest.mark.slow
def test_trust_weights_come_alike_from_a_model_file_and_a_trust_checkpoint(tmp_path):
    """trust_weights (models/assemble.py) reads a trust model from a model file that carries one, or from a trust
    training checkpoint ({"model": state_dict}, as train_trust writes); a model without one is refused."""
    from posecal.models.assemble import trust_weights
    from posecal.models.checkpoint import load_model

    own = load_model("accurate")[0].trust.state_dict()
    from_model = trust_weights("accurate")
    ckpt = tmp_path / "best.pt"
    torch.save({"model": from_model, "state": {"step": 3}}, ckpt)
    from_ckpt = trust_weights(ckpt)
    assert from_model.keys() == own.keys() == from_ckpt.keys()
    assert all(torch.equal(own[k], from_model[k]) and torch.equal(own[k], from_ckpt[k]) for k in own)
    with pytest.raises(PosecalInputError, match="neither a trust checkpoint nor a model with a trust model"):
        trust_weights("lite0")
