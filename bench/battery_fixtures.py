"""Bad-input battery's fixtures: the good and broken inputs the cases use (used by python bench/battery_*.py).

Tiny drawn images, broken files, a fake detector and a 4-image COCO set, made in a temp folder, and the paths
cases name them by.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_coco  # noqa: E402 - the tests' tiny COCO set, one implementation


def person_image(w: int = 160, h: int = 120) -> np.ndarray:
    """A drawn stick figure on a dark background (BGR)."""
    img = np.full((h, w, 3), 30, np.uint8)
    cx = w // 2
    cv2.circle(img, (cx, h // 6), max(3, h // 14), (150, 170, 220), -1)
    for a, b in (((cx, h // 4), (cx, h * 3 // 5)), ((cx, h // 3), (cx - w // 8, h // 2)),
                 ((cx, h // 3), (cx + w // 8, h // 2)), ((cx, h * 3 // 5), (cx - w // 12, h - 5)),
                 ((cx, h * 3 // 5), (cx + w // 12, h - 5))):
        cv2.line(img, a, b, (200, 180, 160), 3)
    return img


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking 100 KB-free PNG whose IHDR claims width x height RGB pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def fake_yolox(path: Path) -> None:
    """A YOLOX-style ONNX detector (64 px input, 84 anchor rows, 1 class) that always finds one person with
    score 0.81 in the middle of a 160 x 120 image, whatever the input."""
    from onnx import TensorProto, helper, numpy_helper

    raw = np.zeros((1, 84, 6), np.float32)
    # stride 32, cell (gx 1, gy 0): centre (32, 24), size 40 x 44 in the 64 px canvas (image scaled by 0.4)
    raw[0, 81] = [0.0, 0.75, np.log(40 / 32), np.log(44 / 32), 0.9, 0.9]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 84, 6])
    mean = helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0)  # input used, scaled to nothing
    zero = helper.make_node("Mul", ["m", "zero"], ["z"])
    add = helper.make_node("Add", ["raw", "z"], ["output"])
    graph = helper.make_graph([mean, zero, add], "fake_yolox", [x], [y],
                              initializer=[numpy_helper.from_array(raw, "raw"),
                                           numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def exif_jpeg(path: Path, bgr: np.ndarray, orientation: int) -> None:
    from PIL import Image

    im = Image.fromarray(bgr[:, :, ::-1])
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=90, exif=exif.tobytes())


def tiny_video(path: Path, frames: int = 6) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for i in range(frames):
        img = person_image()
        cv2.putText(img, str(i), (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
        writer.write(img)
    writer.release()


# A COCO val crop whose person the shipped detector finds in colour but not in grey before issue 22
# (../shared/data; the grey cases are left out where it is missing).
GREY_SOURCE = (Path(__file__).resolve().parents[2] / "shared/data/coco-val2017-crops/images"
               / "000000004134_900000070.jpg")


def grey_photo(d: Path) -> Path | None:
    """The crop as a grey JPEG (what a black-and-white photo is), or None without the shared data."""
    if not GREY_SOURCE.is_file():
        return None
    grey = cv2.cvtColor(cv2.imread(str(GREY_SOURCE)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(d / "grey_photo.jpg"), grey)
    return d / "grey_photo.jpg"


class Fixtures:
    """Every input file the cases use, made once in `root`; cases copy what they change."""

    def __init__(self, root: Path, python: str):
        self.root, self.python = root, python
        weights = Path(self._posecal_dir()) / "weights"   # the fast shipped model (posecal_default.pt before)
        self.model = str(next((weights / n for n in ("posecal_fast.pt", "posecal_default.pt") if (weights / n).is_file()),
                              weights / "posecal_fast.pt"))
        d = self.d = root / "files"
        d.mkdir()
        good = person_image()
        ok, jpg = cv2.imencode(".jpg", good)
        self.jpg_bytes = jpg.tobytes()
        (d / "good.jpg").write_bytes(self.jpg_bytes)
        (d / "good2.jpg").write_bytes(cv2.imencode(".jpg", person_image()[:, ::-1])[1].tobytes())
        png = cv2.imencode(".png", good)[1].tobytes()
        (d / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
        (d / "truncated.jpg").write_bytes(self.jpg_bytes[: len(self.jpg_bytes) // 2])
        (d / "truncated.png").write_bytes(png[: len(png) // 2])
        (d / "empty.jpg").write_bytes(b"")
        (d / "huge.png").write_bytes(huge_header_png())
        (d / "text.png").write_text("not an image\n")
        (d / "png_named.jpg").write_bytes(png)
        (d / "gray16.png").write_bytes(cv2.imencode(".png", (cv2.cvtColor(good, cv2.COLOR_BGR2GRAY)
                                                               .astype(np.uint16) * 257))[1].tobytes())
        self.nonutf8 = os.fsencode(d) + b"/caf\xe9.jpg"       # Latin-1 e-acute: not valid UTF-8
        with open(self.nonutf8, "wb") as f:
            f.write(self.jpg_bytes)
        exif_jpeg(d / "exif6.jpg", good, 6)                    # stored 160 x 120, shown 120 x 160
        tiny_video(d / "clip.avi")
        fake_yolox(d / "fake_yolox.onnx")
        (d / "corrupt.pt").write_bytes(b"PK\x03\x04 not a torch file" * 20)
        (d / "corrupt.onnx").write_text("this is not a network\n")
        (d / "a_file").write_text("I am a file\n")
        (d / "boxes_bad.json").write_text('{"good.jpg": [[10, 10, 50')
        (d / "boxes_neg.json").write_text(json.dumps({"good.jpg": [[10, 10, -50, 80]],
                                                       "good2.jpg": [[40, 5, 80, 110]]}))
        (d / "boxes_norm.json").write_text(json.dumps({"good.jpg": [[0.2, 0.1, 0.5, 0.8]]}))
        # collision: photo.jpg and photo.png in one folder
        col = d / "collide"
        col.mkdir()
        (col / "photo.jpg").write_bytes(self.jpg_bytes)
        (col / "photo.png").write_bytes(png)
        # a folder of good and bad files
        mixed = d / "mixed"
        mixed.mkdir()
        for name in ("good.jpg", "corrupt.jpg", "truncated.jpg", "empty.jpg", "huge.png"):
            shutil.copy(d / name, mixed / name)
        # a tiny COCO set (4 images, one person each)
        self.ann, self.images = make_coco(root / "coco", n_images=4)
        # issue 22: boxes that cannot hold a person, and detections/annotations that do not fit
        (d / "boxes_tiny.json").write_text(json.dumps({"good.jpg": [[10, 10, 0.001, 0.001], [60, 10, 40, 100]],
                                                       "good2.jpg": [[40, 5, 80, 110]]}))
        (d / "dets_nan_tiny.json").write_text(json.dumps([
            {"image_id": i, "category_id": 1, "bbox": b, "score": 0.9} for i, b in (
                (1, [10, 10, 60, 100]), (2, [10, 10, float("nan"), 100]), (3, [10, 10, 0.001, 0.001]),
                (4, [10, 10, 60, 100]))]))
        (d / "dets_unknown_id.json").write_text(json.dumps([{"image_id": 99, "category_id": 1,
                                                             "bbox": [10, 10, 60, 100], "score": 0.9}]))
        (d / "dets_empty.json").write_text("[]")
        data = json.loads(self.ann.read_text())
        for a in data["annotations"]:
            a["num_keypoints"] = 0
        (d / "ann_nobody.json").write_text(json.dumps(data))
        self.grey_photo = grey_photo(d)

    def training_checkpoint(self, where: Path) -> Path:
        """A file shaped like `posecal train`'s last.pt (weights, optimizer, schedule, config), without training."""
        import torch

        path = where / "run" / "last.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": {}, "optim": {}, "state": {"epoch": 1, "step": 1}, "config": {"model": {}}}, path)
        return path

    def _posecal_dir(self) -> str:
        import importlib.util  # finds the posecal on PYTHONPATH without importing it (and torch)

        return str(Path(importlib.util.find_spec("posecal").origin).parent)

    def coco_copy(self, where: Path, replace: dict[str, bytes | None] | None = None) -> tuple[Path, Path]:
        """A copy of the COCO set's images with some files replaced by other bytes (None: deleted)."""
        img = where / "images"
        shutil.copytree(self.images, img)
        for name, data in (replace or {}).items():
            (img / name).unlink()
            if data is not None:
                (img / name).write_bytes(data)
        return self.ann, img

    def train_config(self, where: Path, extra: str = "", model: str | None = None, images: Path | None = None,
                     out_dir: Path | str | None = None) -> Path:
        img = images or self.images
        cfg = where / "cfg.yaml"
        cfg.write_text(f"""out_dir: {out_dir or where / 'run'}
data: {{train_annotations: {self.ann}, train_images: {img}, val_annotations: {self.ann}, val_images: {img}}}
model: {model or '{input_wh: [48, 64], head_widths: [16, 16, 8], imagenet: false}'}
epochs: 1
batch_size: 2
max_steps: 1
num_workers: 0
threads: 1
""" + extra)
        return cfg


def P(name):  # noqa: N802 - a path in the fixture folder, resolved when the case runs
    return lambda fx, cwd: fx.d / name


MODEL = lambda fx, cwd: ["--model", fx.model]  # noqa: E731
OUT = ["--out", "p.json", "--no-progress", "--threads", "1"]

IMG = "img = np.zeros((120, 160, 3), np.uint8); img[20:100, 70:90] = 200\np = Predictor(MODEL)\n"
