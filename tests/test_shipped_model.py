"""The shipped default model: loads without ../shared, and scores as its model card says on real val crops."""
import json

import numpy as np

from posecal.models.checkpoint import DEFAULT_MODEL, load_model
from posecal.evaluation.evaluate import EvalConfig, evaluate

from conftest import COCO_CROPS, needs_shared


def test_default_model_is_shipped_small_and_loads():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 25 * 2 ** 20
    model, cfg, meta = load_model()
    assert cfg.input_wh == (144, 192) and "val" in meta


@needs_shared
def test_default_model_on_real_val_subset(tmp_path):
    ann = json.loads((COCO_CROPS / "annotations" / "val.json").read_text())
    keep = {im["id"] for im in ann["images"][:120]}
    ann["images"] = [im for im in ann["images"] if im["id"] in keep]
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
    sub = tmp_path / "val_subset.json"
    sub.write_text(json.dumps(ann))
    m = evaluate(EvalConfig(annotations=str(sub), images=str(COCO_CROPS / "images"), out=str(tmp_path / "o"),
                            progress=False, plots=False)).metrics
    assert m["num_instances"] == len(ann["annotations"])
    # A trained model, not an untrained one (which scores ~0); the full-val figure is in MODEL_CARD.md.
    assert m["ap"]["heatmap"] > 20
    assert np.isfinite(m["pose_score_pearson"]["heatmap"])
    # The product's promise: the learned pose quality tracks the true OKS (full val: 0.725, MODEL_CARD.md).
    assert m["pose_score_pearson"]["oks"] > 0.5 and m["visibility"]["binary"]["f1"] > 0.75
