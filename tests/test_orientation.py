"""Test-time orientation search: the turned crop's geometry, the choice rule, and the whole path through
Predictor, predict_records and `posecal eval --orientations 4`."""
import json

import numpy as np
import pytest
import torch

from posecal.data.topdown import to_tensor
from posecal.data.transforms import apply_affine, box_to_center_scale, crop_matrix, person_crop_matrix
from posecal.models.estimator import PoseOutput
from posecal.inference.orientation import best_orientation, orientation_scores, orientations_for
from tests.conftest import make_coco, tiny_heads_predictor


def test_upright_crop_is_the_classic_box_crop():
    box = [30.0, 20.0, 50.0, 120.0]
    center, size = box_to_center_scale(box, 144 / 192)
    np.testing.assert_allclose(person_crop_matrix(box, (144, 192)), crop_matrix(center, size, 0.0, (144, 192)))


def test_lying_person_turned_by_90_stands_in_a_portrait_crop():
    # Box 100x40 centred at (200, 100). Turned, it is 40x100 -> region 75x100 (aspect 0.75) -> padded 93.75x125,
    # scale 144/93.75 = 1.536. The person's right end (250, 100), 50 px east of the centre, goes 50 px "north"
    # (a 90 degree anticlockwise turn): x = 71.5, y = 95.5 - 50 * 1.536 = 18.7.
    m = person_crop_matrix([150, 80, 100, 40], (144, 192), 90.0)
    np.testing.assert_allclose(apply_affine(np.array([[250.0, 100.0], [200.0, 100.0]]), m),
                               [[71.5, 95.5 - 50 * 1.536], [71.5, 95.5]], atol=1e-6)
    # Both ends inside the crop: the upright framing would have scaled by 144/125 and kept them too, but the
    # turned one fills the portrait crop's height with the person instead of its width.
    left = apply_affine(np.array([[150.0, 100.0]]), m)[0]
    assert 0 < left[1] < 191 and left[1] == pytest.approx(95.5 + 50 * 1.536)


def test_choice_rule():
    assert orientations_for(1) == (0.0,) and orientations_for(4) == (0.0, 90.0, 180.0, 270.0)
    with pytest.raises(ValueError, match="orientations must be one of"):
        orientations_for(2)
    scores = np.array([[0.5, 0.2, 0.3], [0.5, 0.6, 0.1], [0.1, 0.6, 0.9], [0.5, 0.1, 0.9]])
    assert best_orientation(scores).tolist() == [0, 1, 2]   # ties keep the earliest (upright) one
    assert orientation_scores({"oks": np.array([0.3]), "heatmap_scores": np.ones((1, 17))}).tolist() == [0.3]
    assert orientation_scores({"heatmap_scores": np.full((2, 17), 0.25)}).tolist() == [0.25, 0.25]


class TopBrightModel(torch.nn.Module):
    """Stands in for a network that recognises an upright person: every keypoint at the top centre of the crop,
    and the pose quality = how bright the crop's top quarter is (where an upright person's head would be)."""

    def forward(self, images, flip_test=True):
        n, _, h, w = images.shape
        ys, xs = torch.meshgrid(torch.arange(h // 4.0), torch.arange(w // 4.0), indexing="ij")
        peak = torch.exp(-((xs - (w // 4 - 1) / 2) ** 2 + (ys - 2) ** 2) / 2)
        heatmaps = peak.expand(n, 17, h // 4, w // 4).clone()
        top = images[:, :, : h // 4].mean((1, 2, 3))
        return PoseOutput(heatmaps=heatmaps, feature=heatmaps, oks=torch.sigmoid(top),
                          opks_logits=torch.zeros(n, 17), vis_logits=torch.zeros(n, 17, 3))


@pytest.mark.parametrize("bright_end, turn, side", [("left", 270.0, -1), ("right", 90.0, 1)])
def test_predictor_keeps_the_turn_that_puts_the_bright_end_on_top(tmp_path, bright_end, turn, side):
    predictor = tiny_heads_predictor(tmp_path)
    predictor.model = TopBrightModel()
    image = np.zeros((240, 320, 3), np.uint8)
    box = np.array([110.0, 100.0, 100.0, 40.0])            # a person lying horizontally, centre (160, 120)
    x0 = 110 if bright_end == "left" else 185
    image[100:140, x0:x0 + 25] = 255
    upright = predictor(image, boxes=box[None])[0]
    predictor.orientations = orientations_for(4)
    searched = predictor(image, boxes=box[None])[0]
    # Upright, the fake's keypoints sit above the box centre; after the turn chosen they lie at the bright end.
    assert upright.keypoints[:, 1].mean() < 120 - 15 and abs(upright.keypoints[:, 0].mean() - 160) < 5
    assert side * (searched.keypoints[:, 0].mean() - 160) > 20
    assert abs(searched.keypoints[:, 1].mean() - 120) < 5
    assert searched.pose_quality > upright.pose_quality
    # The pose quality reported is the kept turn's: that of the crop turned by `turn` through the fake itself.
    crop, _ = predictor._crop(image[:, :, ::-1].copy(), box, turn)
    tensor = to_tensor(crop)
    expect = torch.sigmoid(tensor[None, :, : tensor.shape[1] // 4].mean()).item()
    assert searched.pose_quality == pytest.approx(expect, abs=1e-5)


def test_predictor_refuses_other_counts(tmp_path):
    from posecal.errors import PosecalInputError
    from posecal.inference.predictor import Predictor

    tiny_heads_predictor(tmp_path)                          # writes tmp_path/heads.pt
    with pytest.raises(PosecalInputError, match="orientations: must be one of 1, 4, got 3"):
        Predictor.from_checkpoint(tmp_path / "heads.pt", detector=None, orientations=3)


def test_predict_records_and_eval_cli_with_orientation_search(tmp_path):
    from posecal.models.checkpoint import load_model
    from posecal.cli.main import main
    from posecal.data.coco import load_coco_persons
    from posecal.inference.topdown import predict_records

    tiny_heads_predictor(tmp_path)                          # writes tmp_path/heads.pt
    ann, img_dir = make_coco(tmp_path / "coco")
    model, mcfg, _ = load_model(tmp_path / "heads.pt")
    records = load_coco_persons(ann, img_dir)
    one = predict_records(model, records, mcfg.input_wh, progress=False)
    four = predict_records(model, records, mcfg.input_wh, progress=False, orientations=4)
    assert len(four.records) == len(one.records) == len(records)
    # The kept pose of each person is the most trusted of the four, so never less trusted than the upright one.
    assert np.all(four.oks >= one.oks - 1e-6) and four.keypoints.shape == one.keypoints.shape

    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tmp_path / "heads.pt"), "--annotations", str(ann), "--images",
                 str(img_dir), "--out", str(out), "--orientations", "4", "--no-progress", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["orientations"] == 4
    results = json.loads((out / "results.json").read_text())
    np.testing.assert_allclose(np.array([r["keypoints"] for r in results]).reshape(-1, 17, 3)[:, :, :2],
                               four.keypoints, atol=0.05)
