"""LSPET written as a COCO keypoint file in posecal's 17 slots, so that `posecal audit` can judge its labels (and
`posecal audit apply` mend the findings a person accepts; load_lspet reads the mended file as it is).

    python tools/lspet_as_coco.py OUT.json [--lspet ../shared/data/lspet] [--persons -600:]
    posecal audit --annotations OUT.json --images ../shared/data/lspet/images --out AUDIT

Why: LSPET's Mechanical Turk labels often give the viewer's left and right (bench/results/lspet_sides.txt), and
the audit reads COCO files only. --persons: a Python slice of LSPET's persons in file order (default: all).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from posecal.data.coco import as_coco_file, load_lspet  # noqa: E402
from posecal.data.images import stored_size  # noqa: E402
from posecal.io import write_json_atomic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--lspet", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "lspet"))
    ap.add_argument("--persons", default=":", help="a slice of LSPET's persons in file order, e.g. -600:")
    args = ap.parse_args()
    root = Path(args.lspet)
    start, _, stop = args.persons.partition(":")
    records = load_lspet(root / "annotations" / "lspet.json", root / "images")[
        int(start) if start else None:int(stop) if stop else None]
    write_json_atomic(as_coco_file(records, {r.image_id: stored_size(r.image_path) for r in records}), args.out)
    print(f"{len(records)} LSPET persons -> {args.out}")


if __name__ == "__main__":
    main()
