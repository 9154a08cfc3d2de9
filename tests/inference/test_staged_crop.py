"""A staged crop (issue 90 item 2): the look (one pose pass, the trust look, its judgement) and the refinement (the
mirror pass merged, judged again from the look's cached trust look) together give the flip graph's numbers; the
person policy decides on looks and only the people it keeps are refined."""
import numpy as np
import pytest

from conftest import STANDING, pose_of
from posecal.inference.person_policy import DETECTED, PersonPolicy
from posecal.inference.pipeline import PosePipeline


def drawn_crops(n: int, side: int, seed: int = 0) -> np.ndarray:
    """n posecal-normalised crops with a drawn stick figure each on a noisy background, at different places."""
    import cv2

    from posecal.data.crops import crops_to_batch

    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        img = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        kp = STANDING / STANDING.max() * side * (0.5 + 0.1 * i) + rng.uniform(0, side * 0.2, 2)
        for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
            cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (230, 200, 180), 4)
        crops.append(img)
    return crops_to_batch(crops)


@pytest.fixture(scope="module")
def movenet_with_trust():
    """A MoveNet Lightning network with an untrained trust model (seeded), at a 64-px trust look."""
    import torch

    from posecal.models.checkpoint import model_from_config
    from posecal.models.config import ModelConfig, network_input

    cfg = network_input(ModelConfig(backbone="movenet_lightning", trust=True, quality_heads=True, trust_input=64),
                        given=())
    torch.manual_seed(0)
    return model_from_config(cfg, imagenet=False).eval(), cfg


def test_look_and_refinement_equal_one_flip_pass_in_pytorch(movenet_with_trust):
    import torch

    from posecal.models.estimator import look_outputs, refine_outputs, runtime_outputs
    from posecal.models.outputs import LOOK_CACHE, REFINE_INPUTS

    model, cfg = movenet_with_trust
    x = torch.from_numpy(drawn_crops(3, cfg.input_wh[0]))
    with torch.no_grad():
        flip, plain = runtime_outputs(model, x, True), runtime_outputs(model, x, False)
        look = look_outputs(model, x)
        refined = refine_outputs(model, x, *[look[k] for k in REFINE_INPUTS[1:]])
    assert set(look) == set(plain) | set(LOOK_CACHE)
    for name in flip:
        assert torch.allclose(look[name], plain[name], atol=1e-4), name      # the look is the no-flip pass
        assert torch.allclose(refined[name], flip[name], atol=1e-4), name    # look + refinement = the flip pass
    assert not torch.allclose(flip["movenet_xy"], plain["movenet_xy"])      # and the mirror does change it


def test_look_and_refinement_graphs_equal_the_flip_graph(movenet_with_trust):
    """The same through ONNX (the look and refine graphs beside the flip graph), and the estimator's two stages give
    each person the numbers of one flip-graph estimate."""
    pytest.importorskip("onnxscript")
    from posecal.export.onnx import onnx_bytes
    from posecal.export.session import OnnxEstimator, StagedOnnx
    from posecal.inference.estimator import Estimator

    model, cfg = movenet_with_trust
    flip = OnnxEstimator(onnx_bytes(model, cfg, True))
    staged = StagedOnnx(*(OnnxEstimator(onnx_bytes(model, cfg, True, stage=s)) for s in ("look", "refine")))
    x = drawn_crops(3, cfg.input_wh[0], seed=1)
    want, got = flip.outputs(x, True), staged.outputs(x, True)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, err_msg=name)

    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (200, 160, 3), dtype=np.uint8)
    boxes, scores = np.array([[10, 10, 80, 150], [60, 30, 90, 160.]]), np.array([0.9, 0.4])
    whole = Estimator(flip, cfg.input_wh).estimate([(image, boxes, scores)])[0]
    two = Estimator(staged, cfg.input_wh)
    assert two.staged
    looks = two.look([(image, boxes, scores)])[0]
    assert all(p.look is not None for p in looks)
    two.refine(looks[:1])                                    # the first kept, the second rejected
    assert looks[0].look is None
    np.testing.assert_allclose(looks[0].keypoints, whole[0].keypoints, atol=1e-3)
    np.testing.assert_allclose(looks[0].keypoint_quality, whole[0].keypoint_quality, atol=1e-4)
    assert abs(looks[0].pose_quality - whole[0].pose_quality) < 1e-4
    assert looks[1].look is not None                         # never refined: still its look


def test_a_rejected_candidate_gets_no_refinement():
    """The pipeline refines the people the policy keeps, and nobody else: a detected box whose look is too poor to
    be a person is dropped before its mirror pass."""
    refined = []

    def estimate(items):
        out = []
        for _, boxes, _ in items:
            people = [pose_of(STANDING, 0.8), pose_of(STANDING + 200, 0.05)]
            for p in people:
                p.scores = {"oks": p.pose_quality}
                p.look = "a look"
            out.append(people[:len(boxes)])
        return out

    def refine(people):
        refined.extend(people)
        for p in people:
            p.look = None

    detector = lambda image: (np.array([[0, 0, 60, 60], [200, 200, 60, 60.]]), np.array([0.9, 0.9]))  # noqa: E731
    pipeline = PosePipeline(estimate, detector, PersonPolicy(min_pose_quality=0.3), refine=refine)
    people = pipeline(np.zeros((400, 400, 3), np.uint8))
    assert [p.pose_quality for p in people] == [0.8]
    assert len(refined) == 1 and refined[0] is people[0] and people[0].look is None
    assert people[0].box_origin == DETECTED


def test_the_trust_looks_size_travels_in_the_model_file(tmp_path, movenet_with_trust):
    """The trust look's input side is the model config's (trust_input), saved with the model and read back."""
    from posecal.models.checkpoint import load_model, save_model

    model, cfg = movenet_with_trust
    save_model(model, cfg, tmp_path / "m.pt")
    loaded, loaded_cfg, _ = load_model(tmp_path / "m.pt")
    assert loaded_cfg.trust_input == 64 and loaded.trust.input_size == 64


@pytest.mark.parametrize("name", ["accurate"])
def test_shipped_look_and_refine_graphs_give_the_flip_graphs_numbers(name):
    """The shipped look and refine graphs (float: exactly the flip graph's function; int8: as far from float as the
    int8 flip graph is) against the shipped flip graph, on drawn crops."""
    from posecal.export.session import OnnxEstimator, StagedOnnx
    from posecal.models.shipped import int8_graph, shipped_graph, staged_graphs

    for flip_graph, exact in ((shipped_graph(name, True), True), (int8_graph(name, True), False)):
        stages = staged_graphs(flip_graph)
        assert stages is not None, flip_graph
        whole = OnnxEstimator(flip_graph)
        staged = StagedOnnx(*(OnnxEstimator(g) for g in stages))
        x = drawn_crops(2, whole.config.input_wh[0], seed=3)
        want, got = whole.outputs(x, True), staged.outputs(x, True)
        for key in want:
            if exact:
                np.testing.assert_allclose(got[key], want[key], atol=1e-4, err_msg=f"{flip_graph.name} {key}")
        if not exact:   # int8 activation ranges fitted per graph: as far from the float graph as int8's flip graph is
            float_xy = OnnxEstimator(shipped_graph(name, True)).outputs(x, True)["movenet_xy"]
            apart = lambda xy: np.median(np.abs(xy - float_xy))   # noqa: E731
            assert apart(got["movenet_xy"]) <= 1.5 * apart(want["movenet_xy"]) + 0.5


def test_the_shipped_graphs_carry_their_trust_looks_size():
    """The trust look's side is the model file's (model_config.trust_input) and every graph made from it says the
    same, the look and refine graphs included."""
    from posecal.export.session import OnnxEstimator
    from posecal.models.checkpoint import load_model
    from posecal.models.shipped import SHIPPED_MODELS, int8_graph, shipped_graph, staged_graphs

    for name in ("accurate",):
        if not SHIPPED_MODELS[name].is_file():
            continue
        model, cfg, _ = load_model(name)
        assert model.trust.input_size == cfg.trust_input
        graphs = [shipped_graph(name, True), shipped_graph(name, False), *staged_graphs(shipped_graph(name, True)),
                  *staged_graphs(int8_graph(name, True))]
        assert {OnnxEstimator(g).config.trust_input for g in graphs} == {cfg.trust_input}


def test_only_the_staged_models_have_look_and_refine_graphs():
    """`fast` poses with its one flip graph (two graph calls a crop cost its cheap Lightning pass more than they
    save); `accurate` with its look and refine graphs, float and int8: models.config.stages_crops's one rule."""
    from posecal.export.session import OnnxEstimator, StagedOnnx
    from posecal.inference.opener import open_model
    from posecal.models.config import ModelConfig, stages_crops
    from posecal.models.shipped import shipped_graph, staged_graphs

    assert stages_crops(ModelConfig(backbone="movenet_thunder", trust=True))
    assert not stages_crops(ModelConfig(backbone="movenet_lightning", trust=True))
    assert not stages_crops(ModelConfig(backbone="movenet_thunder", trust=False))
    assert staged_graphs(shipped_graph("fast", True)) is None
    assert isinstance(open_model("fast", flip=True, threads=1).runner, OnnxEstimator)
    for precision in ("float", "int8"):
        assert isinstance(open_model("accurate", flip=True, threads=1, precision=precision).runner, StagedOnnx)
        assert isinstance(open_model("accurate", flip=False, threads=1, precision=precision).runner, OnnxEstimator)
