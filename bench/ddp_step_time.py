"""Training step time with 1 and 2 CPU processes under torchrun (python bench/ddp_step_time.py [--nproc 1 2]).

Data-parallel training speed on CPU: `torchrun --nproc_per_node N -m posecal train` with gloo, N = 1 and 2.

The setting of tests/test_distributed.py (EfficientNet-Lite0 without ImageNet weights, 32x48 input, heads
8/8/8, batch 2 per process, 1 thread per process) on real COCO person crops from ../shared; --input and
--batch-size change it. Prints, per N, the seconds per optimizer step and the crops per second over all ranks,
from the second epoch's training time in log.json (the first includes start-up).

Usage: python bench/ddp_step_time.py [--persons 64] [--input 32 48] [--batch-size 2] [--nproc 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CROPS = REPO.parent / "shared" / "data" / "coco-val2017-crops"


def run(nproc: int, args, folder: Path) -> dict:
    cfg = folder / f"n{nproc}.yaml"
    ann, img = CROPS / "annotations", CROPS / "images"
    w, h = args.input
    cfg.write_text(f"""
out_dir: {folder / f'run{nproc}'}
data: {{train_annotations: {ann / 'train.json'}, train_images: {img}, val_annotations: {ann / 'val.json'},
        val_images: {img}}}
model: {{input_wh: [{w}, {h}], head_widths: [8, 8, 8], imagenet: false}}
epochs: 2
batch_size: {args.batch_size}
max_train_persons: {args.persons}
max_val_persons: 4
val_every: 100
num_workers: 0
threads: 1
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "posecal", "train", str(cfg), "--no-progress"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    first, epoch = json.loads((folder / f"run{nproc}" / "log.json").read_text())[:2]
    steps = epoch["step"] - first["step"]
    return {"s_per_step": epoch["train_s"] / steps, "crops_per_s": nproc * epoch["crops_per_s"], "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=64, help="training persons (split over the processes)")
    parser.add_argument("--input", type=int, nargs=2, default=(32, 48), metavar=("W", "H"))
    parser.add_argument("--batch-size", type=int, default=2, help="per process")
    parser.add_argument("--nproc", type=int, nargs="+", default=(1, 2))
    args = parser.parse_args()
    if not CROPS.is_dir():
        sys.exit(f"{CROPS} not found: this benchmark needs the shared COCO crops")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nproc:
            r = run(n, args, Path(tmp))
            print(f"{n} gloo process(es), batch {args.batch_size} each, input {args.input[0]}x{args.input[1]}: "
                  f"{r['s_per_step'] * 1000:.1f} ms/step, {r['crops_per_s']:.1f} crops/s over all ranks "
                  f"({r['steps']} steps timed)")


if __name__ == "__main__":
    main()
