"""Average the pose networks of model files fine-tuned from one start (a "weight soup") into one model file.

    python tools/weight_soup.py OUT.pt A.pt B.pt [C.pt ...] [--weights 0.5 0.5]

Why: a fine-tune on one kind of data gains there and forgets some of what its start knew elsewhere. For issue 62
the CPU fine-tune on COCO's crops (configs/ablations/pose_hard_people_cpu_control.yaml) gained val AP but lost
sports poses (LSPET); the plain mean of its weights and its start's (`accurate`'s) kept the COCO gain and
most of LSPET's (CHANGELOG.md). Averaging works where the networks share a start, so their weights lie in one basin;
between unrelated networks it gives nonsense, and the result must be judged like any new network.

The pose network's tensors are those of the first file (backbone and heatmap head); each floating tensor is the
weighted mean over the files (in float32, stored in the first file's dtype), integer ones (BatchNorm's counter) are
the first file's. A file's trust model, if it holds one, is left out: put the shipped one on the result
(tools/build_trust_model.py --any-network) and calibrate (`posecal pack --calibrate-on ... --conditions`). The
result carries the first file's model config; its meta says what was averaged.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from posecal.errors import PosecalInputError  # noqa: E402
from posecal.io import write_atomic  # noqa: E402


def soup(checkpoints: list[dict], weights: list[float]) -> dict:
    """The weighted mean of the checkpoints' pose networks (the first's keys), as a checkpoint like the first."""
    if len(checkpoints) < 2 or len(weights) != len(checkpoints):
        raise PosecalInputError(f"a soup takes two files or more and one weight per file ({len(checkpoints)} "
                                f"files, {len(weights)} weights)")
    if min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
        raise PosecalInputError(f"--weights: each >= 0 and together 1, got {weights}")
    first = checkpoints[0]["state_dict"]
    mixed = {}
    for key, tensor in first.items():
        others = [c["state_dict"].get(key) for c in checkpoints[1:]]
        if any(o is None or o.shape != tensor.shape for o in others):
            raise PosecalInputError(f"{key}: not in every file with the shape {tuple(tensor.shape)}; a soup needs "
                                    f"networks of one architecture")
        if tensor.is_floating_point():
            total = sum(w * t.float() for w, t in zip(weights, [tensor, *others]))
            mixed[key] = total.to(tensor.dtype)
        else:
            mixed[key] = tensor
    return {"model_config": checkpoints[0]["model_config"], "state_dict": mixed,
            "meta": {"soup_weights": list(weights)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--weights", type=float, nargs="+", help="one per file, summing to 1 (default: equal)")
    args = ap.parse_args()
    try:
        checkpoints = [torch.load(f, map_location="cpu", weights_only=False) for f in args.files]
        weights = args.weights or [1 / len(args.files)] * len(args.files)
        result = soup(checkpoints, weights)
    except (OSError, PosecalInputError, KeyError) as e:
        sys.exit(f"weight_soup: {e}")
    result["meta"]["soup_of"] = [Path(f).name for f in args.files]
    write_atomic(args.out, lambda f: torch.save(result, f))
    print(f"{args.out}: {len(result['state_dict'])} tensors, the mean of {', '.join(args.files)} with weights "
          f"{weights}")


if __name__ == "__main__":
    main()
