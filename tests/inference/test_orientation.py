"""Test-time orientation search: the turned crop's geometry, the choice rule, and the whole path through
Predictor, predict_records and `posecal eval --orientations 4`."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.data.topdown import to_tensor
from posecal.errors import PosecalInputError
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
    assert orientations_for("auto") == orientations_for(4)
    with pytest.raises(PosecalInputError, match="^orientations: must be one of 1, 4, auto, got 2$"):
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
    predictor.orientations = 4
    searched = predictor(image, boxes=box[None])[0]
    # Upright, the fake's keypoints sit above the box centre; after the turn chosen they lie at the bright end.
    assert upright.keypoints[:, 1].mean() < 120 - 15 and abs(upright.keypoints[:, 0].mean() - 160) < 5
    assert side * (searched.keypoints[:, 0].mean() - 160) > 20
    assert abs(searched.keypoints[:, 1].mean() - 120) < 5
    assert searched.pose_quality > upright.pose_quality
    # The pose quality reported is the kept turn's: that of the crop turned by `turn` through the fake itself.
    crop, _ = predictor.estimator._crop(image[:, :, ::-1].copy(), box, turn)
    tensor = to_tensor(crop)
    expect = torch.sigmoid(tensor[None, :, : tensor.shape[1] // 4].mean()).item()
    assert searched.pose_quality == pytest.approx(expect, abs=1e-5)


def test_predictor_refuses_other_counts(tmp_path):
    from posecal.inference.predictor import Predictor

    tiny_heads_predictor(tmp_path)                          # writes tmp_path/heads.pt
    with pytest.raises(PosecalInputError, match="orientations: must be one of 1, 4, auto, got 3"):
        Predictor(tmp_path / "heads.pt", detector=None, orientations=3)


def test_predict_records_and_eval_cli_with_orientation_search(tmp_path):
    from posecal.models.checkpoint import load_model
    from posecal.cli.main import main
    from posecal.data.coco import load_coco_persons
    from posecal.inference.estimator import predict_records

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
                 str(img_dir), "--out", str(out), "--orientations", "4", "--no-progress", "--threads", "1",
                 "--backend", "torch"]) == 0   # the same path as predict_records above; ONNX parity is tested apart
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["orientations"] == 4
    results = json.loads((out / "results.json").read_text())
    np.testing.assert_allclose(np.array([r["keypoints"] for r in results]).reshape(-1, 17, 3)[:, :, :2],
                               four.keypoints, atol=0.05)


# --orientations auto: the extra turns only for the persons whose upright pose quality is below AUTO_BELOW (or
# whose torso leans past AUTO_TILT; these tests count turns by quality, so the lean rule is off but in its own test).

@pytest.fixture(autouse=True)
def no_lean_rule(monkeypatch):
    from posecal.inference import orientation

    monkeypatch.setattr(orientation, "AUTO_TILT", 181.0)


def test_auto_also_turns_persons_whose_torso_leans(monkeypatch):
    from posecal.inference import orientation

    monkeypatch.setattr(orientation, "AUTO_TILT", 60.0)
    monkeypatch.setattr(orientation, "AUTO_BELOW", 0.1)
    kp = np.zeros((4, 17, 2))
    shoulders, hips = [5, 6], [11, 12]
    for i, (dx, dy) in enumerate([(0, -10), (10, 0), (0, 10), (4, -10)]):   # standing, lying, upside down, 22 deg
        kp[i, shoulders] = [50 + dx, 50 + dy]
        kp[i, hips] = [50, 50]
    np.testing.assert_allclose(orientation.torso_tilt(kp), [0, 90, 180, np.degrees(np.arctan2(4, 10))], atol=1e-9)
    up = {"oks": np.array([0.9, 0.9, 0.9, 0.05]), "heatmap_scores": np.ones((4, 17)), "keypoints": kp}
    np.testing.assert_array_equal(orientation.persons_to_turn("auto", up), [1, 2, 3])   # 3: by its quality
    np.testing.assert_array_equal(orientation.persons_to_turn(1, up), [])

def test_keep_best_turn_keeps_each_redone_persons_most_trusted_turn_and_upright_on_ties():
    from posecal.inference.orientation import keep_best_turn

    upright = {"oks": np.array([0.9, 0.2, 0.3, 0.1]), "xy": np.arange(4.0)[:, None] * [1.0, 1.0]}
    # Persons 1 and 3 redone; each turned pass holds their two rows, in that order; xy says which turn it came from.
    turned = [{"oks": np.array([0.5, 0.1]), "xy": np.full((2, 2), 90.0)},
              {"oks": np.array([0.6, 0.1]), "xy": np.full((2, 2), 180.0)},
              {"oks": np.array([0.2, 0.1]), "xy": np.full((2, 2), 270.0)}]
    merged = keep_best_turn(upright, turned, np.array([1, 3]))
    assert merged["oks"].tolist() == [0.9, 0.6, 0.3, 0.1]                  # person 3: a four-way tie -> upright
    assert merged["xy"][:, 0].tolist() == [0.0, 180.0, 2.0, 3.0]
    assert upright["oks"].tolist() == [0.9, 0.2, 0.3, 0.1]                 # the upright arrays are not changed
    # Without quality heads the mean heatmap peak decides, as for orientations=4.
    flat = {"heatmap_scores": np.array([[0.4, 0.4], [0.5, 0.5]]), "xy": np.zeros((2, 2))}
    better = {"heatmap_scores": np.array([[0.6, 0.6]]), "xy": np.ones((1, 2))}
    assert keep_best_turn(flat, [better], np.array([0]))["xy"][:, 0].tolist() == [1.0, 0.0]
    assert keep_best_turn(flat, [], np.arange(0)) is flat


def test_persons_to_turn(monkeypatch):
    from posecal.inference import orientation

    monkeypatch.setattr(orientation, "AUTO_BELOW", 0.35)
    res = {"oks": np.array([0.9, 0.2, 0.35, 0.34]), "heatmap_scores": np.zeros((4, 17))}
    assert orientation.persons_to_turn("auto", res).tolist() == [1, 3]     # at the threshold: upright only
    assert orientation.persons_to_turn(4, res).tolist() == [0, 1, 2, 3]
    assert orientation.persons_to_turn(1, res).tolist() == []
    # No quality heads: no predicted OKS to hold to the threshold, so auto stays upright.
    assert orientation.persons_to_turn("auto", {"heatmap_scores": np.zeros((3, 17))}).tolist() == []
    monkeypatch.setattr(orientation, "AUTO_BELOW", 0.95)                 # read when called, not when imported
    assert orientation.persons_to_turn("auto", res).tolist() == [0, 1, 2, 3]


def test_orientation_settings_parse_and_refuse_in_one_line():
    from posecal.inference.orientation import check_orientations, parse_orientations

    assert [parse_orientations(t) for t in ("1", "4", "auto", " 4 ")] == [1, 4, "auto", 4]
    assert type(parse_orientations("4")) is int and type(check_orientations(np.int64(4))) is int
    for text in ("2", "AUTO", "4.0", ""):
        with pytest.raises(ValueError, match="^must be one of 1, 4, auto, got"):
            parse_orientations(text)
    for value, message in [(True, "expected 1, 4 or 'auto', got the boolean true"),
                           (4.0, "expected 1, 4 or 'auto', got the number 4.0"),
                           (np.array([1, 4]), "expected 1, 4 or 'auto', got a ndarray"),
                           ("up", "must be one of 1, 4, auto, got 'up'")]:
        with pytest.raises(PosecalInputError) as e:
            check_orientations(value)
        assert str(e.value) == f"orientations: {message}"


class CropCounter:
    """Wraps a model's forward: how many crops went through the network, over how many calls."""

    def __init__(self, forward):
        self.forward, self.crops, self.calls = forward, 0, 0

    def eval(self):
        return self

    def __call__(self, images, flip_test=True):
        self.crops += images.shape[0]
        self.calls += 1
        return self.forward(images, flip_test=flip_test)


def _lying_people_image():
    """Four persons: one with a bright top (trusted upright by TopBrightModel), two lying with a bright end
    (doubted upright, each with another grey above it; turned by 270 or 90 degrees they are trusted), and a dark
    one: four different upright pose qualities."""
    image = np.zeros((240, 320, 3), np.uint8)
    boxes = np.array([[20.0, 20.0, 40.0, 100.0], [110.0, 30.0, 100.0, 40.0], [110.0, 150.0, 100.0, 40.0],
                      [240.0, 130.0, 40.0, 100.0]])
    image[20:45, 20:60] = 255       # person 0: head at the top
    image[0:30, 100:220] = 40       # person 1: dim grey above it (the top of its upright crop)
    image[30:70, 110:135] = 255     # person 1: bright left end
    image[100:150, 100:220] = 80    # person 2: lighter grey above it
    image[150:190, 185:210] = 255   # person 2: bright right end
    return image, boxes


def _poses(predictor, orientations, image, boxes):
    predictor.orientations = orientations
    counter = predictor.model = CropCounter(TopBrightModel())
    people = predictor(image, boxes=boxes)
    return np.array([p.pose_quality for p in people]), np.stack([p.keypoints for p in people]), counter


def test_predictor_auto_turns_only_the_persons_below_the_threshold(tmp_path, monkeypatch):
    from posecal.inference import orientation
    # passes of the search alone: an untrained model's random poses are not judged again as upside down
    monkeypatch.setattr("posecal.inference.estimator.visibility_turns", lambda res: np.zeros(len(res["xy"])))

    predictor = tiny_heads_predictor(tmp_path)
    assert predictor.calibration is None                  # pose_quality is the raw score auto reads
    image, boxes = _lying_people_image()
    n = len(boxes)
    one_q, one_xy, one = _poses(predictor, 1, image, boxes)
    four_q, four_xy, four = _poses(predictor, 4, image, boxes)
    assert (one.crops, four.crops) == (n, 4 * n)
    assert len(set(one_q.round(6))) == n and np.any(four_q > one_q + 0.01)

    monkeypatch.setattr(orientation, "AUTO_BELOW", one_q.min())  # every person trusted upright: one pass, as 1
    q, xy, auto = _poses(predictor, "auto", image, boxes)
    assert (auto.crops, auto.calls) == (n, one.calls)
    np.testing.assert_array_equal(xy, one_xy)
    np.testing.assert_array_equal(q, one_q)

    monkeypatch.setattr(orientation, "AUTO_BELOW", one_q.max() + 1)  # every person doubted: four turns, as 4
    q, xy, auto = _poses(predictor, "auto", image, boxes)
    assert auto.crops == 4 * n
    np.testing.assert_array_equal(xy, four_xy)
    np.testing.assert_array_equal(q, four_q)

    threshold = np.sort(one_q)[1:3].mean()              # the two least trusted persons below it
    monkeypatch.setattr(orientation, "AUTO_BELOW", threshold)
    low = one_q < threshold
    q, xy, auto = _poses(predictor, "auto", image, boxes)
    assert low.sum() == 2 and auto.crops == n + 3 * 2
    np.testing.assert_allclose(xy[low], four_xy[low], atol=1e-6)
    np.testing.assert_allclose(q[low], four_q[low], atol=1e-6)
    np.testing.assert_array_equal(xy[~low], one_xy[~low])
    np.testing.assert_array_equal(q[~low], one_q[~low])


def test_predict_records_auto_runs_the_extra_passes_over_the_low_records_only(tmp_path, monkeypatch):
    # passes of the search alone: an untrained model's random poses are not judged again as upside down
    monkeypatch.setattr("posecal.inference.estimator.visibility_turns", lambda res: np.zeros(len(res["xy"])))
    from posecal.models.checkpoint import load_model
    from posecal.data.coco import load_coco_persons
    from posecal.inference import orientation
    from posecal.inference.estimator import predict_records

    tiny_heads_predictor(tmp_path)                          # writes tmp_path/heads.pt
    ann, img_dir = make_coco(tmp_path / "coco")
    model, mcfg, _ = load_model(tmp_path / "heads.pt")
    records = load_coco_persons(ann, img_dir)
    n = len(records)

    def run(orientations):
        counter = model.forward = CropCounter(type(model).forward.__get__(model))
        return predict_records(model, records, mcfg.input_wh, progress=False, orientations=orientations,
                               batch_size=2), counter

    (one, c1), (four, c4) = run(1), run(4)
    assert (c1.crops, c4.crops) == (n, 4 * n) and len(set(one.oks.round(7))) == n

    monkeypatch.setattr(orientation, "AUTO_BELOW", one.oks.min())   # nobody below (an untrained head's OKS
    auto, c = run("auto")                                          # may be negative: thresholds from the data)
    assert (c.crops, c.calls) == (n, c1.calls)
    for key in ("keypoints", "heatmap_scores", "oks", "opks", "visibility_probs"):
        np.testing.assert_array_equal(getattr(auto, key), getattr(one, key))

    monkeypatch.setattr(orientation, "AUTO_BELOW", one.oks.max() + 1)
    auto, c = run("auto")
    assert c.crops == 4 * n
    np.testing.assert_array_equal(auto.keypoints, four.keypoints)
    np.testing.assert_array_equal(auto.oks, four.oks)

    threshold = np.median(one.oks)
    monkeypatch.setattr(orientation, "AUTO_BELOW", threshold)
    low = one.oks < threshold
    auto, c = run("auto")
    assert 0 < low.sum() < n and c.crops == n + 3 * low.sum()
    assert [r.ann_id for r in auto.records] == [r.ann_id for r in one.records]
    np.testing.assert_allclose(auto.keypoints[low], four.keypoints[low], atol=1e-4)
    np.testing.assert_allclose(auto.oks[low], four.oks[low], atol=1e-6)
    np.testing.assert_array_equal(auto.keypoints[~low], one.keypoints[~low])
    np.testing.assert_array_equal(auto.oks[~low], one.oks[~low])


def test_cli_takes_orientations_auto(tmp_path, monkeypatch):
    from posecal.cli.main import main
    from posecal.data.coco import load_coco_persons
    from posecal.inference import orientation
    from posecal.inference.estimator import predict_records
    from posecal.models.checkpoint import load_model
    from posecal.predict import job, units

    tiny_heads_predictor(tmp_path)                          # writes tmp_path/heads.pt
    ann, img_dir = make_coco(tmp_path / "coco")
    model, mcfg, _ = load_model(tmp_path / "heads.pt")
    records = load_coco_persons(ann, img_dir)
    one = predict_records(model, records, mcfg.input_wh, progress=False)
    monkeypatch.setattr(orientation, "AUTO_BELOW", np.median(one.oks))   # half the persons turned
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tmp_path / "heads.pt"), "--annotations", str(ann), "--images",
                 str(img_dir), "--out", str(out), "--orientations", "auto", "--no-progress", "--threads", "1",
                 "--backend", "torch"]) == 0   # the path predict_records takes below; ONNX parity is tested apart
    assert json.loads((out / "metrics.json").read_text())["orientations"] == "auto"
    auto = predict_records(model, records, mcfg.input_wh, progress=False, orientations="auto")
    results = json.loads((out / "results.json").read_text())
    np.testing.assert_allclose(np.array([r["keypoints"] for r in results]).reshape(-1, 17, 3)[:, :, :2],
                               auto.keypoints, atol=0.05)

    seen = []   # predict: the value reaches PredictConfig as the API takes it ("4" as the int 4)
    monkeypatch.setattr(units, "run_predict", lambda cfg: seen.append(cfg.orientations) or job.PredictSummary(
        frames=0, persons=0, problems=0, seconds=0.0))
    for text in ("auto", "4", "1"):
        assert main(["predict", str(img_dir), "--orientations", text, "--out", str(tmp_path / "p.json")]) == 0
    assert seen == ["auto", 4, 1]
