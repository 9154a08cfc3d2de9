import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.codec.heatmap import decode, decode_argmax, decode_dark, decode_soft_argmax, encode
from posecal.codec.heatmap_torch import flip_back, soft_argmax
from posecal.training.losses import integral_l1
from posecal.skeleton import flip_permutation


@pytest.mark.parametrize("xy", [(10.0, 20.0), (10.3, 20.7), (17.55, 6.25), (6.9, 40.1)])
def test_dark_round_trip_within_a_tenth_of_a_pixel(xy):
    kp = np.zeros((17, 2)) + 18
    kp[0] = xy
    hm, w = encode(kp, np.full(17, 2), (36, 48), sigma=2.0)
    assert w.tolist() == [1.0] * 17
    coords, scores = decode_dark(hm[None])
    assert np.abs(coords[0, 0] - xy).max() < 0.1
    assert scores[0, 0] == pytest.approx(hm[0].max())


def test_dark_near_the_border_stays_within_a_quarter_pixel():
    # The smoothing step sees a truncated Gaussian near the edge, so precision degrades gracefully there.
    kp = np.full((17, 2), 18.0)
    kp[0] = (2.6, 45.3)
    hm, _ = encode(kp, np.full(17, 2), (36, 48))
    coords, _ = decode_dark(hm[None])
    assert np.abs(coords[0, 0] - kp[0]).max() < 0.25


def test_argmax_quarter_offset_moves_towards_the_true_point():
    kp = np.full((17, 2), 10.0)
    kp[0] = (10.4, 12.0)
    hm, _ = encode(kp, np.full(17, 2), (36, 48))
    coords, _ = decode_argmax(hm[None])
    assert coords[0, 0].tolist() == [10.25, 12.0]


def test_argmax_decode_by_hand():
    maps = np.zeros((1, 2, 6, 8), np.float32)
    maps[0, 0, 3, 5] = 1.0
    maps[0, 0, 3, 6] = 0.5     # right neighbour higher: +0.25 in x
    maps[0, 0, 2, 5] = 0.2     # upper neighbour higher: -0.25 in y
    maps[0, 1, 0, 7] = 0.9     # on the border: no shift
    maps[0, 1, 1, 7] = 0.3
    xy, peaks = decode_argmax(maps)
    assert xy[0].tolist() == [[5.25, 2.75], [7.0, 0.0]]
    assert peaks[0].tolist() == pytest.approx([1.0, 0.9])


def test_unlabelled_and_outside_keypoints_get_zero_weight_and_empty_maps():
    kp = np.full((17, 2), 10.0)
    kp[1] = (40.0, 10.0)      # outside a 36-wide map
    vis = np.full(17, 2)
    vis[2] = 0
    hm, w = encode(kp, vis, (36, 48))
    assert w[1] == 0 and w[2] == 0 and w[0] == 1
    assert hm[1].max() == 0 and hm[2].max() == 0


def test_flip_back_swaps_pairs_and_mirrors():
    kp = np.random.default_rng(0).uniform(6, 29, size=(17, 2))
    hm, _ = encode(kp, np.full(17, 2), (36, 48))
    mirrored = kp.copy()
    mirrored[:, 0] = 36 - 1 - mirrored[:, 0]
    mirrored = mirrored[flip_permutation()]
    hm_m, _ = encode(mirrored, np.full(17, 2), (36, 48))
    back = flip_back(torch.from_numpy(hm_m[None])).numpy()
    np.testing.assert_allclose(back[0], hm, atol=1e-6)
    merged = 0.5 * (hm[None] + back)
    coords, _ = decode_dark(merged)
    np.testing.assert_allclose(coords[0], kp, atol=0.1)


def test_flip_permutation_is_an_involution_swapping_left_and_right():
    perm = flip_permutation()
    assert perm[5] == 6 and perm[6] == 5 and perm[0] == 0 and perm[15] == 16
    assert (perm[perm] == np.arange(17)).all()


def test_in_model_flip_test_is_one_batch_of_both_passes_merged():
    from posecal.models.estimator import build_estimator

    torch.manual_seed(0)
    model = build_estimator((16, 16, 8), imagenet=False).eval()
    for m in model.modules():  # non-trivial heatmaps (the SimpleBaseline init makes them ~0)
        if isinstance(m, torch.nn.ConvTranspose2d) or m is model.heatmap_head.final:
            torch.nn.init.normal_(m.weight, std=0.1)
    x = torch.randn(3, 3, 64, 48)
    with torch.no_grad():
        merged = model(x, flip_test=True).heatmaps.numpy()
        expected = 0.5 * (model(x).heatmaps + flip_back(model(torch.flip(x, dims=[3])).heatmaps)).numpy()
    np.testing.assert_allclose(merged, expected, atol=1e-5)
    assert np.abs(expected).max() > 1e-3


def test_soft_argmax_of_a_known_heatmap_is_the_hand_computed_mean():
    # beta 1, a 2x4 map of zeros but ln 3 at (x 1, y 0) and ln 5 at (x 3, y 1): softmax weights 1 (six pixels),
    # 3 and 5 of 14. x = (1*(3+1) + 2*(1+1) + 3*(1+5)) / 14 = 26/14; y = (1+1+1+5) / 14 = 8/14.
    hm = np.zeros((1, 1, 2, 4), np.float32)
    hm[0, 0, 0, 1], hm[0, 0, 1, 3] = np.log(3), np.log(5)
    xy = soft_argmax(torch.from_numpy(hm), beta=1.0)   # training's, in torch: the same numbers
    np.testing.assert_allclose(xy.numpy()[0, 0], [13 / 7, 4 / 7], rtol=1e-6)
    coords, scores = decode_soft_argmax(hm, beta=1.0)
    np.testing.assert_allclose(coords[0, 0], [13 / 7, 4 / 7], rtol=1e-6)
    assert scores[0, 0] == pytest.approx(np.log(5))


@pytest.mark.parametrize("xy", [(10.5, 20.5), (10.3, 20.7), (17.0, 6.0)])
def test_soft_argmax_decodes_an_encoded_keypoint_within_a_tenth_of_a_pixel(xy):
    kp = np.full((17, 2), 18.0)
    kp[0] = xy
    hm, _ = encode(kp, np.full(17, 2), (36, 48))
    coords, _ = decode(hm[None], "soft_argmax")
    assert np.abs(coords[0, 0] - xy).max() < 0.1


def test_integral_l1_is_the_weighted_mean_coordinate_error_and_trains_the_heatmap():
    kp = np.array([[10.0, 20.0], [5.0, 5.0]])
    hm, _ = encode(np.concatenate([kp, np.full((15, 2), 18.0)]), np.full(17, 2), (36, 48))
    hm = torch.from_numpy(hm[None, :2]).requires_grad_(True)
    found = soft_argmax(hm.detach())[0]
    target = torch.tensor([[[12.0, 19.0], [0.0, 0.0]]])          # keypoint 1 has weight 0: not counted
    loss = integral_l1(hm, target, torch.tensor([[1.0, 0.0]]))
    expected = (found[0] - target[0, 0]).abs().sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 2.5 < loss.item() < 3.5                                # |10 - 12| + |20 - 19|, up to decoding
    loss.backward()
    assert hm.grad[0, 1].abs().max() == 0 and hm.grad[0, 0].abs().max() > 0


def test_second_peak_by_hand():
    """Per keypoint, the highest local maximum farther than SECOND_PEAK_CELLS from the keypoint's own cell, averaged
    over the keypoints: a joint seen twice (a second person) counts, its own spread and noise do not."""
    from posecal.codec.heatmap import SECOND_PEAK_CELLS, second_peak

    h = np.zeros((1, 3, 24, 24), np.float32)
    h[0, 0, 3, 3], h[0, 0, 15, 18] = 0.8, 0.4       # keypoint 0: its peak and another body's, far off
    h[0, 1, 5, 5], h[0, 1, 5, 5 + SECOND_PEAK_CELLS] = 0.6, 0.5   # keypoint 1: a bump at the radius, not beyond
    h[0, 2, 10, 10], h[0, 2, 20, 2] = 0.7, 0.04     # keypoint 2: a far bump under the noise floor
    cells = np.array([[[3, 3], [5, 5], [10, 10]]], float)   # x, y
    assert second_peak(h, cells) == pytest.approx([0.4 / 3])
    # the keypoint taken from the far peak instead: the near one is the second body now
    assert second_peak(h, np.array([[[18, 15], [5, 5], [10, 10]]], float)) == pytest.approx([0.8 / 3])
    assert second_peak(np.zeros((0, 3, 8, 8)), np.zeros((0, 3, 2))).shape == (0,)
