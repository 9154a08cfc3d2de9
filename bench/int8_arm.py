"""Do the shipped int8 graphs answer on ARM as on x86? (python bench/int8_arm.py [--cpus max cortex-a72] [--n 8])

No ARM machine is at hand, so an aarch64 CPU is emulated by Debian's qemu-user (`qemu-aarch64 -cpu CPU`), as
tests/export/test_int8_graphs.py emulates an AVX2 CPU: `max` has the dot-product and i8mm instructions that
onnxruntime's fast int8 kernels use (as Graviton 2/3, Ampere, Apple and recent Cortex cores have), `cortex-a72` has
neither (Raspberry Pi 4), so onnxruntime takes its plain NEON int8 kernels there. Each emulated CPU runs the
shipped int8 graphs (`accurate` and `fast`, with and without the flip test) with plain onnxruntime, one thread, on
the same --n real val crops as this machine, and the outputs are compared: max |ARM - x86| per output beside
max |int8 - float| on x86 and on ARM (the size of the int8 graphs' own error, for scale). On x86 the int8 kernels compute
exact integers (VNNI, or the widened path on AVX2: posecal.devices.int8_saturates), so equal outputs mean ARM's
kernels compute the same integers.

What it builds in --work (once; about 60 MB): an aarch64 CPython 3.11 from Debian bookworm's arm64 packages
(`apt-get download`, needs `dpkg --add-architecture arm64` and `apt-get update` once) and the aarch64 wheels of this
venv's onnxruntime and numpy versions (`pip download --platform`), unpacked. onnxruntime's CPU probe reads
/proc/cpuinfo, which qemu-user leaves as the host's (x86) text, and crashes on it: each run sees an aarch64
cpuinfo bound over it in a mount namespace of its own (`unshare -m`, so root). onnxruntime reads the CPU's
features from the auxiliary vector, which qemu fills in for the emulated CPU.

Needs ../shared/data/coco-val2017-crops, PyTorch (the crops), qemu-user, root. Prints one line per graph and CPU;
--json writes them (bench/results/int8_arm.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from posecal.data.coco import load_coco_persons  # noqa: E402
from posecal.data.topdown import TopDownDataset  # noqa: E402
from posecal.export.session import OnnxEstimator  # noqa: E402
from posecal.models.shipped import int8_graph, shipped_graph  # noqa: E402

CROPS = REPO.parent / "shared" / "data" / "coco-val2017-crops"
# Debian bookworm's arm64 packages an aarch64 python3.11 needs to import numpy and onnxruntime
DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g", "libexpat1",
        "libffi8", "libgcc-s1", "libstdc++6", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1",
        "libncursesw6", "libtinfo6", "libcrypt1", "libgomp1")
FEATURES = {"max": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                   "asimddp i8mm",
            "cortex-a72": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"}
PART = {"max": "0xd0c", "cortex-a72": "0xd08"}

# What the emulated python runs: each graph on the saved crops, outputs saved by graph and name.
ARM_RUN = """
import sys
sys.path.insert(0, sys.argv[4])   # numpy and onnxruntime's aarch64 wheels, unpacked
import numpy as np
import onnxruntime as ort
crops, graphs, out = np.load(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
found = {}
for graph in graphs:
    session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    key = graph.rsplit("/", 1)[-1]
    batch = crops[key]
    for name, value in zip([o.name for o in session.get_outputs()], session.run(None, {"images": batch})):
        found[key + "/" + name] = value
np.savez(out, **found)
"""


def aarch64_python(work: Path) -> Path:
    """The unpacked aarch64 root (its usr/bin/python3.11), with numpy and onnxruntime in root/site."""
    root = work / "root"
    if (root / "usr" / "bin" / "python3.11").is_file() and (root / "site" / "onnxruntime").is_dir():
        return root
    debs, wheels = work / "debs", work / "wheels"
    for folder in (debs, wheels, root / "site"):
        folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *(f"{d}:arm64" for d in DEBS)], cwd=debs, check=True)
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    import numpy
    import onnxruntime

    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
                    "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
                    "--python-version", "3.11", "--implementation", "cp", "-d", str(wheels),
                    f"onnxruntime=={onnxruntime.__version__}", f"numpy=={numpy.__version__}"], check=True)
    for wheel in wheels.glob("*.whl"):
        zipfile.ZipFile(wheel).extractall(root / "site")
    return root


def cpuinfo_text(cpu: str) -> str:
    core = (f"BogoMIPS\t: 50.00\nFeatures\t: {FEATURES[cpu]}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
            f"CPU variant\t: 0x0\nCPU part\t: {PART[cpu]}\nCPU revision\t: 1\n\n")
    return "".join(f"processor\t: {i}\n{core}" for i in range(2))


def run_on_arm(root: Path, cpu: str, crops: Path, graphs: list[Path], folder: Path) -> dict:
    script, cpuinfo, out = folder / "arm_run.py", folder / f"cpuinfo_{cpu}", folder / f"arm_{cpu}.npz"
    script.write_text(ARM_RUN)
    cpuinfo.write_text(cpuinfo_text(cpu))
    python = (f"qemu-aarch64 -cpu {cpu} -L {root} {root}/usr/bin/python3.11 {script} {crops} "
              f"{','.join(str(g) for g in graphs)} {out} {root / 'site'}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {cpuinfo} /proc/cpuinfo && {python}"],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"qemu-aarch64 -cpu {cpu}: {done.stderr.strip()[-800:]}")
    return dict(np.load(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", nargs="+", default=["max", "cortex-a72"], choices=sorted(FEATURES))
    ap.add_argument("--models", nargs="+", default=["accurate", "fast"], choices=["accurate", "fast"])
    ap.add_argument("--n", type=int, default=8, help="val crops (the first n persons of val.json)")
    ap.add_argument("--work", default=str(REPO / "runs" / "arm64"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if platform.machine() != "x86_64" or shutil.which("qemu-aarch64") is None:
        raise SystemExit("needs an x86-64 machine with qemu-user (apt-get install qemu-user)")
    root = aarch64_python(Path(args.work))
    records = load_coco_persons(CROPS / "annotations" / "val.json", CROPS / "images")[:args.n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        graphs, crops, here, floats = [], {}, {}, {}
        for name in args.models:
            for flip in (True, False):
                graph = int8_graph(name, flip)
                x86 = OnnxEstimator(graph, threads=1)
                batch = np.concatenate([TopDownDataset(records, x86.config.input_wh)[i]["image"][None].numpy()
                                        for i in range(len(records))]).astype(np.float32)
                crops[graph.name] = batch
                here[graph.name] = x86.outputs(batch, flip)
                floats[graph.name] = OnnxEstimator(shipped_graph(name, flip), threads=1).outputs(batch, flip)
                graphs.append(graph)
        np.savez(folder / "crops.npz", **crops)
        for cpu in args.cpus:
            arm = run_on_arm(root, cpu, folder / "crops.npz", graphs, folder)
            for graph in graphs:
                for key, value in here[graph.name].items():
                    row = {"cpu": cpu, "graph": graph.name, "output": key,
                           "arm_vs_x86": float(np.abs(arm[f"{graph.name}/{key}"] - value).max()),
                           "int8_vs_float_x86": float(np.abs(value - floats[graph.name][key]).max()),
                           "arm_vs_float": float(np.abs(arm[f"{graph.name}/{key}"] - floats[graph.name][key]).max()),
                           "range": float(value.max() - value.min())}
                    rows.append(row)
                    print(f"{cpu:10s} {graph.name:32s} {key:16s} max |arm - x86| {row['arm_vs_x86']:.2e}   "
                          f"max |int8 - float| x86 {row['int8_vs_float_x86']:.2e} arm {row['arm_vs_float']:.2e}   "
                          f"range {row['range']:.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.processor() or platform.machine(), "n": args.n,
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
