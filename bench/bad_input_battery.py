"""Bad-input battery (issue 12): how 102 kinds of bad CLI and API input are handled (python bench/bad_input_battery.py).

Tries 102 kinds of bad input on `posecal predict/eval/train/export/demo/pack` and the Python API, each in its
own subprocess, and says how each was handled.

    PYTHONPATH=/path/to/posecal OMP_NUM_THREADS=1 nice -n 19 python bench/bad_input_battery.py [--surface S]
        [--only NAME] [-v]

The cases are grouped by surface, one module each, which also runs alone (`python bench/battery_eval.py`, or
`--surface eval` here): battery_files.py (predict's input, output, boxes, model and detector files and option
numbers), battery_boxes.py (box values, CLI and API), battery_eval.py, battery_train.py, battery_export.py
(export, pack, demo), battery_api.py and battery_pipeline.py (issue 32: strict eval, empty inputs); battery_runner.py runs them, battery_fixtures.py makes their inputs and
battery_judges.py classes their runs.

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
import battery_pipeline
import battery_train
from battery_runner import main

SURFACES = {"files": battery_files.CASES, "boxes": battery_boxes.CASES, "eval": battery_eval.CASES,
            "train": battery_train.CASES, "export": battery_export.CASES, "api": battery_api.CASES,
            "pipeline": battery_pipeline.CASES}


if __name__ == "__main__":
    sys.exit(main(SURFACES, __doc__.split("\n\n")[0]))
