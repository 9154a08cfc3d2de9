"""The shipped models, by name: each loads without ../shared and scores as its model card says on real val crops."""

import numpy as np
import pytest
import torch

from posecal.errors import PosecalInputError
from posecal.evaluation.evaluate import EvalConfig, evaluate
from posecal.models.checkpoint import DEFAULT_MODEL, SHIPPED_MODELS, load_model, model_file

from conftest import COCO_CROPS, needs_shared, val_subset

# name -> (backbone, input w x h, val-subset AP floor, pose-score Pearson floor); full-val figures in MODEL_CARD.md
EXPECTED = {"accurate": ("movenet_thunder", (256, 256), 40, 0.6),
            "published": ("movenet_thunder", (256, 256), 40, 0.6),
            "fast": ("efficientnet_lite0", (144, 192), 20, 0.5)}
SIZE_LIMIT_MIB = {"accurate": 25, "published": 25, "fast": 25}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_model_is_small_and_loads_by_name(name):
    path = SHIPPED_MODELS[name]
    assert path.is_file() and path.stat().st_size < SIZE_LIMIT_MIB[name] * 2 ** 20 and model_file(name) == path
    model, cfg, meta = load_model(name)
    assert (cfg.backbone, cfg.input_wh) == EXPECTED[name][:2] and cfg.quality_heads and "calibration" in meta
    assert model_file(None) == DEFAULT_MODEL == SHIPPED_MODELS["accurate"]


def test_best_names_the_accurate_model_and_track_keeps_the_published_network():
    """`best` (the fused model before the fine-tune) is the accurate model's file now; accurate's MoveNet is the
    fine-tuned one, published's is Google's, and each carries a trust model trained for its own network (issue 38)."""
    from posecal.tracking.job import TrackConfig

    assert model_file("best") == SHIPPED_MODELS["accurate"] and TrackConfig(videos=[]).model == "published"
    tuned, _, meta = load_model("accurate")
    google, _, _ = load_model("published")
    assert "fine-tuned" in meta["pose_network"]
    a, b = tuned.state_dict(), google.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("trust."))
    assert not torch.equal(a["backbone.heatmap_head.out.weight"], b["backbone.heatmap_head.out.weight"])


def test_unknown_shipped_name_fails_in_one_line_naming_the_shipped_models():
    with pytest.raises(PosecalInputError, match="'precise': no shipped model of that name.*accurate.*fast"):
        load_model("precise")


@needs_shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_model_on_real_val_subset(tmp_path, name):
    sub, ann = val_subset(tmp_path, 120)
    m = evaluate(EvalConfig(annotations=str(sub), images=str(COCO_CROPS / "images"), out=str(tmp_path / "o"),
                            model=name, progress=False, plots=False)).metrics
    assert m["num_instances"] == len(ann["annotations"])
    _, _, ap_floor, pearson_floor = EXPECTED[name]
    # A trained model, not an untrained one (which scores ~0); the full-val figures are in MODEL_CARD.md.
    assert m["ap"]["oks"] > ap_floor
    assert np.isfinite(m["pose_score_pearson"]["heatmap"])
    # The product's promise: the learned pose quality tracks the true OKS.
    assert m["pose_score_pearson"]["oks"] > pearson_floor and m["visibility"]["binary"]["f1"] > 0.75
