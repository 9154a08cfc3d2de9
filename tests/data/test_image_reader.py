"""The one image reader: every bad file is one PosecalInputError naming it; odd but valid files read fine."""
import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from posecal.data import images
from posecal.data.coco import read_image
from posecal.errors import PosecalInputError

from conftest import predict


def _png(path, h=20, w=30) -> bytes:
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path.read_bytes()


def _refused(path, what: str) -> str:
    with pytest.raises(PosecalInputError) as info:
        read_image(path)
    message = str(info.value)
    assert images.display_name(path) in message and what in message and "\n" not in message
    return message


def test_missing_folder_and_empty(tmp_path):
    _refused(tmp_path / "missing.png", "image not found")
    _refused(tmp_path, "is a folder")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _refused(tmp_path / "empty.jpg", "empty file")


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    _png(path)
    if os.geteuid() == 0:  # root reads anything: simulate what a user without the permission gets
        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(images, "open", denied, raising=False)
    else:
        path.chmod(0)
    try:
        _refused(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_corrupt_and_truncated(tmp_path):
    (tmp_path / "corrupt.png").write_bytes(b"this is not an image at all")
    _refused(tmp_path / "corrupt.png", "cannot decode image")
    png = _png(tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    _refused(tmp_path / "cut.png", "truncated PNG")
    cv2.imwrite(str(tmp_path / "good.jpg"), np.full((20, 30, 3), 90, np.uint8))
    jpeg = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    _refused(tmp_path / "cut.jpg", "truncated JPEG")


def test_huge_header_is_refused_without_decoding(tmp_path, monkeypatch):
    png = _png(tmp_path / "small.png")
    ihdr = struct.pack(">II", 100_000, 100_000) + png[24:29]  # width, height; depth/colour/... as before
    chunk = b"IHDR" + ihdr
    forged = png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]
    (tmp_path / "bomb.png").write_bytes(forged)
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    assert "10000000000" in _refused(tmp_path / "bomb.png", "too large").replace(",", "")


def test_over_our_limit_but_under_pillows_gives_the_size(tmp_path, monkeypatch):
    _png(tmp_path / "big.png", h=20, w=30)
    monkeypatch.setattr(images, "MAX_PIXELS", 599)
    assert "30x20 = 600 pixels" in _refused(tmp_path / "big.png", "too large")


def test_non_utf8_file_name_reads(tmp_path):
    png = _png(tmp_path / "good.png")
    bad_name = os.path.join(os.fsencode(tmp_path), b"bad\xff.png")
    with open(bad_name, "wb") as f:
        f.write(png)
    expected = read_image(tmp_path / "good.png")
    assert np.array_equal(read_image(bad_name), expected)
    assert np.array_equal(read_image(os.fsdecode(bad_name)), expected)  # surrogate-escaped str
    os.remove(os.path.join(os.fsencode(tmp_path), b"good.png"))
    os.rename(bad_name, os.path.join(os.fsencode(tmp_path), b"gone\xff.png"))
    assert "bad\\xff.png" in _refused(bad_name, "image not found")


def _exif_jpeg(path, orientation: int) -> np.ndarray:
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:5, :10] = 255  # a white corner shows where the top-left went
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[images.EXIF_ORIENTATION] = orientation
    im.save(path, "JPEG", exif=exif, quality=95)
    return rgb


def test_exif_orientation_applied_only_when_asked(tmp_path):
    path = tmp_path / "rotated.jpg"
    _exif_jpeg(path, 6)
    assert read_image(path).shape == (20, 40, 3)
    upright = read_image(path, apply_exif=True)
    assert upright.shape == (40, 20, 3)
    assert upright[:10, -5:].mean() > 200 and upright[:10, :5].mean() < 50  # 90 deg clockwise: corner at top right


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_match_pillow(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    _exif_jpeg(path, orientation)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))[:, :, ::-1]
    got = read_image(path, apply_exif=True)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 3  # decoders differ by rounding only


def test_predict_folder_with_a_corrupt_image_goes_on(tiny_model, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "good.png", h=90, w=70)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage IEND")
    out = tmp_path / "res.json"
    assert predict(tiny_model, folder, "--out", out) == 0
    assert [r["file_name"] for r in json.loads(out.read_text())] == ["good.png"]
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "broken.png" in line]
    assert len(err_lines) == 1 and "cannot decode image" in err_lines[0]


def test_unreadable_images_lists_each_bad_file_once_with_its_reason(tmp_path):
    from posecal.data.images import check_image_file, unreadable_images
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((8, 8, 3), np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:30])
    missing = tmp_path / "missing.jpg"
    check_image_file(good)                                         # no error: a good file passes
    bad = unreadable_images([good, cut, missing, cut])
    assert list(bad) == [cut, missing]
    assert bad[cut].endswith("truncated PNG (file ends before the IEND chunk)") and "missing.jpg: image not found" in bad[missing]
