"""Shipped weights stored once: a model file whose pose network is Google's MoveNet unchanged names the shipped
part instead of a copy (save_model share_shipped, read_model_file), and loads to exactly the same weights."""
import json

import pytest

torch = pytest.importorskip("torch")

from posecal.errors import PosecalInputError
from posecal.models.checkpoint import (PART_PREFIX, SHIPPED_MODELS, WEIGHTS_DIR, atomic_save, load_model,
                                       model_from_config, read_model_file, read_torch_file, save_model)
from posecal.models.config import ModelConfig, network_input

THUNDER = WEIGHTS_DIR / "movenet_thunder_fp16.pt"


def thunder_state() -> dict:
    return torch.load(THUNDER, map_location="cpu", weights_only=True)["state_dict"]


def test_published_is_composed_from_the_shipped_thunder_network():
    raw = read_torch_file(SHIPPED_MODELS["published"])
    assert raw["shared_weights"]["file"] == THUNDER.name
    assert not any(k.startswith(PART_PREFIX) for k in raw["state_dict"])   # no second copy in the file
    assert SHIPPED_MODELS["published"].stat().st_size < THUNDER.stat().st_size
    model, cfg, _ = load_model("published")
    own = model.state_dict()
    for k, v in thunder_state().items():
        assert torch.equal(own[PART_PREFIX + k], v.float()), k
    assert cfg.trust and model.trust is not None


@pytest.mark.slow
def test_pack_shares_an_unchanged_network_and_stores_a_changed_one(tmp_path):
    cfg = network_input(ModelConfig(backbone="movenet_thunder", quality_heads=True, head_hidden=8), given=())
    model = model_from_config(cfg, imagenet=True)   # Google's weights, as shipped
    save_model(model, cfg, tmp_path / "shared.pt", half=True, share_shipped=True)
    save_model(model, cfg, tmp_path / "whole.pt", half=True)
    assert "shared_weights" in read_torch_file(tmp_path / "shared.pt")
    assert (tmp_path / "shared.pt").stat().st_size < (tmp_path / "whole.pt").stat().st_size - 10_000_000
    a, _, _ = load_model(tmp_path / "shared.pt")
    b, _, _ = load_model(tmp_path / "whole.pt")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

    with torch.no_grad():
        next(model.backbone.parameters()).add_(0.5)   # a fine-tuned network is its own: stored whole
    save_model(model, cfg, tmp_path / "tuned.pt", half=True, share_shipped=True)
    assert "shared_weights" not in read_torch_file(tmp_path / "tuned.pt")


def test_a_file_may_share_only_posecals_own_part_of_the_recorded_version(tmp_path):
    raw = read_torch_file(SHIPPED_MODELS["published"])
    outside = tmp_path / "outside.pt"
    atomic_save({**raw, "shared_weights": {**raw["shared_weights"], "file": "../../evil.pt"}}, outside)
    with pytest.raises(PosecalInputError, match=r"outside\.pt: shares weights with '\.\./\.\./evil\.pt', which is "
                                                r"not a part posecal ships"):
        read_model_file(outside)
    other = tmp_path / "other.pt"
    atomic_save({**raw, "shared_weights": {**raw["shared_weights"], "sha256": "0" * 64}}, other)
    with pytest.raises(PosecalInputError, match=r"other\.pt: shares weights with movenet_thunder_fp16\.pt, but the "
                                                r"installed movenet_thunder_fp16\.pt is another version"):
        load_model(other)


def test_posecal_models_lists_each_graph_and_its_torch_file(capsys, monkeypatch):
    from posecal import devices
    from posecal.cli.main import main
    from posecal.models.shipped import graph_weights, int8_graph, int8_graph_weights, shipped_graph

    # a CPU with VNNI (devices.auto_precision: int8 there; float on one without)
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    main(["models", "--json"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"accurate", "published", "fast", "lite0", "accurate-float", "fast-float"}
    assert rows["accurate"]["default"]
    # on a CPU with VNNI a shipped name runs its int8 graphs, NAME-float the float ones
    accurate = [int8_graph("accurate", True), int8_graph("accurate", False), int8_graph_weights("accurate")]
    floats = [shipped_graph("accurate", True), shipped_graph("accurate", False), graph_weights("accurate")]
    assert rows["accurate"]["file"] == str(accurate[0]) and rows["accurate-float"]["file"] == str(floats[0])
    assert rows["accurate"]["bytes"] == sum(f.stat().st_size for f in accurate)
    assert rows["accurate-float"]["bytes"] == sum(f.stat().st_size for f in floats)
    # published travels as its PyTorch file only (source tree): no graphs, so "not in this installation" as graphs
    assert rows["published"]["bytes"] is None and rows["published"]["torch_file"].endswith("posecal_published.pt")
    main(["models"])
    text = capsys.readouterr().out
    assert f"{accurate[0]} ({rows['accurate']['bytes'] / 1e6:.1f} MB; its int8 graphs run on this CPU); PyTorch file " \
        in text
    assert rows["accurate"]["precision"] == "int8" and rows["accurate-float"]["precision"] == "float"


def test_posecal_models_time_measures_each_shipped_graph_on_this_cpu(capsys, monkeypatch):
    """--time: ms per crop of each shipped model, with and without the flip test, measured here (the flip test runs
    the network twice, so it costs more; fast's Lightning less than accurate's Thunder)."""
    import re

    from posecal.cli.main import main
    from posecal.inference import crop_cost

    seen = []
    measure = crop_cost.ms_per_crop
    monkeypatch.setattr(crop_cost, "ms_per_crop", lambda name, flip, threads: seen.append((name, flip)) or
                        measure(name, flip, threads, runs=3))
    main(["models", "--time", "--threads", "1"])
    text = capsys.readouterr().out
    assert seen == [("accurate", True), ("accurate", False), ("fast", True), ("fast", False)]
    ms = {name: (float(a), float(b)) for name, a, b in
          re.findall(r"(\w+): ([\d.]+) with the flip test \(predict, eval\), ([\d.]+) without", text)}
    assert set(ms) == {"accurate", "fast"} and "(1 thread(s)" in text
    assert all(flip > plain > 0 for flip, plain in ms.values())
    assert ms["fast"][1] < ms["accurate"][1]
