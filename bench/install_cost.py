"""What installing posecal costs a new user: wheel size, install time, disk, and the first prediction's wait.

Builds posecal's wheel once, then for each --extra installs it into a fresh venv (torch first with --torch-first: the
local CPU wheel, before the `train` extra) and reports the install's seconds, the venv's
site-packages on disk, whether `import torch` works there, and the wall time of `posecal predict PHOTO` with
empty caches (the ONNX export made on first use included) and again with the cache it left (warm).
Rerun it after a packaging change to compare.

Usage: python bench/install_cost.py [--repo PATH] [--ref HEAD] [--extra ""] [--extra train] [--torch-first]
       [--photo JPG] [--json OUT] [--keep]
The wheel is built from a copy (--ref: of that commit), so the checkout gets no build/ or egg-info changes.
Timed pip installs use --no-cache-dir, as a new user has no pip cache; the predict runs get fresh cache folders
(POSECAL_CACHE_DIR, XDG_CACHE_HOME, MPLCONFIGDIR) so that nothing made by earlier runs on this machine helps.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE_REPO = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
# Folders of a checkout that never go into the wheel and are large: left out of the build copy.
NOT_SOURCE = (".git", ".venv*", "runs", ".gpu_data", ".pytest_cache", ".hypothesis", "build", "*.egg-info",
              "__pycache__", ".whl", "posecal-demo", "out", "track_ids", ".import_linter_cache")


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Runs `cmd` with check=True and captured output; a failure ends the script with one clear line naming
    the step, plus the tail of the command's output (why it failed), instead of a traceback."""
    try:
        return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stdout + e.stderr).strip().splitlines()[-15:])
        sys.exit(f"install_cost: {what} failed (exit {e.returncode}): {' '.join(map(str, cmd))}\n{tail}")


def timed(cmd: list[str], what: str, **kw) -> float:
    """Wall seconds of one command (run as by run())."""
    start = time.perf_counter()
    run(cmd, what, **kw)
    return time.perf_counter() - start


def disk_mb(path: Path) -> float:
    """Space `path` takes on disk (du, allocated blocks), in MB (bytes / 1e6)."""
    out = run(["du", "-s", "--block-size=1", path], f"du {path}").stdout
    return int(out.split()[0]) / 1e6


def source_copy(repo: Path, ref: str | None, src: Path) -> None:
    """The code to build, copied to `src`: the commit `ref` (git archive: a fixed state even while someone
    edits the checkout), else the working tree as it is (large non-source folders left out)."""
    if ref is None:
        shutil.copytree(repo, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
        return
    tar = src.with_suffix(".tar")
    run(["git", "-C", repo, "archive", "--format=tar", "-o", tar, ref], f"git archive {ref}")
    with tarfile.open(tar) as t:
        t.extractall(src, filter="data")


def build_wheel(repo: Path, ref: str | None, tmp: Path) -> dict:
    """`pip wheel --no-deps` of a copy of `repo` (timed): the one wheel every install below uses."""
    src = tmp / "src"
    source_copy(repo, ref, src)
    out = tmp / "wheel"
    seconds = timed([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, src], "building the wheel")
    wheels = sorted(out.glob("posecal-*.whl"))
    if not wheels:
        sys.exit(f"install_cost: pip wheel wrote no posecal-*.whl into {out}")
    return {"path": str(wheels[0]), "name": wheels[0].name, "mb": wheels[0].stat().st_size / 1e6,
            "build_s": seconds}


def make_venv(python: str, where: Path) -> Path:
    """A fresh venv at `where` with an up-to-date pip (not timed: not posecal's cost); returns its python."""
    run([python, "-m", "venv", where], f"creating the venv {where}")
    py = where / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], "upgrading pip in the venv")
    return py


def install(py: Path, wheel: str, extra: str, torch_first: bool) -> dict:
    """Installs torch (with torch_first) then `wheel[extra]` into the venv of `py`, each timed."""
    pip = [py, "-m", "pip", "install", "-q", "--no-cache-dir"]
    torch_s = timed([*pip, TORCH_PIN], f"installing {TORCH_PIN}") if torch_first else 0.0
    target = f"{wheel}[{extra}]" if extra else wheel
    posecal_s = timed([*pip, target], f"installing {Path(target).name}")
    return {"torch_s": torch_s, "posecal_s": posecal_s, "install_s": torch_s + posecal_s}


def site_packages(venv: Path) -> Path:
    """The venv's lib/pythonX.Y/site-packages."""
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        sys.exit(f"install_cost: no lib/python*/site-packages in {venv}")
    return found[0]


def imports(py: Path, module: str) -> bool:
    """Whether `import module` works in the venv of `py` (a failure here is an answer, not an error)."""
    return subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode == 0


def default_photo(repo: Path) -> Path | None:
    """The first .jpg (sorted) of ../shared/data/coco-val2017-crops/images beside the checkout, if any."""
    images = repo.parent / "shared" / "data" / "coco-val2017-crops" / "images"
    jpgs = sorted(images.glob("*.jpg")) if images.is_dir() else []
    return jpgs[0] if jpgs else None


def time_predict(venv: Path, photo: Path, work: Path) -> dict:
    """Wall seconds of `posecal predict PHOTO --out OUT.json` from the venv, first with empty caches (cold:
    what a new user waits for the first result, the one-time ONNX export included), then again (warm)."""
    caches = work / "caches"
    env = dict(os.environ, POSECAL_CACHE_DIR=str(caches / "posecal"), XDG_CACHE_HOME=str(caches / "xdg"),
               MPLCONFIGDIR=str(caches / "matplotlib"))
    result = {}
    for label in ("cold", "warm"):
        out = work / f"{label}.json"
        cmd = [venv / "bin" / "posecal", "predict", photo, "--out", out]
        result[f"predict_{label}_s"] = timed(cmd, f"posecal predict ({label} cache)", env=env, cwd=work)
        if not out.is_file():
            sys.exit(f"install_cost: posecal predict ({label}) wrote no {out}")
        result[f"predict_{label}_results"] = len(json.loads(out.read_text()))
    return result


def measure_extra(args, wheel: dict, extra: str, tmp: Path) -> dict:
    """One fresh venv for `extra`: install cost, disk, torch importable, and the first predict's wait."""
    venv = tmp / f"venv-{extra or 'plain'}"
    py = make_venv(args.python, venv)
    row = {"extra": extra, "torch_first": args.torch_first, **install(py, wheel["path"], extra, args.torch_first)}
    row["site_packages_mb"] = disk_mb(site_packages(venv))
    row["torch_importable"] = imports(py, "torch")
    if args.photo is None:
        print(f"no photo (none given, no .jpg in {args.repo.parent}/shared/data/coco-val2017-crops/images): "
              f"skipping the predict timing for extra {extra!r}")
    else:
        work = tmp / f"predict-{extra or 'plain'}"
        work.mkdir()
        row.update(time_predict(venv, args.photo, work))
    return row


def commit(repo: Path, ref: str | None) -> str | None:
    """The commit the numbers are of: `ref`'s, else HEAD's with '+dirty' when the working tree has changes."""
    try:
        head = run(["git", "-C", repo, "rev-parse", ref or "HEAD"], "git rev-parse").stdout.strip()
        dirty = ref is None and run(["git", "-C", repo, "status", "--porcelain"], "git status").stdout.strip()
    except SystemExit:
        return None
    return head + ("+dirty" if dirty else "")


def print_table(report: dict) -> None:
    """The figures as a plain-text table: the wheel's line, then one row per extra."""
    w = report["wheel"]
    print(f"\nposecal install cost ({report['commit'] or 'no git'}, Python {report['python_version']})")
    print(f"wheel {w['name']}: {w['mb']:.1f} MB, built in {w['build_s']:.1f} s\n")
    cols = [("extra", "extra", "{!r}"), ("torch first", "torch_first", "{}"), ("torch s", "torch_s", "{:.1f}"),
            ("posecal s", "posecal_s", "{:.1f}"), ("install s", "install_s", "{:.1f}"),
            ("site-packages MB", "site_packages_mb", "{:.1f}"), ("torch importable", "torch_importable", "{}"),
            ("predict cold s", "predict_cold_s", "{:.1f}"), ("predict warm s", "predict_warm_s", "{:.1f}")]
    cells = [[fmt.format(row[key]) if key in row else "skipped" for _, key, fmt in cols] for row in report["installs"]]
    widths = [max(len(title), *(len(r[i]) for r in cells)) for i, (title, _, _) in enumerate(cols)]
    print(" | ".join(t.ljust(n) for (t, _, _), n in zip(cols, widths)))
    print("-+-".join("-" * n for n in widths))
    for r in cells:
        print(" | ".join(c.ljust(n) for c, n in zip(r, widths)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=HERE_REPO, help="posecal checkout (default: this script's)")
    p.add_argument("--ref", help="build this commit (git archive), e.g. HEAD (default: the working tree as it is)")
    p.add_argument("--extra", action="append", help='an extra to install, repeatable; "" = plain (default: "")')
    p.add_argument("--torch-first", action="store_true", help=f"pip install {TORCH_PIN} before posecal (timed)")
    p.add_argument("--photo", type=Path, help="image for predict (default: first .jpg of ../shared/data/"
                                              "coco-val2017-crops/images)")
    p.add_argument("--python", default="python3", help="interpreter that makes the venvs (default: python3)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (wheel, venvs) and print its path")
    args = p.parse_args()
    args.repo = args.repo.resolve()
    args.photo = args.photo.resolve() if args.photo else default_photo(args.repo)
    tmp = Path(tempfile.mkdtemp(prefix="posecal-install-cost-"))
    try:
        wheel = build_wheel(args.repo, args.ref, tmp)
        print(f"built {wheel['name']} ({wheel['mb']:.1f} MB) in {wheel['build_s']:.1f} s", flush=True)
        rows = []
        for extra in args.extra or [""]:
            rows.append(measure_extra(args, wheel, extra, tmp))
            print(f"measured extra {extra!r}", flush=True)
        python_version = run([args.python, "--version"], "python --version").stdout.split()[-1]
        report = {"repo": str(args.repo), "commit": commit(args.repo, args.ref), "python_version": python_version,
                  "photo": str(args.photo) if args.photo else None, "installs": rows,
                  "wheel": {k: v for k, v in wheel.items() if k != "path" or args.keep}}
        print_table(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            print(f"\nwrote {args.json}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
