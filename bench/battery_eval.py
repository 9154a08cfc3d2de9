"""Bad-input battery, eval: bad images, files and options of `posecal eval` (python bench/battery_eval.py).

Missing/corrupt images in the COCO set, bad annotation/boxes/results/model files, malformed fields in them (a null
bbox, numbers as text) and options of `posecal eval`.
Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from battery_fixtures import MODEL, P, huge_header_png
from battery_judges import refused, skipped, works
from battery_runner import Case, Run, cli, main


def eval_metrics(n: int | None = None):
    def check(r: Run) -> str | None:
        m = r.cwd / "ev" / "metrics.json"
        if not m.is_file():
            return "metrics.json not written"
        got = json.loads(m.read_text())["num_instances"]
        return None if n is None or got == n else f"metrics over {got} persons, expected {n}"
    return check


def eval_case(name, replace, bad, n=3):
    def run(fx, cwd):
        ann, img = fx.coco_copy(cwd, replace(fx) if callable(replace) else replace)
        return cli("eval", "--annotations", ann, "--images", img, "--out", "ev", MODEL, "--no-progress",
                   "--threads", "1")(fx, cwd)
    return Case(name, run, skipped(bad, eval_metrics(n)))


def edited_json(name: str, source, edit):
    """A case-folder copy of a JSON file (`source(fx)`: its data) with `edit(data)` applied; the path to pass."""
    def make(fx, cwd):
        data = source(fx)
        edit(data)
        (cwd / name).write_text(json.dumps(data))
        return cwd / name
    return make


def coco_data(fx):
    return json.loads(Path(fx.ann).read_text())


def results_data(fx):
    """COCO keypoint results of the fixture set: its GT poses, as an estimator's."""
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
            for a in coco_data(fx)["annotations"]]


def detections_data(fx):
    return [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
            for a in coco_data(fx)["annotations"]]


def set_field(part, index, field, value):
    def edit(data):
        (data[part] if part else data)[index][field] = value
    return edit


def malformed_ann(name, part, index, field, value, bad):
    """eval on the fixture set with one field of one entry malformed: refused (issue 32: a metric on exactly the
    file given or not at all), naming the entry and field; --skip-invalid scores the rest (battery_pipeline.py)."""
    def run(fx, cwd):
        ann = edited_json("ann.json", coco_data, set_field(part, index, field, value))(fx, cwd)
        return cli("eval", "--annotations", ann, "--images", fx.images, "--out", "ev", MODEL, "--no-progress",
                   "--threads", "1")(fx, cwd)
    return Case(name, run, refused(*bad.split(": ")))


def nobody_scored(r: Run) -> str | None:
    m, res = r.cwd / "ev" / "metrics.json", r.cwd / "ev" / "results.json"
    if not m.is_file() or not res.is_file():
        return "metrics.json or results.json not written"
    metrics = json.loads(m.read_text())
    return None if json.loads(res.read_text()) == [] and metrics["ap"][metrics["score_mode"]] == 0 else \
        f"AP {metrics['ap']}"


def eval_args(*args):
    def run(fx, cwd):
        return cli("eval", "--annotations", fx.ann, "--images", fx.images, MODEL, "--no-progress",
                   "--threads", "1", *args)(fx, cwd)
    return run


CASES = [
    # --- eval
    eval_case("eval-missing-image", {"img1.jpg": None}, "img1.jpg"),
    eval_case("eval-corrupt-image", {"img1.jpg": b"\x00garbage" * 100}, "img1.jpg"),
    eval_case("eval-truncated-image", lambda fx: {"img1.jpg": (fx.images / "img1.jpg").read_bytes()[:600]},
              "img1.jpg"),
    eval_case("eval-huge-header-image", {"img1.jpg": huge_header_png()}, "img1.jpg"),
    Case("eval-out-is-a-file", eval_args("--out", P("a_file")), refused("a_file")),
    Case("eval-annotations-missing", cli("eval", "--annotations", "nope.json", "--images", ".", "--out", "ev",
                                         MODEL), refused("nope.json")),
    Case("eval-annotations-malformed", cli("eval", "--annotations", P("boxes_bad.json"), "--images", ".",
                                           "--out", "ev", MODEL), refused("boxes_bad.json")),
    Case("eval-boxes-malformed", eval_args("--out", "ev", "--boxes", P("boxes_bad.json")), refused("boxes_bad.json")),
    Case("eval-batch-size-0", eval_args("--out", "ev", "--batch-size", "0"), refused("--batch-size")),
    # --- malformed fields (issue 22; refused since issue 32): a line naming file, entry and field
    malformed_ann("eval-annotation-bbox-null", "annotations", 1, "bbox", None, "annotations[1] (id 101): bbox"),
    malformed_ann("eval-annotation-keypoints-as-strings", "annotations", 2, "keypoints",
                  [str(v) for v in [60.0, 30.0, 2] * 17], "annotations[2] (id 102): keypoints"),
    malformed_ann("eval-annotation-image-id-as-string", "annotations", 3, "image_id", "4",
                  "annotations[3] (id 103): image_id"),
    Case("eval-boxes-score-as-string", eval_args("--out", "ev", "--boxes", edited_json(
        "dets.json", detections_data, set_field(None, 1, "score", "0.9"))),
         refused("dets.json", "entry 1 (image_id 2)", "score")),
    Case("eval-results-score-as-string", cli("eval", "--results", edited_json(
        "r.json", results_data, set_field(None, 0, "score", "0.9")), "--annotations", lambda fx, c: fx.ann,
        "--out", "ev"), refused("r.json", "entry 0 (image_id 1)", "score")),
    Case("eval-results-keypoints-null-everywhere", cli("eval", "--results", edited_json(
        "r.json", results_data, lambda d: [e.update(keypoints=None) for e in d]), "--annotations",
        lambda fx, c: fx.ann, "--out", "ev"), refused("r.json", "keypoints")),
    # issue 22: implausible detection boxes, and messages that name the fix
    Case("eval-boxes-nan-and-sub-pixel", eval_args("--out", "ev", "--boxes", P("dets_nan_tiny.json")),
         refused("dets_nan_tiny.json", "entry 1", "entry 2", after=("dets_nan_tiny.json",))),
    Case("eval-boxes-unknown-image-id", eval_args("--out", "ev", "--boxes", P("dets_unknown_id.json")),
         refused("dets_unknown_id.json", "ann.json")),
    # issue 32: a detector that found nobody is an empty result (AP 0), not an error
    Case("eval-boxes-empty-file", eval_args("--out", "ev", "--boxes", P("dets_empty.json")), works(nobody_scored)),
    Case("eval-model-is-training-checkpoint", lambda fx, cwd: cli(
        "eval", "--annotations", fx.ann, "--images", fx.images, "--out", "ev", "--no-progress", "--model",
        fx.training_checkpoint(cwd))(fx, cwd), refused("last.pt", "posecal pack")),
    Case("eval-images-folder-missing", cli("eval", "--annotations", lambda fx, c: fx.ann, "--images", "nope_images",
                                           "--out", "ev", MODEL), refused("nope_images")),
    Case("eval-model-corrupt", cli("eval", "--annotations", lambda fx, c: fx.ann, "--images",
                                   lambda fx, c: fx.images, "--out", "ev", "--model", P("corrupt.pt")),
         refused("corrupt.pt")),
]


if __name__ == "__main__":
    sys.exit(main({"eval": CASES}, __doc__.split("\n\n")[0]))
