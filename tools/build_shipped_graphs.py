"""Make the shipped models' ONNX graphs (what the wheel carries) from their PyTorch model files.

    python tools/build_shipped_graphs.py [accurate fast]

Run after a shipped .pt changes (tests/export/test_shipped_graphs.py fails until the graphs match their files again).
Needs PyTorch, onnx and onnxscript (`pip install -e ".[train,dev]"`).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posecal.export.shipped import build_shipped_graphs  # noqa: E402
from posecal.models.shipped import SHIPPED_GRAPHS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SHIPPED_GRAPHS), choices=list(SHIPPED_GRAPHS))
    for name in parser.parse_args().names:
        made = build_shipped_graphs(name)
        files = ", ".join(f"{f} {n / 1e6:.2f} MB" for f, n in made["bytes"].items())
        print(f"{name}: version {made['version']}; {files}")


if __name__ == "__main__":
    main()
