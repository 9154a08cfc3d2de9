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
from posecal.inference.image_input import picture_bgr
from posecal.inference.predictor import Predictor

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
            pictures = {"read_image": read_image(path, apply_exif=True), "PIL image": picture_bgr(im)}
        frame = next(iter_frames([(path, path.name)]))
        assert isinstance(frame, Frame)
        pictures["posecal predict's reader"] = frame.bgr
        for how, picture in pictures.items():
            assert picture.shape == upright.shape, (tag, how)
            # Pillow's JPEG decoder may round a pixel here and there otherwise than OpenCV's
            assert np.abs(picture.astype(int) - upright).max() <= (2 if how == "PIL image" else 0), (tag, how)


def _close(a, b, tol=2.0) -> bool:
    return bool(np.abs(np.asarray(a, float) - np.asarray(b, float)).max() <= tol)


@pytest.mark.slow
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


# What a photo viewer does to the stored pixels for each EXIF orientation (numpy, independent of posecal), and the
# stored pixels a camera writes for an upright picture (its inverse: 6 and 8 are each other's, the rest their own).
VIEW = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1)}
STORE = {**VIEW, 6: VIEW[8], 8: VIEW[6]}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """For every orientation 1-8, a drawn person (portrait 120 x 160, on noise so that every turn and mirror is
    another picture) stored as a camera stores it with the EXIF tag, as JPEG and as PNG (eXIf chunk), and the
    upright copy of the very pixels stored (the stored file decoded as stored, turned by VIEW, kept as PNG)."""
    from conftest import STANDING

    d = tmp_path_factory.mktemp("tagged")
    rng = np.random.default_rng(5)
    upright = rng.integers(0, 60, (160, 120, 3), np.uint8)
    for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12)):
        cv2.line(upright, tuple(int(v) for v in STANDING[a]), tuple(int(v) for v in STANDING[b]), (200, 180, 160), 3)
    cv2.circle(upright, tuple(int(v) for v in STANDING[0]), 9, (150, 170, 220), -1)
    pairs = []
    for tag, view in VIEW.items():
        for ext in ("jpg", "png"):
            exif = Image.Exif()
            exif[0x0112] = tag
            name = d / f"tag{tag}.{ext}"
            Image.fromarray(np.ascontiguousarray(STORE[tag](upright)[:, :, ::-1])).save(name, exif=exif.tobytes(),
                                                                                       quality=95)
            stored = cv2.imdecode(np.fromfile(name, np.uint8), cv2.IMREAD_UNCHANGED)
            copy = d / f"upright{tag}_{ext}.png"
            cv2.imwrite(str(copy), np.ascontiguousarray(view(stored)))
            pairs.append((name, copy))
    return d, pairs


def test_the_tables_are_what_a_viewer_shows(tagged):
    """VIEW is Pillow's own viewer transform (ImageOps.exif_transpose) on the lossless files: the tests below
    compare posecal with viewers, not with themselves."""
    from PIL import ImageOps

    _, pairs = tagged
    for name, copy in pairs:
        if name.suffix == ".png":
            with Image.open(name) as im:
                shown = np.asarray(ImageOps.exif_transpose(im))[:, :, ::-1]
            assert np.array_equal(shown, cv2.imread(str(copy))), name.name


def _same_entries(a: list[dict], b: list[dict], what) -> None:
    assert len(a) == len(b), what
    for x, y in zip(a, b):
        assert sorted(set(x) - {"file_name"}) == sorted(set(y) - {"file_name"}), what
        for field in set(x) - {"file_name", "image_id"}:
            if isinstance(x[field], str) or x[field] is None:   # pose_source and the like
                assert x[field] == y[field], (what, field)
                continue
            np.testing.assert_allclose(np.asarray(x[field], float), np.asarray(y[field], float), atol=1e-4,
                                       err_msg=f"{what}: {field}")


def test_every_orientation_same_people_as_the_upright_copy_in_posecal_predict(tagged, tmp_path, capsys):
    """Every field of every person (box, keypoints, pose and keypoint quality, visibility, in_frame, radius) of a
    photo stored turned or mirrored with its EXIF tag equals that of its upright copy, for all 8 tags, JPEG and
    PNG, when the whole picture is the person's box."""
    from conftest import write_tiny_model

    _, pairs = tagged
    model = write_tiny_model(tmp_path / "tiny.pt")
    out = tmp_path / "p.json"
    files = [str(p) for pair in pairs for p in pair]
    assert main(["predict", *files, "--model", str(model), "--backend", "torch", "--detector", "none",
                 "--min-pose-quality", "0", "--threads", "1", "--out", str(out), "--no-progress"]) == 0, \
        capsys.readouterr().err
    by_name = {}
    for e in json.loads(out.read_text()):
        by_name.setdefault(e["file_name"], []).append(e)
    for name, copy in pairs:
        assert by_name[name.name][0]["bbox"] == pytest.approx([0, 0, 120, 160], abs=1e-6), name.name
        _same_entries(by_name[name.name], by_name[copy.name], name.name)


def test_every_orientation_same_people_in_the_api(tagged, tmp_path):
    """The same in the Python API, for a path and for the photo opened with Pillow (the PNGs: Pillow's JPEG
    decoder rounds otherwise than OpenCV's)."""
    from conftest import write_tiny_model

    _, pairs = tagged
    p = Predictor(str(write_tiny_model(tmp_path / "tiny.pt")), detector=None, min_pose_quality=0, backend="torch",
                  threads=1)
    for name, copy in pairs:
        (ref,) = p(str(copy))
        ways = {"path": p(str(name))}
        if name.suffix == ".png":
            with Image.open(name) as im:
                ways["PIL image"] = p(im)
        for how, people in ways.items():
            _same_entries([q.to_dict() for q in people], [ref.to_dict()], (name.name, how))


def test_the_detector_sees_the_turned_picture(tagged, tmp_path, monkeypatch, capsys):
    """With the shipped person detector: it is given the picture as the viewer shows it (never the stored
    grid), so its boxes, and the people, are those of the upright copy."""
    from conftest import write_tiny_model

    from posecal.detect import ssd

    seen = []
    real = ssd.detector_input

    def recording(bgr):
        seen.append(np.asarray(bgr).shape[:2])
        return real(bgr)
    monkeypatch.setattr(ssd, "detector_input", recording)
    _, pairs = tagged
    out = tmp_path / "p.json"
    files = [str(p) for pair in pairs if pair[0].name in ("tag6.png", "tag8.jpg", "tag5.png") for p in pair]
    assert main(["predict", *files, "--model", str(write_tiny_model(tmp_path / "tiny.pt")), "--backend", "torch",
                 "--min-pose-quality", "0", "--threads", "1", "--out", str(out), "--no-progress"]) == 0, \
        capsys.readouterr().err
    assert seen and set(seen) == {(160, 120)}, seen
    entries = json.loads(out.read_text())
    for name, copy in pairs:
        if name.name in ("tag6.png", "tag8.jpg", "tag5.png"):
            _same_entries([e for e in entries if e["file_name"] == name.name],
                          [e for e in entries if e["file_name"] == copy.name], name.name)
