"""A phone photo stored sideways with an EXIF Orientation tag is the photo a viewer shows upright: every way a user's
photo reaches posecal (a path to the API, a PIL image opened from it, `Predictor.predict`, `posecal predict`) gives
the same picture, and so the same people, as the upright copy of the photo (issue 39)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from posecal.cli.main import main
from posecal.data.images import read_image
from posecal.data.sources import Frame, iter_frames
from posecal.inference.predictor import Predictor, bgr_image

# orientation tag -> np.rot90 turns that store the upright picture so that a viewer applying the tag shows it upright
STORED_TURNS = {6: 1, 8: -1, 3: 2}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """rot{6,8,3}.jpg: a real photo (portrait, so that a quarter turn changes its shape) stored turned, with the EXIF
    tag that turns it back, as phones write them; upright{6,8,3}.png: the upright copy, the stored pixels turned
    back by numpy (lossless, so that the copies hold the very pixels a viewer shows, not another JPEG's)."""
    data = pytest.importorskip("skimage.data")
    d = tmp_path_factory.mktemp("exif")
    photo = np.ascontiguousarray(data.astronaut()[:, 60:420])   # RGB, 512 x 360
    for tag, turns in STORED_TURNS.items():
        exif = Image.Exif()
        exif[0x0112] = tag
        Image.fromarray(np.ascontiguousarray(np.rot90(photo, turns))).save(d / f"rot{tag}.jpg", quality=95,
                                                                           exif=exif.tobytes())
        stored = cv2.imdecode(np.fromfile(d / f"rot{tag}.jpg", np.uint8), cv2.IMREAD_UNCHANGED)
        assert stored.shape[:2] == ((512, 360) if tag == 3 else (360, 512))
        cv2.imwrite(str(d / f"upright{tag}.png"), np.ascontiguousarray(np.rot90(stored, -turns)))
    return d


def test_every_reader_gives_the_viewers_picture(photos):
    for tag in STORED_TURNS:
        upright = read_image(photos / f"upright{tag}.png").astype(int)
        assert upright.shape == (512, 360, 3)
        path = photos / f"rot{tag}.jpg"
        with Image.open(path) as im:
            pictures = {"read_image": read_image(path, apply_exif=True), "PIL image": bgr_image(im, False, "image")}
        frame = next(iter_frames([(path, path.name)]))
        assert isinstance(frame, Frame)
        pictures["posecal predict's reader"] = frame.bgr
        for how, picture in pictures.items():
            assert picture.shape == upright.shape, (tag, how)
            # Pillow's JPEG decoder may round a pixel here and there otherwise than OpenCV's
            assert np.abs(picture.astype(int) - upright).max() <= (2 if how == "PIL image" else 0), (tag, how)


def _close(a, b, tol=2.0) -> bool:
    return bool(np.abs(np.asarray(a, float) - np.asarray(b, float)).max() <= tol)


def test_rotated_photo_same_people_in_the_api(photos):
    p = Predictor("fast", backend="torch", threads=1)
    for tag in STORED_TURNS:
        (ref,) = p(str(photos / f"upright{tag}.png"))
        path = photos / f"rot{tag}.jpg"
        with Image.open(path) as im:
            ways = {"path": p(str(path)), "PIL image": p(im)}
        ways["Predictor.predict"] = next(iter(p.predict(path))).people
        for how, people in ways.items():
            assert len(people) == 1, (tag, how)
            assert _close(people[0].box, ref.box), (tag, how, people[0].box, ref.box)
            assert _close(people[0].keypoints, ref.keypoints), (tag, how)


def test_rotated_photo_same_people_in_posecal_predict(photos, tmp_path, capsys):
    out = tmp_path / "p.json"
    names = [f"{kind}{tag}.{ext}" for tag in STORED_TURNS for kind, ext in (("upright", "png"), ("rot", "jpg"))]
    rc = main(["predict", *(str(photos / n) for n in names), "--model", "fast", "--backend", "torch",
               "--threads", "1", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    by_name = {e["file_name"]: e for e in json.loads(out.read_text())}
    assert sorted(by_name) == sorted(names)
    for tag in STORED_TURNS:
        name, ref = f"rot{tag}.jpg", by_name[f"upright{tag}.png"]
        assert _close(by_name[name]["bbox"], ref["bbox"]), (name, by_name[name]["bbox"], ref["bbox"])
        kp, kp_ref = (np.reshape(e["keypoints"], (17, 3))[:, :2] for e in (by_name[name], ref))
        assert _close(kp, kp_ref), name
