"""Bad-input battery, pipelines (issue 32): strict evaluation, empty inputs, small ones (python bench/battery_pipeline.py).

What a script that puts posecal in a pipeline meets: a malformed ground-truth, detections or results file must
not be scored as a subset without a word (refused, exit 2, each entry named; `--skip-invalid` scores the rest and
records them), a detector that found nobody must give an empty result instead of an error, and the small ones:
array-like images in the API, a MoveNet config asking for an unused loss, an unbounded worker count. Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import json
import sys

from battery_eval import coco_data, detections_data, edited_json, results_data, set_field
from battery_fixtures import IMG, MODEL, OUT, P
from battery_judges import api_result, predictions, refused, skipped, works
from battery_runner import Case, Run, api, cli, main, predict, with_setup
from battery_train import train_case


def metrics(r: Run) -> dict | None:
    m = r.cwd / "ev" / "metrics.json"
    return json.loads(m.read_text()) if m.is_file() else None


def skipped_recorded(n_persons: int, key: str = "num_instances"):
    """Check: metrics over n_persons, and the skipped entry listed in metrics.json with its reason."""
    def check(r: Run) -> str | None:
        m = metrics(r)
        if m is None:
            return "metrics.json not written"
        if m.get(key) != n_persons:
            return f"metrics over {m.get(key)}, expected {n_persons}"
        entries = (m.get("invalid_entries") or {}).get("entries")
        return None if entries else "the skipped entry is not recorded in metrics.json"
    return check


def gt_eval(name, edit, bad: str, *extra):
    """eval of the fixture set with its ground truth edited: refused by default, naming `bad`."""
    def run(fx, cwd):
        ann = edited_json("ann.json", coco_data, edit)(fx, cwd)
        return cli("eval", "--annotations", ann, "--images", fx.images, "--out", "ev", MODEL, "--no-progress",
                   "--threads", "1", *extra)(fx, cwd)
    return run


def set_keypoint(index, k, value):
    def edit(data):
        data["annotations"][index]["keypoints"][k] = value
    return edit


def drop_field(part, index, field):
    def edit(data):
        del data[part][index][field]
    return edit


def duplicate_id(part):
    def edit(data):
        data[part][2]["id"] = data[part][1]["id"]
    return edit


def results_eval(edit, *extra):
    def run(fx, cwd):
        res = edited_json("r.json", results_data, edit)(fx, cwd)
        return cli("eval", "--results", res, "--annotations", fx.ann, "--out", "ev", *extra)(fx, cwd)
    return run


def dets_eval(edit, *extra):
    def run(fx, cwd):
        dets = edited_json("dets.json", detections_data, edit)(fx, cwd)
        return cli("eval", "--annotations", fx.ann, "--images", fx.images, "--out", "ev", MODEL, "--no-progress",
                   "--threads", "1", "--boxes", dets, *extra)(fx, cwd)
    return run


def far_outside_without_sizes(fx, cwd):
    """The fixture set without image sizes, and detections with one box far outside its 160x120 image."""
    data = coco_data(fx)
    for im in data["images"]:
        im.pop("width"), im.pop("height")
    (cwd / "ann.json").write_text(json.dumps(data))
    dets = detections_data(fx)
    dets[1]["bbox"] = [5000.0, 5000.0, 60.0, 100.0]
    (cwd / "dets.json").write_text(json.dumps(dets))
    return cli("eval", "--annotations", "ann.json", "--images", fx.images, "--out", "ev", MODEL, "--no-progress",
               "--threads", "1", "--boxes", "dets.json")(fx, cwd)


def empty_result(out: str = "p.json", said: str = ""):
    """Check: the results file written and empty, and (when `said`) a line saying why."""
    def check(r: Run) -> str | None:
        res = predictions(r, out)
        if res is None:
            return f"{out} not written"
        if res:
            return f"{len(res)} results, expected none"
        return None if not said or said in r.err else f"no line saying '{said}'"
    return check


def api_len(n: int):
    return lambda r: None if api_result(r) == n else f"result {api_result(r)}, expected {n}"


CASES = [
    # --- strict eval: malformed ground truth is refused (issue 32), each entry named; nothing written
    Case("eval-gt-keypoints-wrong-length", gt_eval("", set_field("annotations", 1, "keypoints", [1.0, 2.0, 2] * 16),
                                                   ""), refused("annotations[1] (id 101)", "keypoints", "--skip-invalid")),
    Case("eval-gt-keypoint-nan", gt_eval("", set_keypoint(1, 0, float("nan")), ""),
         refused("annotations[1] (id 101)", "keypoints", "--skip-invalid")),
    Case("eval-gt-negative-box", gt_eval("", set_field("annotations", 1, "bbox", [10, 10, -40, 80]), ""),
         refused("annotations[1] (id 101)", "bbox")),
    Case("eval-gt-unknown-image-id", gt_eval("", set_field("annotations", 3, "image_id", 77), ""),
         refused("annotations[3] (id 103)", "image_id")),
    Case("eval-gt-no-keypoints-key", gt_eval("", drop_field("annotations", 2, "keypoints"), ""),
         refused("annotations[2] (id 102)", "keypoints")),
    Case("eval-gt-duplicate-annotation-id", gt_eval("", duplicate_id("annotations"), ""),
         refused("annotations[2]", "annotations[1]", "id")),
    Case("eval-gt-duplicate-image-id", gt_eval("", duplicate_id("images"), ""), refused("images[2]", "images[1]", after=("ann.json",))),
    # ... and scored on the rest only when told, the skipped entry recorded
    Case("eval-gt-bad-entry-skip-invalid", gt_eval("", set_field("annotations", 1, "bbox", None), "", "--skip-invalid"),
         skipped("annotations[1] (id 101): bbox", skipped_recorded(3))),
    # --- strict eval: detections and results files
    Case("eval-dets-score-as-string-skip-invalid", dets_eval(set_field(None, 1, "score", "0.9"), "--skip-invalid"),
         skipped("entry 1 (image_id 2): score", skipped_recorded(3))),
    Case("eval-results-score-as-string-skip-invalid", results_eval(set_field(None, 0, "score", "0.9"),
                                                                   "--skip-invalid"),
         skipped("entry 0 (image_id 1): score", skipped_recorded(3, "num_results"))),
    Case("eval-dets-far-outside-image-of-unknown-size", far_outside_without_sizes,
         refused("dets.json", "entry 1 (image_id 2)", "outside")),
    # --- empty is valid: nobody found is an empty result, written, with a line
    Case("predict-boxes-empty-list", with_setup(lambda fx, c: (c / "b.json").write_text("[]"),
                                                predict(P("good.jpg"), "--boxes", "b.json")),
         works(empty_result(said="nobody"))),
    Case("predict-boxes-empty-object", with_setup(lambda fx, c: (c / "b.json").write_text("{}"),
                                                  predict(P("good.jpg"), "--boxes", "b.json")),
         works(empty_result(said="nobody"))),
    Case("predict-image-without-people", with_setup(lambda fx, c: _blank(c), cli("predict", "blank.jpg", MODEL, *OUT)),
         works(empty_result())),
    Case("track-video-without-people", with_setup(lambda fx, c: _blank_video(c),
                                                  cli("track", "blank.avi", "--out", "t.json", "--no-progress",
                                                      "--threads", "1")),
         works(empty_result("t.json"))),
    # --- the API takes what numpy.asarray makes a picture of
    Case("api-image-as-nested-list-of-pixels", api(IMG + "result = len(p(img.tolist(), boxes=[[60, 10, 40, 100]]))"),
         works(api_len(1))),
    Case("api-pil-image", api(IMG + "from PIL import Image\nresult = len(p(Image.fromarray(img), "
                                    "boxes=[[60, 10, 40, 100]]))"), works(api_len(1))),
    Case("api-image-as-bytes", api(IMG + "result = len(p(img.tobytes()))"), refused("image")),
    Case("api-image-ragged-lists", api(IMG + "result = len(p([[1, 2, 3], [4, 5]]))"), refused("image")),
    # --- training options that were silently unused or unbounded
    train_case("train-lambda-integral-with-movenet", "lambda_integral: 0.1\n", refused("lambda_integral"),
               model="{backbone: movenet_lightning, input_wh: [192, 192], imagenet: false}"),
    train_case("train-num-workers-65", "num_workers: 65\n", refused("num_workers")),   # 100000 forked that many loaders before
]


def _blank(cwd):
    import cv2
    import numpy as np

    cv2.imwrite(str(cwd / "blank.jpg"), np.full((240, 320, 3), 90, np.uint8))


def _blank_video(cwd, frames: int = 8):
    import cv2
    import numpy as np

    out = cv2.VideoWriter(str(cwd / "blank.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(frames):
        out.write(np.full((240, 320, 3), 90, np.uint8))
    out.release()


if __name__ == "__main__":
    sys.exit(main({"pipeline": CASES}, __doc__.split("\n\n")[0]))
