"""Bad-input battery, Python API: bad images, files and items of Predictor (python bench/battery_api.py).

Bad images (NaN pixels, wrong shape or type), missing model/image files, a bad item in predict_many, non-UTF-8
and EXIF-rotated files, the Predictor's numbers out of range. Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import sys

from battery_fixtures import GREY_SOURCE, IMG
from battery_judges import api_result, either, refused, works
from battery_runner import Case, Run, api, main


def api_box(r: Run, want) -> str | None:
    res = api_result(r)
    if res is None:
        return "no result"
    return None if [round(v) for v in res] == want else f"box {res}, expected {want}"


CASES = [
    # --- Python API
    Case("api-nan-pixels", api(IMG + "f = img.astype(np.float32) / 255; f[5:10, 5:10] = np.nan\n"
                                     "result = len(p(f))"), refused("non-finite")),
    Case("api-wrong-image-shape", api(IMG + "result = len(p(np.zeros((120, 160, 2), np.uint8)))"), refused("image")),
    Case("api-image-as-nested-list", api(IMG + "result = [round(float(v)) for v in p(img.tolist(), boxes=[[0, 0, 160, 120]])[0].box]"),
         either(refused("image"), works(lambda r: api_box(r, [0, 0, 160, 120])))),
    Case("api-image-is-a-dict", api(IMG + "result = len(p({'image': img}))"), refused("image")),
    Case("api-missing-model-path", api("p = Predictor('nope/model.pt')\nresult = 0"), refused("nope/model.pt")),
    Case("api-missing-image-file", api(IMG + "result = len(p(D + '/nope.jpg'))"), refused("nope.jpg")),
    Case("api-predict-many-bad-item", api(IMG + "result = [len(x) for x in p.predict_many([(img, None, None), "
                                                "(D + '/corrupt.jpg', None, None)])]"), refused("corrupt.jpg")),
    Case("api-non-utf8-path", api(IMG + "import os\nresult = len(p(os.fsdecode(os.fsencode(D) + b'/caf\\xe9.jpg')))"),
         works(lambda r: None if api_result(r) == 1 else f"result {api_result(r)}")),
    # --- the Predictor's numbers (issue 22): refused by name with the allowed range
    Case("api-threads-minus-1", api("p = Predictor(MODEL, threads=-1)\nresult = 0"), refused("threads")),
    Case("api-threads-2-to-the-40", api("p = Predictor(MODEL, threads=2**40)\nresult = 0"), refused("threads")),
    Case("api-batch-size-0", api(IMG.replace("Predictor(MODEL)", "Predictor(MODEL, batch_size=0)")
                                 + "result = len(p(img))"), refused("batch_size")),
    Case("api-detector-threshold-1.5", api("p = Predictor(MODEL, detector_threshold=1.5)\nresult = 0"),
         refused("detector_threshold")),
    Case("api-min-pose-quality-nan", api("p = Predictor(MODEL, detector=None, min_pose_quality=float('nan'))\n"
                                         "result = 0"), refused("min_pose_quality")),
    Case("api-exif-orientation-6", api(IMG + "result = [float(v) for v in p(D + '/exif6.jpg')[0].box]"),
         works(lambda r: api_box(r, [0, 0, 120, 160]))),
    # a grey H x W array of a photo: as many people as its colour version (issue 22; needs ../shared/data)
    *([Case("api-grey-array-keeps-people", api(
        "import cv2\np = Predictor(MODEL)\nbgr = cv2.imread(" + repr(str(GREY_SOURCE)) + ")\n"
        "result = [len(p(bgr[:, :, ::-1].copy())), len(p(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))]"),
        works(lambda r: None if (api_result(r) or [0])[0] >= 1 and len(set(api_result(r))) == 1
              else f"people in colour, grey: {api_result(r)}"))] if GREY_SOURCE.is_file() else []),
]


if __name__ == "__main__":
    sys.exit(main({"api": CASES}, __doc__.split("\n\n")[0]))
