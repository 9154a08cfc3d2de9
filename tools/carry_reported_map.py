"""Carry a reported-pose map (tools/fit_reported_quality.py --out) inside a shipped model's .pt, keyed by its
network's weights digest, leaving the file's weights and other metadata as they are (`posecal pack
--reported-quality` does the same for a model it packs anew).

    python tools/carry_reported_map.py accurate runs/reported/accurate_map.json
    python tools/build_shipped_graphs.py accurate && python tools/quantize_shipped_graphs.py accurate

The shipped graphs carry the map too; rebuild them after (tests/export/test_shipped_graphs.py fails until then).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from posecal.calibration.reported import META_KEY  # noqa: E402
from posecal.evaluation.pack_job import carried_reported_map  # noqa: E402
from posecal.models.checkpoint import atomic_save, load_model, network_digest  # noqa: E402
from posecal.models.shipped import SHIPPED_MODELS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=sorted(SHIPPED_MODELS))
    ap.add_argument("map", help="the reported-pose map fitted on this model's poses")
    args = ap.parse_args()
    path = SHIPPED_MODELS[args.model]
    network = network_digest(load_model(path)[0])
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["meta"][META_KEY] = carried_reported_map(args.map, network)
    atomic_save(ckpt, path)
    print(f"{path.name}: carries {args.map} for network {network}")


if __name__ == "__main__":
    main()
