"""Where an ONNX graph runs: onnxruntime's execution providers for a device, the one rule for the pose graphs
(posecal/export/session.py) and the person detectors (posecal/detect/runtime.py).

device="cuda" asks for onnxruntime's CUDAExecutionProvider (the `gpu` extra: onnxruntime-gpu), with no PyTorch.
Where it cannot be had (a CPU-only onnxruntime, no GPU or no CUDA libraries) the graph runs on the CPU and one
warning line says why, once per process and reason: a run on a machine without a GPU still gives its results.
"""
from __future__ import annotations

import functools
import platform
import warnings

from posecal.errors import PosecalInputError

DEVICES = ("cpu", "cuda")
BACKENDS = ("torch", "onnx")   # what runs a network: PyTorch, or onnxruntime (posecal/inference/opener.py)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_INSTALL = ("pip install 'posecal[gpu]' (onnxruntime-gpu; uninstall the plain onnxruntime first, the two share "
               "one module)")
_warned: set[str] = set()

# Person crops per forward pass when none is given: on the CPU one (batching saves no time there and its
# activations cost memory: CHANGELOG); on a GPU 16.
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 1, 16


def default_batch_size(device: str) -> int:
    """The batch size a run takes where none is given, by where the pose network runs ("cuda" or "cpu")."""
    return CUDA_BATCH_SIZE if device == "cuda" else CPU_BATCH_SIZE


# onnxruntime's CPU memory arena keeps each session's largest activations; off saves memory but costs more time
# (CHANGELOG): kept on
CPU_MEMORY_ARENA = True


def session_options(threads: int):
    """The onnxruntime options of every session posecal opens (pose graphs, detectors, the verifier)."""
    import onnxruntime as ort   # a core dependency

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3   # onnxruntime's own warnings are noise for the user
    # no busy-waiting between calls: on a few cores the spinning threads starve whatever runs next (crops,
    # decode, the other network); posecal track on 2 cores went from 5.5 to 7.7 fps without it
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = CPU_MEMORY_ARENA
    if int8_saturates():
        options.add_session_config_entry("session.x64quantprecision", "1")
    return options


# The CPU flags (as Linux's /proc/cpuinfo names them) with which onnxruntime multiplies uint8 by int8 exactly:
# AVX-512 VNNI (server CPUs) and AVX-VNNI (Intel client CPUs from the 12th generation on, without AVX-512)
EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})
X86 = ("x86_64", "amd64", "x86", "i386", "i686")
# numpy's names for the same instruction sets: CPUID's answer for them wins over the OS's list (flags_seen_by_code)
NUMPY_FLAGS = {"AVX512VNNI": "avx512_vnni", "AVX_VNNI": "avx_vnni", "AVX2": "avx2", "AVX512F": "avx512f"}
# An OS flag numpy has no CPUID entry for, and one numpy has that every CPU with the first has too (every CPU with
# AVX-VNNI: Alder Lake and later Intel cores, Gracemont, Sapphire Rapids, Zen 4 and 5, has GFNI): where CPUID
# denies the companion, the OS's flag is the host's, passed through by an emulator (qemu-user emulating Haswell on
# an AVX-VNNI host), not the running CPU's
OS_FLAG_COMPANIONS = {"avx_vnni": "GFNI"}


def os_cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags as the operating system lists them, lower case (Linux: /proc/cpuinfo's `flags`;
    macOS: sysctl's machdep.cpu features, their AVX-512 / VNNI names mapped to Linux's); None where none can be
    read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                 capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        words = {w.lower().replace(".", "_") for w in out.split()}
        return frozenset(words | {"avx512_vnni" for w in words if w == "avx512vnni"}
                         | {"avx_vnni" for w in words if w == "avxvnni"})
    return None


def numpy_cpu_features() -> dict | None:
    """numpy's runtime dispatch table: CPUID as this process sees it (the OS's support for the wide registers
    included), by numpy's names; None where it cannot be read."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:   # numpy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return None
    return dict(features)


def flags_seen_by_code(os_flags, features) -> frozenset[str]:
    """The flags the running code sees, in Linux's names: CPUID (numpy's table) for every flag numpy has an entry
    for, the OS's list for the rest (numpy has no AVX-VNNI entry: the OS's word for it stands where CPUID does not
    deny its companion, OS_FLAG_COMPANIONS) and wherever numpy's table is missing.

    CPUID wins because it is what onnxruntime's kernel choice reads, and the two can differ: qemu-user emulating an
    AVX2 CPU on a VNNI host passes the host's /proc/cpuinfo through, so the OS's list would promise exact int8
    kernels the emulated CPU does not run."""
    os_flags = frozenset(os_flags or ())
    if features is None:
        return os_flags
    known = {name for key, name in NUMPY_FLAGS.items() if key in features}
    seen = {name for key, name in NUMPY_FLAGS.items() if features.get(key)}
    denied = {name for name, companion in OS_FLAG_COMPANIONS.items()
              if companion in features and not features[companion]}
    return (os_flags - known - denied) | seen


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's flags as the running code sees them (flags_seen_by_code); empty where neither CPUID nor the OS
    can be read. Read once a process: every model opened asks."""
    return flags_seen_by_code(os_cpu_flags(), numpy_cpu_features())


def saturates_with(flags, machine: str) -> bool:
    """Do onnxruntime's int8 kernels clip on a CPU of this machine type with these flags (int8_saturates)?"""
    if machine.lower() not in X86:
        return False
    return not (frozenset(flags) & EXACT_INT8_FLAGS)


@functools.lru_cache(maxsize=1)
def int8_saturates() -> bool:
    """This CPU is an x86 one whose onnxruntime int8 kernels saturate: AVX2, or AVX-512 without VNNI.

    There onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW, which adds two products in
    16 bits and clips (255 x 127 x 2 > 32767). session_options then has onnxruntime widen the weights to uint8
    (session.x64quantprecision), which computes the very integers a VNNI CPU does. Not with AVX-512 VNNI or
    AVX-VNNI (EXACT_INT8_FLAGS), where widening would halve the int8 speed for nothing, nor on ARM, whose kernels
    do not clip (7-bit weights cost AP: CHANGELOG). The flags are CPUID's where numpy reads it, else the OS's
    (cpu_flags); where neither says, the safe answer is True."""
    return saturates_with(cpu_flags(), platform.machine())


PRECISIONS = ("auto", "int8", "float")   # which graphs of a shipped model run on the CPU (choose_precision)


def auto_precision(flags, machine: str) -> tuple[str, str]:
    """(precision, why) that `auto` runs on a CPU of this machine type with these flags: int8 where onnxruntime
    multiplies int8 exactly; float on x86 without VNNI, where the widened int8 path (int8_saturates) takes float's
    time, so float's exact answers cost nothing; float on ARM, where the no-flip int8 graphs do not give x86's
    answers (CHANGELOG)."""
    if machine.lower() not in X86:
        return "float", f"a {machine} CPU: the int8 graphs answer there otherwise than on x86"
    if not saturates_with(flags, machine):
        return "int8", "this CPU multiplies int8 exactly (AVX-512 VNNI or AVX-VNNI)"
    return "float", "this CPU has no VNNI: int8 would run widened, at float's speed"


def choose_precision(requested: str = "auto", device: str = "cpu") -> tuple[str, str]:
    """(precision, why) of the shipped graphs a run uses: what was asked for, or `auto`'s choice for this CPU; a
    GPU runs the float graphs. An unknown value is one PosecalInputError line."""
    if requested not in PRECISIONS:
        raise PosecalInputError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if device == "cuda":
        return "float", "a GPU runs the float graphs"
    if requested != "auto":
        return requested, "asked for"
    return auto_precision(cpu_flags(), platform.machine())


def check_device(device: str) -> str:
    """The device asked for, refused in one line when it is neither 'cpu' nor 'cuda'."""
    if device not in DEVICES:
        raise PosecalInputError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device


def providers(device: str, device_id: int = 0) -> list:
    """onnxruntime's providers for `device`: the CPU's alone, or CUDA's then the CPU's (for the few operators
    CUDA lacks). A CUDA device on an onnxruntime without the CUDA provider: the CPU's, with the warning."""
    if check_device(device) == "cpu":
        return [CPU]
    import onnxruntime as ort   # a core dependency

    if CUDA not in ort.get_available_providers():
        fall_back(f"this onnxruntime has no CUDA provider (it has {', '.join(ort.get_available_providers())}): "
                  f"{GPU_INSTALL}")
        return [CPU]
    return [(CUDA, {"device_id": device_id}), CPU]


def check_session(session, asked: list) -> str:
    """The device a session opened with the providers `asked` (providers()) really runs on: onnxruntime drops a
    CUDA provider it cannot load (no GPU, no driver, CUDA or cuDNN libraries missing) without an error, so that
    is said here, once."""
    wanted = any((p[0] if isinstance(p, tuple) else p) == CUDA for p in asked)
    if wanted and CUDA not in session.get_providers():
        fall_back("onnxruntime could not start its CUDA provider (no GPU, no driver, or CUDA/cuDNN libraries "
                  "missing: see onnxruntime's CUDA requirements)")
        return "cpu"
    return "cuda" if wanted else "cpu"


def fall_back(reason: str) -> None:
    """One warning line: device 'cuda' runs on the CPU, and why (said once per process and reason)."""
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"device 'cuda': running on the CPU instead: {reason}", stacklevel=3)
