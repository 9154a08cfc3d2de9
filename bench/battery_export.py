"""Bad-input battery, export/pack/demo: bad model files and output paths (python bench/battery_export.py).

Corrupt or missing model files and bad output paths of `posecal export`, `pack` and `demo`.
Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import sys

from battery_fixtures import MODEL, P
from battery_judges import refused
from battery_runner import Case, cli, main, with_setup


CASES = [
    # --- export, pack, demo
    Case("export-model-corrupt", cli("export", "--model", P("corrupt.pt"), "--out", "m.onnx"), refused("corrupt.pt")),
    Case("export-model-missing", cli("export", "--model", P("nope.pt"), "--out", "m.onnx"), refused("nope.pt")),
    Case("export-out-is-a-folder", with_setup(lambda fx, c: (c / "m.onnx").mkdir(),
                                              cli("export", MODEL, "--out", "m.onnx")), refused("m.onnx")),
    Case("export-out-parent-is-a-file", cli("export", MODEL, "--out", P("a_file/m.onnx")), refused("a_file")),
    Case("pack-model-corrupt", cli("pack", P("corrupt.pt"), "packed.pt"), refused("corrupt.pt")),
    Case("demo-out-is-a-file", cli("demo", MODEL, "--out", P("a_file")), refused("a_file")),
    Case("demo-model-corrupt", cli("demo", "--model", P("corrupt.pt"), "--out", "demo"), refused("corrupt.pt")),
]


if __name__ == "__main__":
    sys.exit(main({"export": CASES}, __doc__.split("\n\n")[0]))
