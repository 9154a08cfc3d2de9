"""Trust-guided fusion (posecal/models/trust/fusion.py): the pick rule on made-up candidates with known
qualities, the second opinion's decode against hand-computed values, a fusing model whose every keypoint is one of
its candidates, and a fused model assembled from the shipped parts equal in PyTorch and onnxruntime."""
import numpy as np
import pytest
import torch

from posecal.codec.heatmap import decode_argmax_torch
from posecal.codec.movenet import decode_passes
from posecal.errors import PosecalInputError
from posecal.models.estimator import build_estimator
from posecal.models.config import MOVENET_CONVENTION
from posecal.models.trust.fusion import fuse_by_trust, pick

from conftest import COCO_CROPS, needs_shared, real_person_crops, val_subset


def test_the_better_candidate_wins_only_by_more_than_its_margin():
    # 2 persons x 3 keypoints, 3 candidates; candidate 0 is the first pick
    logits = torch.tensor([[[0.0, 0.0, 2.0], [1.0, -3.0, 0.0]],
                           [[0.4, 0.6, 1.0], [1.0, 5.0, -1.0]],      # leads by 0.4 / 0.6 / -1 ...
                           [[3.0, 0.0, 2.5], [0.0, 4.0, 0.7]]])
    choice = fuse_by_trust(logits, [0.5, 2.0])
    # kp (0,0): cand 1 leads by 0.4 < 0.5 (stays 0), cand 2 leads by 3 > 2 -> 2
    # kp (0,1): cand 1 leads by 0.6 > 0.5 -> 1; cand 2 (0.0) does not lead 0.6 by 2 -> 1
    # kp (0,2): cand 1 behind; cand 2 leads by 0.5 < 2 -> 0
    # kp (1,0): equal logits are no lead -> 0
    # kp (1,1): cand 1 leads by 8 -> 1; cand 2 is behind cand 1 -> 1
    # kp (1,2): cand 2 leads by 0.7 < 2 -> 0
    assert choice.tolist() == [[2, 1, 0], [0, 1, 0]]
    xy = torch.arange(3 * 2 * 3 * 2, dtype=torch.float32).reshape(3, 2, 3, 2)
    fused = pick(xy, choice)
    for n in range(2):
        for k in range(3):
            assert fused[n, k].tolist() == xy[choice[n, k], n, k].tolist()
    np.testing.assert_allclose(pick(logits, choice).numpy(), [[3.0, 0.6, 2.0], [1.0, 5.0, 0.0]])


def test_a_single_candidate_is_left_as_it_is():
    logits = torch.randn(1, 4, 17)
    choice = fuse_by_trust(logits, [])
    assert (choice == 0).all()
    xy = torch.randn(1, 4, 17, 2)
    assert torch.equal(pick(xy, choice), xy[0])
    vis = torch.randn(1, 4, 17, 3)
    assert torch.equal(pick(vis, choice), vis[0])


def test_torch_argmax_decode_by_hand():
    maps = torch.zeros(1, 2, 6, 8)
    maps[0, 0, 3, 5] = 1.0
    maps[0, 0, 3, 6] = 0.5     # right neighbour higher: +0.25 in x
    maps[0, 0, 2, 5] = 0.2     # upper neighbour higher: -0.25 in y
    maps[0, 1, 0, 7] = 0.9     # on the border: no shift
    maps[0, 1, 1, 7] = 0.3
    xy, peaks = decode_argmax_torch(maps)
    assert xy[0].tolist() == [[5.25, 2.75], [7.0, 0.0]]
    assert peaks[0].tolist() == pytest.approx([1.0, 0.9])


def test_decode_passes_merged_crop_and_mirror():
    """Under the flip test decode_passes gives the merged keypoints, the crop's pass and the mirror's pass mapped
    back; a mirror that decodes to the mirror image of the crop maps back onto the crop's keypoints exactly."""
    torch.manual_seed(0)
    h = w = 16
    heat = torch.rand(1, 17, h, w) * 0.1
    for k in range(17):
        heat[0, k, 4 + k % 8, 3 + k % 10] = 0.9
    centre = torch.zeros(1, 1, h, w)
    centre[0, 0, 8, 8] = 1.0
    zeros = torch.zeros(1, 34, h, w)
    from posecal.skeleton import flip_permutation
    perm = torch.as_tensor(flip_permutation(17))
    mirror_heat = torch.flip(heat[:, perm], dims=[3])
    mirror_centre = torch.flip(centre, dims=[3])
    both = [torch.cat(p) for p in ((centre, mirror_centre), (zeros, zeros), (heat, mirror_heat), (zeros, zeros))]
    passes = decode_passes(*both, num_crops=1)
    assert len(passes) == 3 and len(decode_passes(centre, zeros, heat, zeros, num_crops=1)) == 1
    (merged, _), (crop, _), (back, back_scores) = passes
    # cell x decodes to pixel 4x - 0.5; its mirror cell (15 - x) maps back to 63 - (4(15 - x) - 0.5) = 4x + 3.5
    np.testing.assert_allclose(back[..., 1].numpy(), crop[..., 1].numpy())
    np.testing.assert_allclose(back[..., 0].numpy(), crop[..., 0].numpy() + 4, atol=1e-3)
    np.testing.assert_allclose(back_scores.numpy(), passes[1][1].numpy())
    # 4 px apart is more than merge_flip's agreement (0.04 x 64 px): the higher score is kept, the crop's on a tie
    np.testing.assert_allclose(merged.numpy(), crop.numpy())


def test_a_fusing_model_reports_one_of_its_candidates_for_every_keypoint():
    torch.manual_seed(0)
    model = build_estimator(backbone="movenet_lightning", imagenet=False, quality_heads=True, trust=True,
                            second_opinion=True, **MOVENET_CONVENTION).eval()
    x = torch.randn(2, 3, 192, 192)
    with torch.no_grad():
        out = model(x, flip_test=True)
        m = out.movenet
        passes = decode_passes(m.center, m.regress, m.heatmap, m.offset, 2)
        second, _ = model.second_opinion(x, flip_test=True)
    cands = torch.stack([p[0] for p in passes] + [second])          # (4, N, K, 2)
    assert out.keypoints.shape == (2, 17, 2) and out.keypoint_scores.shape == (2, 17)
    gap = (cands - out.keypoints[None]).abs().amax(-1).amin(0)      # distance to the nearest candidate
    assert gap.max() < 1e-4
    assert out.oks.shape == (2,) and out.opks_logits.shape == (2, 17) and out.vis_logits.shape == (2, 17, 3)
    with torch.no_grad():
        plain = model(x, flip_test=False)
    assert plain.keypoints.shape == (2, 17, 2)


def test_fusing_the_flip_passes_alone_and_without_the_flip_test():
    """fusion without a second opinion: every keypoint is one of the flip test's three candidates; without the
    flip test there is one candidate, and the keypoints are MoveNet's own decode, unchanged."""
    torch.manual_seed(1)
    model = build_estimator(backbone="movenet_lightning", imagenet=False, quality_heads=True, trust=True,
                            fusion=True, **MOVENET_CONVENTION).eval()
    assert model.fuses and model.second_opinion is None
    x = torch.randn(3, 3, 192, 192)
    with torch.no_grad():
        out = model(x, flip_test=True)
        m = out.movenet
        cands = torch.stack([p[0] for p in decode_passes(m.center, m.regress, m.heatmap, m.offset, 3)])
        plain = model(x, flip_test=False)
        m1 = plain.movenet
        (own, own_scores), = decode_passes(m1.center, m1.regress, m1.heatmap, m1.offset, 3)
    assert (cands - out.keypoints[None]).abs().amax(-1).amin(0).max() < 1e-5
    assert torch.equal(plain.keypoints, own) and torch.equal(plain.keypoint_scores, own_scores)
    with pytest.raises(PosecalInputError, match="model.fusion"):
        build_estimator(backbone="efficientnet_lite0", imagenet=False, quality_heads=True, fusion=True)


@pytest.fixture(scope="module")
def fused_file(tmp_path_factory):
    """The accurate model fusing its flip passes and the fast network (models/assemble.py), as a file."""
    from posecal.models.checkpoint import save_model
    from posecal.models.assemble import fused_model

    model, cfg, meta = fused_model("accurate", "fast")
    path = tmp_path_factory.mktemp("fused") / "fused.pt"
    save_model(model, cfg, path, meta=meta)
    return path


def test_assembled_fused_keypoints_equal_in_torch_and_onnx(real_person, fused_file):
    """A model fusing the flip passes and the fast network fuses inside the exported graph: onnxruntime's keypoints
    equal PyTorch's."""
    from posecal.export.cache import cached_onnx
    from posecal.models.checkpoint import load_model

    model, cfg, _ = load_model(fused_file)
    assert model.fuses and cfg.fusion and model.second_opinion is not None
    x = real_person_crops(real_person, cfg.input_wh)
    with torch.no_grad():
        ref = model(x, flip_test=True)
    got = cached_onnx(fused_file, flip=True, threads=1)(x, flip_test=True)
    np.testing.assert_allclose(got.keypoints.numpy(), ref.keypoints.numpy(), atol=1e-2)
    np.testing.assert_allclose(got.oks.numpy(), ref.oks.numpy(), atol=1e-4)
    np.testing.assert_allclose(got.opks_logits.numpy(), ref.opks_logits.numpy(), atol=1e-3)


def test_a_model_without_a_trust_model_cannot_fuse():
    from posecal.models.assemble import fused_model

    with pytest.raises(PosecalInputError, match="the fusion's judge is the trust model"):
        fused_model("fast")


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
        trust_weights("fast")


@needs_shared
def test_fused_poses_round_trip_through_results_json_and_eval_results(tmp_path, fused_file):
    """`posecal eval --model FUSED.pt` writes the fused poses; `eval --results` on that file scores them alike."""
    import json

    from posecal.cli.main import main

    sub, ann = val_subset(tmp_path, 16)
    run, again = tmp_path / "run", tmp_path / "again"
    assert main(["eval", "--model", str(fused_file), "--annotations", str(sub), "--images", str(COCO_CROPS / "images"),
                 "--out", str(run), "--no-progress"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert len(results) == len(ann["annotations"])
    assert all(len(r["keypoints"]) == 51 and len(r["visibility"]) == 17 for r in results)
    assert main(["eval", "--results", str(run / "results.json"), "--annotations", str(sub),
                 "--out", str(again)]) == 0
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (run, again))
    assert second["num_matched"] == len(results)
    assert second["ap"]["pose_quality"] == pytest.approx(first["ap"]["oks"], abs=0.5)
