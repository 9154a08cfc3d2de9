"""Bad-input battery (issue 12): tries ~60 kinds of bad input on `posecal predict/eval/train/export/demo/pack`
and the Python API, each in its own subprocess, and says how each was handled.

    PYTHONPATH=/path/to/posecal OMP_NUM_THREADS=1 nice -n 19 python bench/bad_input_battery.py [--only NAME] [-v]

It runs whichever posecal is first on PYTHONPATH and uses only the public surface that older versions have too
(`posecal.cli.main.main(argv)` and `posecal.inference.predictor.Predictor`), so the same script measures before and after a
change. Fixtures (tiny drawn images, a 4-image COCO set, a fake YOLOX-style detector, broken files) are made
in a temp folder. Each case gets one class:

- good:      a user mistake refused with exit code 2 (API: PosecalInputError) and one line naming the file or
             field, before any inference; or a bad file/box skipped with a line naming it while the others'
             outputs are written; or a trap (e.g. `lr: 1e-3`, a file name that is not UTF-8) that just works;
- traceback: a Python traceback for a user mistake;
- crash:     the process was killed by a signal (e.g. a segfault in OpenCV) or hung;
- silent:    wrong or lost work without a word: exit 0 with the bad input misread or ignored, outputs lost, a
             temp file left behind, or a refusal that came only after inference had run;
- vague:     refused without a traceback, but not in one line naming the file or field.

Left out: permission-denied files and read-only folders, since these runs are as root, for whom mode bits do not
stop reads or writes (posecal's write probe handles that case; the tests cover it where not root).
"""
from __future__ import annotations

import sys

import battery_api
import battery_boxes
import battery_eval
import battery_export
import battery_files
import battery_train
from battery_runner import main

CASES = [*battery_files.CASES, *battery_boxes.CASES, *battery_eval.CASES, *battery_train.CASES,
         *battery_export.CASES, *battery_api.CASES]


if __name__ == "__main__":
    sys.exit(main(CASES, __doc__.split("\n\n")[0]))
