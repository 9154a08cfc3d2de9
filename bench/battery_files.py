"""Bad-input battery, predict's files: bad images among good ones, outputs, options (python bench/battery_files.py).

Bad image/video inputs among good ones, output paths, option numbers, boxes/model/detector files of
`posecal predict`. Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import sys

from battery_fixtures import GREY_SOURCE, MODEL, OUT, P
from battery_judges import has_files, predictions, refused, skipped, works
from battery_runner import Case, Run, cli, main, predict, with_setup


def mixed_with(bad: str):
    return Case(f"predict-{bad.replace('.', '-')}-among-good", predict(P("good.jpg"), P(bad), P("good2.jpg")),
                skipped(bad, has_files("good.jpg", "good2.jpg")))


def exif_check(r: Run) -> str | None:
    res = predictions(r)
    if not res:
        return "no results"
    bbox = [round(v) for v in res[0]["bbox"]]
    return None if bbox == [0, 0, 120, 160] else f"whole-image box {bbox}: not the viewer's 120x160 (stored 160x120)"


def render_collision(r: Run) -> str | None:
    pngs = sorted(p.name for p in (r.cwd / "r").rglob("*.png"))
    return None if len(pngs) == 2 else f"{len(pngs)} overlay(s) {pngs} for 2 inputs"


def detector_found(r: Run) -> str | None:
    res = predictions(r)
    return None if res else "no person found"


CASES = [
    # --- image files in predict: the bad one is reported, the good ones' results written
    *(mixed_with(b) for b in ("missing.jpg", "corrupt.jpg", "truncated.jpg", "truncated.png", "empty.jpg",
                              "huge.png", "text.png")),
    Case("predict-folder-of-good-and-bad", predict(P("mixed")),
         skipped("huge.png", lambda r: has_files("good.jpg")(r) or next(
             (f"nothing says what happened to {b}" for b in ("corrupt.jpg", "truncated.jpg", "empty.jpg")
              if b not in r.err), None))),
    Case("predict-non-utf8-file-name", predict(P("good.jpg"), lambda fx, cwd: fx.nonutf8),
         works(lambda r: (has_files("good.jpg")(r) or
                          (None if len(predictions(r)) == 2 else "no result for the non-UTF-8 name")))),
    Case("predict-png-named-jpg", predict(P("png_named.jpg")), works(has_files("png_named.jpg"))),
    Case("predict-16bit-gray-png", predict(P("gray16.png")), works(has_files("gray16.png"))),
    Case("predict-exif-orientation-6", predict(P("exif6.jpg")), works(exif_check)),
    # a grey photo keeps its person (issue 22; needs ../shared/data)
    *([Case("predict-grey-jpeg-photo", predict(P("grey_photo.jpg")), works(detector_found))]
      if GREY_SOURCE.is_file() else []),
    Case("predict-only-bad-inputs", predict(P("corrupt.jpg"), P("missing.jpg")),
         refused("corrupt.jpg", "missing.jpg", after=("corrupt.jpg", "missing.jpg"))),
    # --- outputs
    Case("predict-out-is-a-folder", with_setup(lambda fx, c: (c / "p.json").mkdir(), predict(P("good.jpg"))),
         refused("--out", "p.json")),
    Case("predict-out-parent-is-a-file", cli("predict", P("good.jpg"), MODEL, "--out", P("a_file/p.json"),
                                             "--no-progress"), refused("a_file")),
    Case("predict-render-is-a-file", predict(P("good.jpg"), "--render", P("a_file")), refused("--render", "a_file")),
    Case("predict-render-parent-is-a-file", predict(P("good.jpg"), "--render", P("a_file/r")),
         refused("--render", "a_file")),
    Case("predict-render-name-collision", predict(P("collide"), "--render", "r"), works(render_collision)),
    # --- CLI numbers
    Case("predict-threads-0", cli("predict", P("good.jpg"), MODEL, "--out", "p.json", "--no-progress",
                                  "--threads", "0"), refused("--threads")),
    Case("predict-batch-size-minus-1", predict(P("good.jpg"), "--batch-size", "-1"), refused("--batch-size")),
    Case("predict-detector-threshold-1.5", predict(P("good.jpg"), "--detector", P("fake_yolox.onnx"),
                                                   "--detector-threshold", "1.5"), refused("--detector-threshold")),
    Case("predict-detector-sanity", predict(P("good.jpg"), "--detector", P("fake_yolox.onnx")),
         works(detector_found)),
    Case("predict-threads-huge", cli("predict", P("good.jpg"), MODEL, "--out", "p.json", "--no-progress",
                                     "--threads", "99999999999"), refused("--threads")),
    Case("predict-every-0", predict(P("clip.avi"), "--every", "0"), refused("--every")),
    # --- boxes, model and detector files
    Case("predict-boxes-missing", predict(P("good.jpg"), "--boxes", P("nope.json")), refused("nope.json")),
    Case("predict-boxes-malformed", predict(P("good.jpg"), "--boxes", P("boxes_bad.json")),
         refused("boxes_bad.json")),
    Case("predict-model-corrupt", cli("predict", P("good.jpg"), "--model", P("corrupt.pt"), *OUT),
         refused("corrupt.pt")),
    Case("predict-model-missing", cli("predict", P("good.jpg"), "--model", P("nope.pt"), *OUT), refused("nope.pt")),
    Case("predict-detector-corrupt", predict(P("good.jpg"), "--detector", P("corrupt.onnx")),
         refused("corrupt.onnx")),
]


if __name__ == "__main__":
    sys.exit(main({"files": CASES}, __doc__.split("\n\n")[0]))
