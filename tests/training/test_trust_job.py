"""`posecal train-trust CONFIG` end to end on a tiny input written here (6 drawn persons, a MoveNet Lightning base
run in torch, 3 training steps): samples -> training -> a model file that loads and rates poses; a stop
(max_minutes) resumes where it stopped; a shipped model file is never the output."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posecal.cli.main import main
from posecal.errors import PosecalInputError
from posecal.models.checkpoint import WEIGHTS_DIR, load_model
from posecal.training.config import load_trust_config
from posecal.training.trust_job import run_trust_job

from conftest import make_coco, write_movenet_base


@pytest.fixture(scope="module")
def lightning(tmp_path_factory):
    """A MoveNet Lightning model file (the shipped Lightning network, no quality heads) as the trust's base."""
    return write_movenet_base(tmp_path_factory.mktemp("base") / "lightning.pt", "movenet_lightning")


def write_config(folder, base, **top) -> object:
    ann, images = make_coco(folder / "data", n_images=6)
    text = {"out_dir": str(folder / "run"), "output": str(folder / "trust.pt"), "base": str(base),
            "data": {"train_annotations": str(ann), "train_images": str(images), "val_annotations": str(ann),
                     "val_images": str(images)},
            "augment": {"truncation_prob": 0.5, "occluder_prob": 0.5},
            "samples": {"epochs": 1, "no_flip_share": 0.5, "backend": "torch", "batch_size": 4, "num_workers": 0},
            "train": {"epochs": 1.0, "batch_size": 2, "save_every": 1, "warmup_steps": 1, "threads": 1}} | top
    path = folder / "trust.yaml"
    path.write_text(json.dumps(text))   # JSON is YAML
    return path


@pytest.mark.slow
def test_train_trust_writes_a_model_that_rates_poses_and_resumes_after_a_stop(tmp_path, lightning, capsys):
    path = write_config(tmp_path, lightning)
    # stopped after its first step: the samples and last.pt are there, no model file yet
    assert main(["train-trust", str(path), "--max-minutes", "0.000001", "--no-progress"]) == 0
    assert "stopped after" in capsys.readouterr().out and not (tmp_path / "trust.pt").exists()
    shards = sorted((tmp_path / "run" / "samples").rglob("shard_*.npz"))
    assert [p.parent.name for p in shards] == ["epoch0", "epoch0_noflip", "val"]
    first = {p: p.stat().st_mtime_ns for p in shards}
    assert torch.load(tmp_path / "run" / "train" / "last.pt", weights_only=True)["state"]["step"] == 1

    # run again: the samples are kept, training goes on at step 1 to its 3 steps, the model file is written
    assert main(["train-trust", str(path), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in shards} == first
    model, cfg, meta = load_model(tmp_path / "trust.pt")
    assert cfg.trust and cfg.backbone == "movenet_lightning" and model.trust is not None
    assert meta["trust_trained_for"] and meta["trust_training"]["samples"]["backend"] == "torch"
    assert torch.load(tmp_path / "trust.pt", weights_only=True)["model_config"]["trust"] is True
    base = load_model(lightning)[0].state_dict()
    assert all(torch.equal(v, base[k]) for k, v in model.state_dict().items() if k.startswith("backbone."))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 192, 192), flip_test=True)
    assert out.oks.shape == (2,) and out.opks_logits.shape == (2, 17) and out.vis_logits.shape == (2, 17, 3)
    assert np.isfinite(out.oks.numpy()).all()


def test_samples_of_another_network_are_refused(tmp_path, lightning):
    cfg = load_trust_config(write_config(tmp_path, lightning))
    (tmp_path / "run" / "samples").mkdir(parents=True)
    (tmp_path / "run" / "samples" / "base.json").write_text(json.dumps({"pose_fingerprint": "0123abcd"}))
    with pytest.raises(PosecalInputError, match="samples of another network's keypoints"):
        run_trust_job(cfg, progress=False)


@pytest.mark.parametrize("output", ["posecal_accurate.pt", "new_model.pt"])
def test_a_shipped_weights_file_is_never_the_output(tmp_path, lightning, output, capsys):
    path = write_config(tmp_path, lightning, output=str(WEIGHTS_DIR / output))
    assert main(["train-trust", str(path)]) == 2
    assert "inside posecal's shipped weights" in capsys.readouterr().err
    assert not (WEIGHTS_DIR / "new_model.pt").exists()


def test_a_base_that_is_not_movenet_is_refused(tmp_path):
    cfg = load_trust_config(write_config(tmp_path, "lite0"))
    with pytest.raises(PosecalInputError, match="base: the trust model judges a MoveNet model's keypoints"):
        run_trust_job(cfg, progress=False)


def test_bad_trust_config_fields_are_one_line(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("samples:\n  backend: tensorflow\n")
    with pytest.raises(PosecalInputError, match=r"t\.yaml: samples\.backend: must be one of"):
        load_trust_config(path)
    path.write_text("train:\n  epoks: 2\n")
    with pytest.raises(PosecalInputError, match=r"train\.epoks: unknown key, did you mean 'epochs'"):
        load_trust_config(path)


@pytest.mark.slow
def test_onnx_and_torch_bases_write_the_same_samples(tmp_path, lightning):
    """samples.backend onnx (the shipped config's) and torch give the same keypoints on the same crops: both run
    the network as inference does (outputs(batch, flip)) and decode it one way."""
    from posecal.data.coco import load_coco_persons
    from posecal.export.cache import cached_onnx
    from posecal.inference.torch_runner import TorchRunner
    from posecal.training.trust_samples import load_shards, write_samples

    ann, images = make_coco(tmp_path / "data", n_images=3)
    records = load_coco_persons(ann, images)
    model, cfg, _ = load_model(lightning)
    for name, base in (("torch", TorchRunner(model)), ("onnx", cached_onnx(lightning, flip=True, threads=1))):
        assert write_samples(base, records, cfg.input_wh, tmp_path / name, augment=None, progress=False,
                             num_workers=0) == 1
    a, b = load_shards(tmp_path / "torch"), load_shards(tmp_path / "onnx")
    np.testing.assert_array_equal(a["crops"], b["crops"])
    np.testing.assert_allclose(a["base_xy"], b["base_xy"], atol=0.5)
    np.testing.assert_allclose(a["base_scores"], b["base_scores"], atol=0.01)
