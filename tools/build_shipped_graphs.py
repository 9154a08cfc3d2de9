"""Make the shipped models' ONNX graphs (what the wheel carries) from their PyTorch model files.

    python tools/build_shipped_graphs.py [accurate fast] [--trust-only]

A model with a trust model also gets that trust model alone as a graph (posecal_NAME.trust.onnx, reading the
same weights file), which rates another estimator's keypoints for `posecal calibrate --images`.

Run after a shipped .pt changes (tests/export/test_shipped_graphs.py fails until the graphs match their files again).
Needs PyTorch, onnx and onnxscript (`pip install -e ".[train,dev]"`).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posecal.export.shipped import build_shipped_graphs, build_trust_graph  # noqa: E402
from posecal.models.shipped import DEFAULT_MODEL_NAME, SHIPPED_GRAPHS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SHIPPED_GRAPHS), choices=list(SHIPPED_GRAPHS))
    parser.add_argument("--trust-only", action="store_true", help="only the trust graph (the model's graphs kept)")
    args = parser.parse_args()
    for name in args.names:
        made = [] if args.trust_only else [build_shipped_graphs(name)]
        if name == DEFAULT_MODEL_NAME:   # the trust model `calibrate --images` runs (posecal.evaluation.evidence)
            made.append(build_trust_graph(name))
        for m in made:
            files = ", ".join(f"{f} {n / 1e6:.2f} MB" for f, n in m["bytes"].items())
            print(f"{name}: version {m['version']}; {files}")


if __name__ == "__main__":
    main()
