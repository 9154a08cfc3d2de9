"""Bad-input battery, boxes: wrong box values in predict --boxes and the API (python bench/battery_boxes.py).

Box values that are wrong (negative size, normalised, wrong shape, bad scores) given to `posecal predict --boxes`
and to the API, and malformed fields (a null bbox, a score as text) in a detections file. Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import json
import re
import sys

from battery_fixtures import IMG, P
from battery_judges import has_files, predictions, refused, skipped, works
from battery_runner import Case, Run, api, main, predict, with_setup


def no_subpixel_boxes(r: Run) -> str | None:
    """Both images posed, and no pose on a box under a pixel (issue 22)."""
    lost = has_files("good.jpg", "good2.jpg")(r)
    if lost:
        return lost
    tiny = [e["bbox"] for e in predictions(r) if min(e["bbox"][2:]) < 1]
    return f"posed on sub-pixel box(es) {tiny}" if tiny else None


CASES = [
    # --- boxes files' values in predict
    Case("predict-boxes-negative-size", predict(P("good.jpg"), P("good2.jpg"), "--boxes", P("boxes_neg.json")),
         skipped("good.jpg", has_files("good2.jpg"))),
    Case("predict-boxes-normalised", predict(P("good.jpg"), "--boxes", P("boxes_norm.json")),
         skipped("normalised", lambda r: None)),   # normalised boxes are under a pixel: skipped since issue 22
    Case("predict-boxes-sub-pixel", predict(P("good.jpg"), P("good2.jpg"), "--boxes", P("boxes_tiny.json")),
         skipped("boxes_tiny.json", no_subpixel_boxes)),
    # --- malformed fields of a COCO detections boxes file (issue 22): the entry skipped by name, the rest used
    Case("predict-boxes-score-as-string", with_setup(lambda fx, c: (c / "dets.json").write_text(json.dumps(
        [{"file_name": "good.jpg", "bbox": [40, 5, 80, 110], "score": "0.9"},
         {"file_name": "good2.jpg", "bbox": [40, 5, 80, 110], "score": 0.8}])),
        predict(P("good.jpg"), P("good2.jpg"), "--boxes", "dets.json")),
         skipped("entry 0: score", has_files("good2.jpg"))),
    Case("predict-boxes-bbox-null", with_setup(lambda fx, c: (c / "dets.json").write_text(json.dumps(
        [{"file_name": "good.jpg", "bbox": None, "score": 0.9},
         {"file_name": "good2.jpg", "bbox": [40, 5, 80, 110], "score": 0.8}])),
        predict(P("good.jpg"), P("good2.jpg"), "--boxes", "dets.json")),
         skipped("entry 0: bbox", has_files("good2.jpg"))),
    # --- boxes in the Python API
    Case("api-flat-list-of-8-numbers", api(IMG + "result = len(p(img, boxes=[10, 10, 50, 90, 60, 10, 50, 90]))"),
         refused("boxes")),
    Case("api-nx3-boxes", api(IMG + "result = len(p(img, boxes=[[10, 10, 50], [60, 10, 50], [5, 5, 40], [1, 2, 3]]))"),
         refused("boxes")),
    Case("api-box-scores-not-matching", api(IMG + "result = len(p(img, boxes=[[10, 10, 50, 90], [60, 10, 50, 90]], "
                                                  "box_scores=[0.9, 0.8, 0.7]))"), refused("box_scores")),
    Case("api-box-score-1.5", api(IMG + "result = len(p(img, boxes=[[10, 10, 50, 90, 1.5]]))"), refused("score")),
    Case("api-box-zero-width", api(IMG + "result = len(p(img, boxes=[[10, 10, 0, 90]]))"), refused("width")),
    Case("api-normalised-boxes-warned", api(IMG + "result = len(p(img, boxes=[[0.2, 0.1, 0.5, 0.8]]))"),
         works(lambda r: None if re.search(r"UserWarning: .*normalised", r.err) else "no warning")),
]


if __name__ == "__main__":
    sys.exit(main({"boxes": CASES}, __doc__.split("\n\n")[0]))
