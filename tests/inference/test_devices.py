"""device="cuda" on onnxruntime (posecal/devices.py): the shipped graphs on the CUDA provider with no PyTorch, the
CPU with one warning line where CUDA cannot run, and the torch backend of a shipped name refused in one line where
its .pt is not installed. The GPU test skips without a GPU; the rest run on any CPU."""
from __future__ import annotations

import json
import platform
import warnings

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from conftest import STANDING, cli_error, make_coco, run_cli
from posecal import devices
from posecal.errors import PosecalInputError
from posecal.inference.opener import check_backend, open_model
from posecal.models import shipped

HAS_CUDA = devices.CUDA in ort.get_available_providers()


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the fallback said anew (it is said once per process and reason)."""
    monkeypatch.setattr(devices, "_warned", set())


@pytest.fixture
def no_cuda(monkeypatch):
    """onnxruntime as a CPU-only install reports itself, whatever this machine has."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [devices.CPU])


def figure(path) -> str:
    img = np.full((160, 120, 3), 40, np.uint8)
    for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
        cv2.line(img, tuple(int(v) for v in STANDING[a]), tuple(int(v) for v in STANDING[b]), (200, 180, 160), 3)
    cv2.imwrite(str(path), img)
    return str(path)


def test_cpu_is_the_cpu_provider_alone():
    assert devices.providers("cpu") == [devices.CPU]
    with pytest.raises(PosecalInputError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        devices.providers("tpu")


def test_cuda_without_its_provider_falls_back_with_one_warning(no_cuda):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert devices.providers("cuda") == [devices.CPU]
        assert devices.providers("cuda") == [devices.CPU]   # said once per process and reason
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("device 'cuda': running on the CPU instead: this onnxruntime has no CUDA provider")
    assert "posecal[gpu]" in message and "\n" not in message


def test_cuda_defaults_to_onnxruntime_without_torch():
    """device='cuda' no longer forces the torch backend (it used to, and failed from a wheel)."""
    assert check_backend(None, "cuda") == "onnx"
    assert check_backend("onnx", "cuda") == "onnx"
    with pytest.raises(PosecalInputError, match="device must be 'cpu' or 'cuda'"):
        check_backend(None, "gpu")


def test_shipped_graph_on_cuda_falls_back_and_poses_as_on_the_cpu(no_cuda, tmp_path):
    """The shipped `fast` graph asked for on CUDA where there is none: the CPU, one warning, the poses of the graph
    a GPU runs (the float one, `fast-float`; on a CPU `fast` runs int8)."""
    from posecal.inference.predictor import Predictor

    img = cv2.imread(figure(tmp_path / "a.png"))
    cpu = Predictor("fast-float", detector=None, min_pose_quality=0, threads=1)(img)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gpu = Predictor("fast", device="cuda", detector=None, min_pose_quality=0, threads=1)
        again = Predictor("fast", device="cuda", detector=None, min_pose_quality=0, threads=1)
    assert len(caught) == 1
    assert str(caught[0].message).startswith("device 'cuda': running on the CPU instead: this onnxruntime has no CUDA")
    assert gpu.estimator.runner.device == again.estimator.runner.device == "cpu"
    got = gpu(img)
    assert len(got) == len(cpu) == 1
    np.testing.assert_allclose(got.keypoints, cpu.keypoints, atol=1e-4)
    np.testing.assert_allclose(got.pose_quality, cpu.pose_quality, atol=1e-5)


def test_cli_device_cuda_without_a_gpu_is_one_warning_line(tmp_path, capsys, no_cuda):
    """`posecal predict --device cuda` (detector and pose graph both asked on CUDA) on a CPU-only onnxruntime:
    results written, and the fallback said once, in posecal's one-line form (the CLI's warning format)."""
    from posecal.cli.main import one_line_warning

    out = tmp_path / "poses.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, _, _ = run_cli(capsys, "predict", figure(tmp_path / "a.png"), "--device", "cuda", "--model", "fast",
                           "--out", out, "--no-progress", "--threads", "1")
    assert rc == 0 and out.is_file()
    fallback = [w for w in caught if "device 'cuda'" in str(w.message)]
    assert len(fallback) == 1
    line = one_line_warning(fallback[0].message, fallback[0].category, fallback[0].filename, fallback[0].lineno)
    assert line.startswith("posecal: device 'cuda': running on the CPU instead: ") and line.count("\n") == 1


def test_torch_backend_of_a_shipped_name_without_its_pt_is_one_line(monkeypatch, tmp_path, capsys):
    """A wheel carries graphs only: backend='torch' with a shipped name (or the default, None) says so by name,
    never "model 'None'" (the message issue 55 found)."""
    monkeypatch.setitem(shipped.SHIPPED_MODELS, "accurate", tmp_path / "absent.pt")
    monkeypatch.setitem(shipped.SHIPPED_MODELS, "fast", tmp_path / "absent_fast.pt")
    for model in (None, "accurate", "fast"):
        with pytest.raises(PosecalInputError) as e:
            open_model(model, backend="torch")
        name = model or "accurate"
        assert str(e.value).startswith(f"model {name!r}: its PyTorch form is not in this installation")
        assert "None" not in str(e.value)
    line = cli_error(capsys, "predict", figure(tmp_path / "a.png"), "--backend", "torch", "--model", "fast",
                     "--out", tmp_path / "p.json", "--no-progress")
    assert line.startswith("model 'fast': its PyTorch form is not in this installation")
    assert not (tmp_path / "p.json").exists()


def test_load_model_of_the_default_names_it(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from posecal.models.checkpoint import load_model

    monkeypatch.setitem(shipped.SHIPPED_MODELS, "accurate", tmp_path / "absent.pt")
    with pytest.raises(PosecalInputError, match=r"^model 'accurate': its PyTorch file is not in this installation"):
        load_model(None)


@pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime has no CUDA provider here (pip install 'posecal[gpu]')")
def test_shipped_graph_runs_on_cuda_without_torch(tmp_path):
    """With a GPU: the shipped graphs and the detector on the CUDA provider, no warning, and the poses the
    CPU gives (float tolerance: cuDNN's convolutions are not the CPU's)."""
    from posecal.inference.predictor import Predictor

    img = cv2.imread(figure(tmp_path / "a.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpu = Predictor("accurate", device="cuda", detector=None, min_pose_quality=0)
    if gpu.estimator.runner.device != "cuda":
        pytest.skip("onnxruntime-gpu is installed but could not start CUDA here")
    cpu = Predictor("accurate", detector=None, min_pose_quality=0)
    got, want = gpu(img), cpu(img)
    assert len(got) == len(want)
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=0.5)
    np.testing.assert_allclose(got.pose_quality, want.pose_quality, atol=0.02)


def test_every_command_takes_a_device_and_falls_back_alike(tmp_path, capsys, no_cuda):
    """--device on eval and audit as on predict (issue 65 item 2), and TrackConfig.device for track: asked for
    CUDA where there is none, each runs the graph a GPU runs on the CPU, with the one fallback warning, and gives
    what that graph gives on the CPU."""
    import json

    from conftest import make_coco
    from posecal.tracking.pose_tracker import PoseTracker

    ann, img_dir = make_coco(tmp_path, n_images=2)
    metrics = {}
    for model, device in (("fast-float", "cpu"), ("fast", "cuda")):
        out = tmp_path / f"eval_{device}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc, _, _ = run_cli(capsys, "eval", "--annotations", ann, "--images", img_dir, "--out", out, "--model",
                               model, "--device", device, "--no-progress", "--threads", "1")
        assert rc == 0
        assert len([w for w in caught if "device 'cuda'" in str(w.message)]) == (device == "cuda")
        metrics[device] = json.loads((out / "results.json").read_text())
    assert len(metrics["cpu"]) == len(metrics["cuda"]) > 0
    for a, b in zip(metrics["cpu"], metrics["cuda"]):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-3)
    out = tmp_path / "audit"
    rc, _, _ = run_cli(capsys, "audit", "--annotations", ann, "--images", img_dir, "--out", out, "--model", "fast",
                       "--device", "cuda", "--no-progress", "--threads", "1")
    assert rc == 0 and (out / "findings.json").is_file()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        tracker = PoseTracker(model="fast", device="cuda", detector="none", verifier=None, threads=1)
    assert tracker.predictor.device == "cpu" and tracker.predictor.estimator.runner.device == "cpu"
    img = cv2.imread(figure(tmp_path / "a.png"))       # a drawn figure: posed, too poor for a track's birth
    cpu = PoseTracker(model="fast-float", detector="none", verifier=None, threads=1)
    got, want = tracker.predictor(img), cpu.predictor(img)
    assert len(got) == len(want) == 1
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-4)


@pytest.mark.parametrize("flags,machine,saturates", [
    ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", False),     # a server CPU with AVX-512 VNNI
    ({"avx2", "avx_vnni"}, "x86_64", False),                   # Intel client CPUs from the 12th generation: AVX-VNNI
    ({"avx2"}, "x86_64", True),                                # AVX2 only (many cloud VMs): VPMADDUBSW clips
    ({"avx2", "avx512f", "avx512bw"}, "AMD64", True),          # AVX-512 without VNNI
    (set(), "aarch64", False),                                 # ARM's kernels do not clip
])
def test_which_cpus_saturate_int8_by_their_flags(flags, machine, saturates):
    assert devices.saturates_with(flags, machine) is saturates


def test_the_os_flags_are_read_in_linuxs_names():
    flags = devices.os_cpu_flags()
    if flags is None:
        pytest.skip("this OS lists no CPU flags")
    assert all(f == f.lower() for f in flags)
    if platform.machine().lower() in devices.X86:
        assert "sse2" in flags     # every x86-64 CPU has it


@pytest.mark.parametrize("flags,machine,precision", [
    ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "int8"),
    ({"avx2", "avx_vnni"}, "x86_64", "int8"),
    ({"avx2"}, "x86_64", "float"),             # int8 would run widened, at float's speed (measured)
    ({"avx2", "avx512f"}, "AMD64", "float"),
    (set(), "aarch64", "float"),                # int8 answers otherwise than on x86 (bench/int8_arm.py)
    ({"asimd", "asimddp", "i8mm"}, "aarch64", "float"),
    (set(), "arm64", "float"),
])
def test_auto_precision_per_cpu(flags, machine, precision):
    chosen, why = devices.auto_precision(flags, machine)
    assert chosen == precision and why


def test_precision_asked_for_a_gpu_and_refused(monkeypatch):
    assert devices.choose_precision("int8") == ("int8", "asked for")
    assert devices.choose_precision("float") == ("float", "asked for")
    assert devices.choose_precision("int8", "cuda")[0] == "float"
    with pytest.raises(PosecalInputError, match="precision must be one of .*got 'half'"):
        devices.choose_precision("half")
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx_vnni"}))
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    assert devices.choose_precision("auto")[0] == "int8"


def test_the_shipped_graph_follows_the_precision(monkeypatch):
    from posecal.models.shipped import int8_graph, is_installed, packaged_graph, shipped_graph

    if not is_installed("accurate"):
        pytest.skip("shipped model not available")
    assert packaged_graph("accurate", True, "cpu", "int8") == int8_graph("accurate", True)
    assert packaged_graph("accurate", False, "cpu", "float") == shipped_graph("accurate", False)
    assert packaged_graph("accurate-float", True, "cpu", "int8") == shipped_graph("accurate", True)
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    assert packaged_graph("accurate", True, "cpu") == shipped_graph("accurate", True)
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert packaged_graph("accurate", True, "cpu") == int8_graph("accurate", True)


def test_predict_says_which_graphs_run(tmp_path, capsys):
    from posecal.models.shipped import is_installed

    if not is_installed("accurate"):
        pytest.skip("shipped model not available")
    img = np.full((120, 160, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "r.json"),
                           "--no-progress", "--precision", "int8", "--threads", "1")
    assert code == 0
    assert err.splitlines()[0] == "posecal: accurate runs its int8 graphs (asked for)"     # the run's first line
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "r.json"),
                           "--no-progress", "--precision", "float", "--backend", "torch", "--threads", "1")
    assert "runs its" not in err                  # PyTorch runs no graph


def test_a_predictor_says_in_one_line_what_runs():
    from posecal import Predictor
    from posecal.models.shipped import is_installed

    if not is_installed("fast"):
        pytest.skip("shipped model not available")
    p = Predictor("fast", detector=None, precision="int8", threads=1)
    assert repr(p) == "Predictor(model='fast', int8 on cpu, flip=True, detector=none, verifier=off, threads=1)"
    assert p.precision == "int8"
    assert Predictor("fast", detector=None, precision="float", flip=False, threads=1).precision == "float"


@pytest.mark.parametrize("os_flags,features,want", [
    # qemu-user emulating Haswell on a VNNI host: the host's /proc/cpuinfo, the emulated CPUID
    ({"sse2", "avx2", "avx512f", "avx512_vnni"}, {"AVX2": True, "AVX512F": False, "AVX512VNNI": False},
     {"sse2", "avx2"}),
    # ... on a host with AVX-VNNI too (numpy has no entry for it): the emulated CPUID has no GFNI, which every
    # AVX-VNNI CPU has, so the host's avx_vnni is not the emulated CPU's
    ({"avx2", "avx512_vnni", "avx_vnni", "gfni"}, {"AVX2": True, "AVX512VNNI": False, "GFNI": False}, {"avx2", "gfni"}),
    # an Intel client CPU: numpy has no AVX-VNNI entry, so the OS's word for it stands (CPUID shows GFNI)
    ({"avx2", "avx_vnni"}, {"AVX2": True, "AVX512F": False, "AVX512VNNI": False, "GFNI": True}, {"avx2", "avx_vnni"}),
    # ... and where numpy's table has no GFNI entry either (an older numpy)
    ({"avx2", "avx_vnni"}, {"AVX2": True, "AVX512VNNI": False}, {"avx2", "avx_vnni"}),
    # numpy's table unreadable: the OS's list
    ({"avx2", "avx512_vnni"}, None, {"avx2", "avx512_vnni"}),
    # no OS list (some containers, Windows): CPUID alone
    (None, {"AVX2": True, "AVX512F": True, "AVX512VNNI": True}, {"avx2", "avx512f", "avx512_vnni"}),
])
def test_cpuid_wins_over_the_os_list_where_numpy_reads_it(os_flags, features, want):
    assert devices.flags_seen_by_code(os_flags, features) == frozenset(want)


def test_this_process_sees_the_flags_numpy_sees():
    features = devices.numpy_cpu_features()
    if features is None or platform.machine().lower() not in devices.X86:
        pytest.skip("numpy's CPUID table is not readable here, or not an x86 CPU")
    assert ("avx512_vnni" in devices.cpu_flags()) is bool(features.get("AVX512VNNI"))


def _counting_auto(monkeypatch, flags) -> list:
    """devices.auto_precision counted, on a CPU of these flags: how many times a run resolves `auto`."""
    calls = []
    real = devices.auto_precision

    def counted(f, machine):
        calls.append(1)
        return real(flags, "x86_64")

    monkeypatch.setattr(devices, "auto_precision", counted)
    return calls


@pytest.mark.parametrize("flags,want", [({"avx2", "avx512_vnni"}, "int8"), ({"avx2"}, "float")])
def test_a_run_decides_its_precision_once_and_says_why(flags, want, tmp_path, capsys, monkeypatch):
    """predict (whose parts' fingerprint and workers get the decision) resolves `auto` once, in the driver: the
    Predictor, the graph chooser and the opener are handed "int8" or "float" and resolve nothing again."""
    from posecal.models.shipped import is_installed

    if not is_installed("fast"):
        pytest.skip("shipped model not available")
    calls = _counting_auto(monkeypatch, flags)
    cv2.imwrite(str(tmp_path / "a.png"), np.full((120, 160, 3), 90, np.uint8))
    code, _, err = run_cli(capsys, "predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "r.json"),
                           "--model", "fast", "--detector", "none", "--no-progress", "--threads", "1")
    assert code == 0 and len(calls) == 1
    why = "multiplies int8 exactly" if want == "int8" else "has no VNNI"
    assert err.splitlines()[0].startswith(f"posecal: fast runs its {want} graphs (this CPU {why}")


def test_eval_takes_precision_and_writes_which_ran(tmp_path, capsys, monkeypatch):
    from posecal.models.shipped import is_installed

    if not is_installed("fast"):
        pytest.skip("shipped model not available")
    calls = _counting_auto(monkeypatch, {"avx2", "avx512_vnni"})
    ann, images = make_coco(tmp_path / "data", n_images=2)
    for precision, want, resolved in (("auto", "int8", 1), ("float", "float", 0)):
        calls.clear()
        code, _, err = run_cli(capsys, "eval", "--annotations", ann, "--images", images, "--out",
                               tmp_path / precision, "--model", "fast", "--precision", precision, "--no-progress",
                               "--threads", "1")
        assert code == 0, err
        assert json.loads((tmp_path / precision / "metrics.json").read_text())["precision"] == want
        assert len(calls) == resolved
