"""Bad-input battery, train: config mistakes, resume, bad data of `posecal train` (python bench/battery_train.py).

Config mistakes and traps, resume from nothing or a corrupt checkpoint, a stale temp file, a truncated training
image in `posecal train`. Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from battery_judges import refused, skipped, works
from battery_runner import Case, Run, cli, main, with_setup


def no_stale_temp(r: Run) -> str | None:
    left = [p.name for p in (r.cwd / "run").glob("*.tmp")]
    if left:
        return f"stale temp file(s) left: {left}"
    if "removed" not in r.out + r.err:
        return "temp file gone without a word"
    return None


def train_case(name, extra="", judge=None, model=None, setup=None, args=(), images_replace=None, out_dir=None):
    def run(fx, cwd):
        images = fx.coco_copy(cwd, images_replace)[1] if images_replace else None
        od = out_dir(fx, cwd) if callable(out_dir) else out_dir
        cfg = fx.train_config(cwd, extra, model, images, od)
        if setup:
            setup(cwd)
        return cli("train", cfg, "--no-progress", *args)(fx, cwd)
    return Case(name, run, judge)


def put_stale_temp(cwd: Path) -> None:
    (cwd / "run").mkdir()
    (cwd / "run" / ".last.ptk3j9x1q2.tmp").write_bytes(b"\0" * 100_000)   # write_atomic's temp name


def put_corrupt_last(cwd: Path) -> None:
    (cwd / "run").mkdir()
    (cwd / "run" / "last.pt").write_bytes(b"PK\x03\x04 cut short")


def trained(r: Run) -> str | None:
    return None if (r.cwd / "run" / "last.pt").is_file() else "run/last.pt not written"


CASES = [
    # --- train: configs
    train_case("train-lr-1e-3-string-trap", "lr: 1e-3\n", works(trained)),
    train_case("train-batch-size-0", "batch_size: 0\n",
               refused("batch_size")),
    train_case("train-epochs-negative", "epochs: -2\n", refused("epochs")),
    train_case("train-unknown-key", "epochz: 3\n", refused("epochz")),
    train_case("train-wrong-type-float-size", "", refused("input_wh"),
               model="{input_wh: [48.5, 64], head_widths: [16, 16, 8], imagenet: false}"),
    train_case("train-wrong-type-scalar-for-pair", "", refused("input_wh"),
               model="{input_wh: 48, head_widths: [16, 16, 8], imagenet: false}"),
    train_case("train-wrong-type-text-for-number", "weight_decay: lots\n", refused("weight_decay")),
    train_case("train-threads-0", "threads: 0\n", refused("threads")),
    Case("train-config-not-a-mapping", with_setup(lambda fx, c: (c / "list.yaml").write_text("- 1\n- 2\n"),
                                                  cli("train", "list.yaml")), refused("list.yaml")),
    train_case("train-annotations-missing", "", refused("nope.json"), setup=lambda c: (c / "cfg.yaml").write_text(
        re.sub(r"train_annotations: [^,]+", "train_annotations: nope.json", (c / "cfg.yaml").read_text()))),
    train_case("train-out-dir-is-a-file", "", refused("a_file"), out_dir=lambda fx, c: fx.d / "a_file"),
    train_case("train-max-minutes-negative", "", refused("--max-minutes"), args=("--max-minutes", "-5")),
    # --- train: resume and checkpoints
    train_case("train-resume-nothing", "", refused("resume"), args=("--resume",)),
    train_case("train-resume-corrupt-last-pt", "", refused("last.pt"), setup=put_corrupt_last, args=("--resume",)),
    train_case("train-stale-tmp-from-killed-write", "", works(no_stale_temp), setup=put_stale_temp),
    train_case("train-truncated-image-in-data", "", skipped("img1.jpg", trained),
               images_replace={"img1.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 300}),
]


if __name__ == "__main__":
    sys.exit(main({"train": CASES}, __doc__.split("\n\n")[0]))
