"""Bad-input battery, train: config mistakes, resume, bad data of `posecal train` (python bench/battery_train.py).

Config mistakes and traps, resume from nothing or a corrupt checkpoint, a stale temp file, a truncated training
image in `posecal train`. Options: [--only NAME] [-v] [--keep] [--jobs N] [--no-fork].
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from battery_judges import _failure, refused, skipped, works
from battery_runner import Case, Run, cli, main, run_process, with_setup

# `posecal train CFG` whose second last.pt write is cut by Ctrl-C half-way (torch.save writes a few bytes, then
# KeyboardInterrupt), after a first epoch's checkpoint was written complete.
CTRL_C_IN_WRITE = """
import sys, torch
import posecal.models.checkpoint as checkpoint
real, calls = torch.save, []
def save(obj, f, *a, **k):
    if isinstance(obj, dict) and "optim" in obj:
        calls.append(1)
        if len(calls) == 2:
            f.write(b"PK half a checkpoint")
            raise KeyboardInterrupt
    return real(obj, f, *a, **k)
checkpoint.torch.save = save
from posecal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def ctrl_c_in_write(fx, cwd) -> Run:
    cfg = fx.train_config(cwd)
    cfg.write_text(cfg.read_text().replace("epochs: 1", "epochs: 3").replace("max_steps: 1", "max_steps: 6"))
    return run_process(fx, cwd, CTRL_C_IN_WRITE, ["train", str(cfg), "--no-progress"])


def interrupted_cleanly(r: Run) -> tuple[str, str]:
    """Exit 130, one line naming the last complete checkpoint, which loads; no temp file left (issue 22)."""
    import torch

    fail = _failure(r)
    if fail:
        return fail
    lines = r.err_lines()
    left = [p.name for p in (r.cwd / "run").glob(".*.tmp")]
    if left:
        return "silent", f"temp file(s) left: {left}"
    try:
        torch.load(r.cwd / "run" / "last.pt", map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        return "silent", f"run/last.pt does not load: {str(e)[:80]}"
    if r.rc != 130 or len(lines) != 1 or "last.pt" not in lines[0]:
        return "vague", f"exit {r.rc}, {len(lines)} stderr line(s): {' | '.join(lines)[:90]}"
    return "good", lines[0][:110]


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
    # --- issue 22: nobody to train on, Ctrl-C during a checkpoint write
    Case("train-no-usable-persons", lambda fx, cwd: cli("train", with_annotations(
        fx.train_config(cwd), fx.d / "ann_nobody.json"), "--no-progress")(fx, cwd), refused("ann_nobody.json")),
    Case("train-ctrl-c-during-checkpoint-write", ctrl_c_in_write, interrupted_cleanly),
]


def with_annotations(cfg: Path, ann: Path) -> Path:
    """The config with another training annotation file (validation keeps the good one)."""
    cfg.write_text(re.sub(r"train_annotations: [^,]+", f"train_annotations: {ann}", cfg.read_text()))
    return cfg


if __name__ == "__main__":
    sys.exit(main({"train": CASES}, __doc__.split("\n\n")[0]))
