"""Remap the shipped person verifier's p(person) by the map bench/person_probability.py fitted on the people the
product reports (issue 63 item 4), and print the person policy's thresholds through the same map.

    python bench/person_probability.py --limit 300 --json bench/results/person_probability.json
    python tools/recalibrate_verifier.py bench/results/person_probability.json [--graph posecal/weights/person_verifier.onnx]

The map is monotone, so with every threshold of posecal/inference/person_policy.py moved through it the same boxes
are kept and dropped; only the reported p(person) changes. A graph already remapped is refused (the bench's map was
fitted on the graph before it)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))   # the tools' own modules (verifier_export, video_choice)
from posecal.detect.verifier import SHIPPED_VERIFIER, PersonVerifier, remapped  # noqa: E402
from verifier_export import recalibrated_verifier_bytes  # noqa: E402
from posecal.io import write_bytes_atomic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="bench/person_probability.py's --json (its 'refit')")
    ap.add_argument("--graph", type=Path, default=SHIPPED_VERIFIER)
    args = ap.parse_args()
    report = json.loads(args.results.read_text())
    refit = report["refit"]
    if "reported_calibration" in PersonVerifier(args.graph, threads=1).info:
        sys.exit(f"{args.graph}: already remapped (its record has reported_calibration); refit on this graph first")
    a, b = float(refit["a"]), float(refit["b"])
    record = {"map": "logit' = a * logit + b", "a": a, "b": b, "fitted_on": refit["fitted_on"],
              "event": "the reported (detector's) box frames a labelled person, IoU >= 0.5",
              "command": report["command"], "worlds": refit["worlds"]}
    write_bytes_atomic(args.graph, recalibrated_verifier_bytes(args.graph.read_bytes(), a, b, record))
    print(f"{args.graph}: p(person) remapped, logit' = {a:.4f} logit + {b:+.4f}")
    print("person policy thresholds: " + ", ".join(f"{v:g} -> {remapped(v, a, b):.3f}"
                                                   for v in (0.1, 0.2, 0.3, 0.5, 0.6, 0.8)))


if __name__ == "__main__":
    main()
