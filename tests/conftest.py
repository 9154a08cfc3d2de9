"""Shared fixtures: tiny synthetic COCO sets made on the fly, and the path of the real data when present."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# One PyTorch (OpenMP) thread in the test processes and the processes they start, set before torch is imported:
# the tests' tensors are small, and OpenMP's spinning workers fight whatever else runs on a 2-core machine (issue
# 63 item 8: five torch-heavy test files took 70 s quiet and 135 s beside two busy processes with the default, 64 s
# and 109 s with one thread). A test that asks for threads (--threads, set_num_threads) still gets them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
import pytest

try:  # the fuzz tests' one profile (tests/data/test_fuzz_readers.py): fixed examples, few enough for CI on 2 cores
    from hypothesis import HealthCheck, settings

    settings.register_profile("posecal", max_examples=40, deadline=None, derandomize=True, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.load_profile("posecal")
except ImportError:   # hypothesis is in the dev extra; without it the fuzz tests skip
    pass



TEST_ONNX_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "posecal-onnx"
# The fixtures whose tests run write_tiny_model's file in onnxruntime (predict and track's default backend): a
# session that has any exports its graphs ahead (onnx_cache_folder)
TINY_GRAPH_FIXTURES = {"tiny_model", "tiny_onnx"}


def pytest_configure(config):
    config.addinivalue_line("markers", "onnx_graph(model, flip=True): the test runs this shipped model's ONNX "
                                       "export from the session's cache, which the session exports ahead (in the "
                                       "background, from its start)")


@pytest.fixture(autouse=True, scope="session")
def onnx_cache_folder(request):
    """The tests' own ONNX cache (posecal/export/cache.py), shared by the session and its subprocesses, so that
    a test run neither writes to the user's cache nor depends on what it holds. It persists between runs
    (.pytest_cache, ignored by git): its entries are named by the model file's and the graph code's digests, so
    an entry is only ever reused for the same bytes and code, and the shipped models' exports (20-30 s each) are
    made once per checkout rather than once per run. POSECAL_TEST_CACHE moves it.

    A fresh clone has none of them (issue 83): the graphs this session's tests will run (the tiny model's, by
    TINY_GRAPH_FIXTURES, and the shipped ones their onnx_graph marks name) that the cache lacks are exported from
    the session's start by one background process, on the core the tests (one thread, mostly) leave idle. A test
    that needs one sooner waits for it on the cache's file lock instead of exporting it again; the process is
    stopped when the session ends."""
    folder = Path(os.environ.get("POSECAL_TEST_CACHE") or TEST_ONNX_CACHE)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["POSECAL_CACHE_DIR"] = str(folder)
    ahead = _export_ahead(request, folder)
    yield folder
    if ahead is not None and ahead.poll() is None:
        ahead.terminate()   # a short session ends before its graphs are made: an entry is written whole or not at all
        ahead.wait()


# Run by _export_ahead's process: each MODEL:flip|noflip argument's graph into the cache (a cache hit costs nothing)
EXPORT_AHEAD = """
import os, sys
if hasattr(os, "nice"):
    os.nice(10)   # the tests come first
from posecal.export.cache import cached_onnx_bytes
for spec in sys.argv[1:]:
    model, flip = spec.rsplit(":", 1)
    try:
        cached_onnx_bytes(model, flip == "flip", log=lambda line: None)
    except Exception as e:   # the test that needs the graph exports it itself, and says why it cannot
        print(f"{spec}: {e}", file=sys.stderr)
"""


def _export_ahead(request, folder: Path):
    """The background process exporting the graphs the session's tests need that the cache lacks, or None."""
    import importlib.util
    import subprocess

    def importable(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ImportError:   # a finder that refuses it (tests/export/test_without_torch.py's)
            return False

    items = request.session.items
    if not items or not all(importable(m) for m in ("torch", "onnxscript", "onnxruntime")):
        return None
    specs = []
    if any(TINY_GRAPH_FIXTURES & set(getattr(item, "fixturenames", ())) for item in items):
        tiny = str(request.getfixturevalue("session_tiny_model"))
        specs += [f"{tiny}:flip", f"{tiny}:noflip"]
    for item in items:
        if (any(m.args and m.args[0] is True for m in item.iter_markers("skipif"))
                or ("real_person" in getattr(item, "fixturenames", ()) and not COCO_CROPS.is_dir())):
            continue   # skipped here (no ../shared): its graph is not needed
        for mark in item.iter_markers("onnx_graph"):
            spec = f"{mark.args[0]}:{'flip' if mark.kwargs.get('flip', True) else 'noflip'}"
            if spec not in specs:
                specs.append(spec)
    if not specs:
        return None
    from posecal.export.cache import entry_name
    from posecal.models.shipped import model_file

    missing = [s for s in specs if not (folder / entry_name(model_file(s.rsplit(":", 1)[0]),
                                                             s.endswith(":flip"))).is_file()]
    if not missing:
        return None
    try:
        log = open(folder / "export-ahead.log", "w")   # why a graph could not be made ahead, if one could not
    except OSError:   # a cache folder that cannot be written: the tests export in memory (posecal/export/cache.py)
        return None
    with log:
        return subprocess.Popen([sys.executable, "-c", EXPORT_AHEAD, *missing], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)


@pytest.fixture(scope="session")
def session_tiny_model(tmp_path_factory) -> Path:
    """write_tiny_model's file, written once for the session (its ONNX graphs are the session's: tiny_onnx)."""
    return write_tiny_model(tmp_path_factory.mktemp("session-tiny") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(session_tiny_model, onnx_cache_folder):
    """tiny_onnx(flip) -> the bytes of write_tiny_model's ONNX export, from the session's cache: the entry every
    test's tiny model file (the same bytes and name) runs from in onnxruntime, exported once per session (ahead:
    onnx_cache_folder). A test given its own cache folder still gets the session's bytes."""
    from posecal.export.cache import CACHE_ENV, cached_onnx_bytes

    made: dict[bool, bytes] = {}

    def graph(flip: bool) -> bytes:
        if flip not in made:
            own = os.environ.get(CACHE_ENV)
            os.environ[CACHE_ENV] = str(onnx_cache_folder)
            try:
                made[flip] = cached_onnx_bytes(session_tiny_model, flip, log=lambda line: None)
            finally:
                if own is None:
                    os.environ.pop(CACHE_ENV, None)
                else:
                    os.environ[CACHE_ENV] = own
        return made[flip]
    return graph


def write_walking_video(path: Path, frames: int = 8, shift: float = 10, size=(160, 120)) -> Path:
    """A stick figure walking right by 3 px a frame on a grey background (MJPG for .avi, mp4v otherwise)."""
    w, h = size
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, 10, (w, h))
    for f in range(frames):
        img = np.full((h, w, 3), 40, np.uint8)
        kp = STANDING * 0.7 + [shift + 3 * f, 5]
        for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
            cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (200, 180, 160), 3)
        writer.write(img)
    writer.release()
    return path


def write_tiny_model(path: Path) -> Path:
    """An untrained tiny model with all heads (48x64 input), the same bytes every time (seeded): its ONNX export
    (predict and track run in onnxruntime by default) is then made once per test session, in the session's
    cache, not once per test module (each takes 10-20 s)."""
    import torch

    from posecal.models.checkpoint import save_model
    from posecal.models.config import ModelConfig
    from posecal.models.estimator import build_estimator

    cfg = ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False, quality_heads=True,
                      head_hidden=16)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        save_model(build_estimator(cfg.head_widths, imagenet=False, quality_heads=True, head_hidden=16), cfg, path)
    finally:
        torch.random.set_rng_state(state)
    return path


def write_train_config(tmp_path, ann, img_dir, batch_size: int, max_steps: int):
    """A 1-epoch config on the tiny set, tiny untrained model, training into tmp_path/run."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
out_dir: {tmp_path / 'run'}
data: {{train_annotations: {ann}, train_images: {img_dir}, val_annotations: {ann}, val_images: {img_dir}}}
model: {{input_wh: [48, 64], head_widths: [16, 16, 8], imagenet: false}}
epochs: 1
batch_size: {batch_size}
max_steps: {max_steps}
num_workers: 0
""")
    return cfg


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# the benches' shared code (bench/lab: synthetic scenes, track scoring) is tested too, but is no part of the package
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# and the tools' own modules (tools/verifier_export.py, tools/video_choice.py, ...): tested, no part of the package
if str(Path(__file__).resolve().parents[1] / "tools") not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parents[1] / "tools"))
COCO_CROPS = SHARED / "data" / "coco-val2017-crops"
needs_shared = pytest.mark.skipif(not COCO_CROPS.is_dir(), reason="../shared data not available")

# A real standing person with all 17 keypoints labelled visible (val split), large in its crop.
REAL_PERSON = ("000000381639_900003651.jpg", 900003651)


@pytest.fixture(scope="session")
def real_person() -> tuple[str, np.ndarray, np.ndarray]:
    """(image path, COCO box, (17, 3) keypoints) of REAL_PERSON; skipped without ../shared."""
    if not COCO_CROPS.is_dir():
        pytest.skip("../shared data not available")
    data = json.loads((COCO_CROPS / "annotations" / "val.json").read_text())
    ann = next(a for a in data["annotations"] if a["id"] == REAL_PERSON[1])
    return (str(COCO_CROPS / "images" / REAL_PERSON[0]), np.array(ann["bbox"], float),
            np.array(ann["keypoints"], float).reshape(17, 3))


# A standing person in a 120x160 image (x, y), COCO order.
STANDING = np.array([[60, 30], [56, 26], [64, 26], [52, 28], [68, 28], [45, 50], [75, 50], [40, 75], [80, 75],
                     [38, 98], [82, 98], [50, 100], [70, 100], [48, 128], [72, 128], [47, 152], [73, 152]], float)


def make_coco(folder: Path, n_images: int = 4, size=(120, 160), seed: int = 0) -> tuple[Path, Path]:
    """Write n_images drawn stick figures and their COCO keypoint JSON; returns (json path, image folder)."""
    rng = np.random.default_rng(seed)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        w, h = size
        img = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        kp = STANDING + rng.normal(0, 2, STANDING.shape)
        for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
            cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (200, 180, 160), 3)
        cv2.circle(img, tuple(int(v) for v in kp[0]), 9, (150, 170, 220), -1)
        name = f"img{i}.jpg"
        cv2.imwrite(str(img_dir / name), img)
        vis = np.full(17, 2)
        vis[3] = 1
        if i % 2:
            vis[4] = 0
        flat = np.concatenate([np.where(vis[:, None] > 0, kp, 0), vis[:, None]], 1).reshape(-1)
        x0, y0 = kp.min(0) - 5
        x1, y1 = kp.max(0) + 5
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        anns.append({"id": 100 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                     "keypoints": [float(v) for v in flat], "num_keypoints": int((vis > 0).sum()),
                     "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                     "area": float(0.5 * (x1 - x0) * (y1 - y0))})
    ann_file = folder / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person", "keypoints": [], "skeleton": []}]}))
    return ann_file, img_dir


@pytest.fixture
def tiny_coco(tmp_path):
    return make_coco(tmp_path)


def tiny_heads_predictor(folder: Path):
    """A Predictor on an untrained tiny model with all heads (48x64 input), fp16 on disk like a packed model;
    no detector: an image without boxes is one whole-image box, always kept."""
    from posecal.models.checkpoint import save_model
    from posecal.models.config import ModelConfig
    from posecal.models.estimator import build_estimator
    import torch

    from posecal.inference.predictor import Predictor

    path = folder / "heads.pt"
    cfg = ModelConfig(input_wh=(48, 64), head_widths=(16, 16, 8), imagenet=False, quality_heads=True,
                      head_hidden=16)
    state = torch.random.get_rng_state()
    torch.manual_seed(1)   # the same bytes every time, as write_tiny_model: one ONNX export per session, not per call
    try:
        save_model(build_estimator(cfg.head_widths, imagenet=False, quality_heads=True, head_hidden=16), cfg, path,
                   half=True)
    finally:
        torch.random.set_rng_state(state)
    return Predictor(path, detector=None, min_pose_quality=0, backend="torch")


def val_subset(folder: Path, n_images: int) -> tuple[Path, dict]:
    """The first n_images images of the real val split and their persons, as a COCO file in folder."""
    ann = json.loads((COCO_CROPS / "annotations" / "val.json").read_text())
    keep = {im["id"] for im in ann["images"][:n_images]}
    ann["images"] = [im for im in ann["images"] if im["id"] in keep]
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
    sub = Path(folder) / f"val_{n_images}.json"
    sub.write_text(json.dumps(ann))
    return sub, ann


def real_person_crops(real_person, input_wh):
    """Two crops of the real person (its box, and a box cut to 60 %) as one normalised batch."""
    from posecal.data.coco import read_image
    from posecal.data.topdown import to_batch
    from posecal.data.transforms import person_crop_matrix, warp

    path, box, _ = real_person
    image = read_image(path)
    return to_batch([warp(image, person_crop_matrix(b, input_wh), input_wh) for b in (box, box * [1, 1, 0.6, 0.6])])


def offset_pairs(n, offset_px, quality, source="detected", seed=0, noise=0.01):
    """n (truth, record) pairs of tracked video whose keypoints all sit offset_px off the truth (person area 4000
    px^2: the true OPKS is the same everywhere) while the record claims `quality` (+ N(0, noise)) for every keypoint
    and the pose (the video calibration's tests)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        gt = np.zeros((17, 3))
        gt[:, :2] = rng.uniform(100, 200, (17, 2))
        gt[:, 2] = 2
        kp = gt.copy()
        kp[:, 0] += offset_px
        q = float(np.clip(quality + rng.normal(0, noise), 0, 1)) if noise else float(quality)
        pairs.append(({"keypoints": gt.ravel().tolist(), "area": 4000.0, "bbox": [100, 100, 100, 100]},
                      {"keypoints": kp.ravel().tolist(), "keypoint_quality": [q] * 17, "pose_quality": q,
                       "keypoint_radius": [3.0] * 17, "pose_source": source, "track_id": 1,
                       "bbox": [100, 100, 100, 100]}))
    return pairs


def pose_of(xy, quality=0.8, kq=0.9, vis=2):
    """A PersonPose at keypoints xy (K, 2): its box 10 px around them, every keypoint of quality kq and
    visibility vis, pose quality `quality` (the tracker's tests)."""
    from posecal.inference.predictor import PersonPose

    xy = np.asarray(xy, float)
    lo, hi = xy.min(0) - 10, xy.max(0) + 10
    k = len(xy)
    return PersonPose(np.r_[lo, hi - lo], xy, np.full(k, kq), np.full(k, kq), quality, np.full(k, vis),
                      np.tile([0.0, 0.0, 1.0], (k, 1)))


def make_lsp_like(folder: Path, n: int = 3) -> tuple[Path, Path]:
    """An LSPET-style file of n drawn persons: 14 LSP joints in LSP order (neck and head top placed above the
    shoulders); returns (json path, image folder)."""
    from posecal.skeleton import LSP_TO_COCO

    ann, img_dir = make_coco(folder, n_images=n, seed=3)
    data = json.loads(ann.read_text())
    for a in data["annotations"]:
        coco = np.array(a["keypoints"]).reshape(17, 3)
        lsp = np.zeros((14, 3))
        for src, dst in enumerate(LSP_TO_COCO):
            lsp[src] = coco[dst] if dst is not None else [60, 20 if src == 13 else 40, 2]
        a["keypoints"] = lsp.reshape(-1).tolist()
    out = folder / "lsp.json"
    out.write_text(json.dumps(data))
    return out, img_dir


def write_movenet_base(path: Path, backbone: str) -> Path:
    """A MoveNet model file (the shipped network of `backbone`, no quality outputs): a trust model's base."""
    from posecal.models.checkpoint import model_from_config, save_model
    from posecal.models.config import ModelConfig, network_input

    cfg = network_input(ModelConfig(backbone=backbone), given=())
    save_model(model_from_config(cfg), cfg, path, half=True)
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`posecal ARGS` in this process: (exit code, stdout, stderr), and never a traceback."""
    from posecal.cli.main import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def cli_error(capsys, *args) -> str:
    """The one line a refused command prints (exit 2), without its `posecal: error: ` head."""
    rc, _, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("posecal: error: "), err
    return lines[0][len("posecal: error: "):]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained tiny model file (write_tiny_model), one per test module."""
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def coco(tmp_path):
    """A tiny COCO set of 3 images (make_coco): (annotations, image folder)."""
    return make_coco(tmp_path / "data", n_images=3)


def predict(model, *args) -> int:
    """`posecal predict` with a tiny model; whole images (keeping every pose) unless the test picks boxes."""
    from posecal.cli.main import main

    args = [str(a) for a in args]
    whole = [] if {"--detector", "--boxes"} & set(args) else ["--detector", "none", "--min-pose-quality", "0"]
    return main(["predict", *args, *whole, "--model", str(model), "--no-progress"])


def eval_args(model, ann, img_dir, out, *args) -> list:
    """The arguments of `posecal eval` on a set with a model, one thread, no progress bar."""
    return ["eval", "--annotations", ann, "--images", img_dir, "--out", out, "--model", model, "--no-progress",
            "--threads", "1", *args]


ROOT = Path(__file__).resolve().parents[1]


def train_one_step(base: Path) -> tuple[Path, Path]:
    """`posecal train` for one step on a tiny COCO set made under base: (the run folder with last.pt and
    best_model.pt, the image folder)."""
    import contextlib
    import io

    from posecal.cli.main import main

    ann, img_dir = make_coco(base / "data", n_images=4)
    cfg = write_train_config(base, ann, img_dir, batch_size=2, max_steps=1)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(cfg), "--no-progress"]) == 0
    return base / "run", img_dir


def interrupt_second_estimate(monkeypatch) -> None:
    """Ctrl-C (KeyboardInterrupt) at the Predictor's second estimate call: a run stopped after its first input."""
    from posecal.inference.predictor import Predictor

    real, calls = Predictor.estimate, []

    def second_batch_interrupted(self, items, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, items, **kw)
    monkeypatch.setattr(Predictor, "estimate", second_batch_interrupted)


def picture_batches(monkeypatch, interrupt_at: int | None = None) -> list:
    """The batches of pictures eval's and audit's posing hands its map_batches class (RecordBatches), recorded by
    their unit indices as they are posed; with interrupt_at, Ctrl-C (KeyboardInterrupt) at that call (1-based):
    a run stopped after the pictures of the calls before it."""
    from posecal.inference import record_posing

    real, calls = record_posing.RecordBatches.__call__, []

    def recorded(self, batch):
        calls.append(list(batch["index"]))
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(self, batch)
    monkeypatch.setattr(record_posing.RecordBatches, "__call__", recorded)
    return calls


KNOWN_ABSENT = 9   # left wrist: the keypoint known_person's visibility head calls absent (the next one occluded)


def known_person(offset: float, *, y_step: float = 10.0, visibility=True, track_id=None, person_probability=None):
    """A PersonPose with known numbers, for conversions to other libraries: keypoints on a diagonal from
    (offset + 20, offset + 20), 10 px apart in x and `y_step` in y; keypoint KNOWN_ABSENT absent, the next occluded,
    the rest visible (without `visibility`: no visibility head); qualities, radii and in-frame of known values."""
    from posecal.inference.estimator import PersonPose

    k = len(STANDING)
    xy = offset + 20 + np.stack([10 * np.arange(k), y_step * np.arange(k)], 1).astype(float)
    vis = np.full(k, 2)
    vis[KNOWN_ABSENT], vis[KNOWN_ABSENT + 1] = 0, 1
    probs = np.tile([0.1, 0.2, 0.7], (k, 1))
    return PersonPose(box=np.array([offset + 10, offset + 12, 180.5, 190.25]), keypoints=xy,
                      keypoint_quality=np.linspace(0.05, 0.95, k) + offset / 1000, heatmap_scores=np.full(k, 0.5),
                      pose_quality=0.8 - offset / 1000, visibility=vis if visibility else None,
                      visibility_probs=probs if visibility else None, keypoint_radius=np.full(k, 3.5) + offset,
                      in_frame=np.full(k, 0.99), person_probability=person_probability, track_id=track_id)
