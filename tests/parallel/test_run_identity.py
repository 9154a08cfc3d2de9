"""A resumable run's fingerprint holds posecal's version and the digests of the weights it opens
(posecal/inference/run_identity.py): a resume after the model file changed is refused in one line that says so,
never merged with the earlier parts. No Ray needed: the fingerprints and the part store are plain functions."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from posecal._version import __version__
from posecal.errors import PosecalInputError
from posecal.inference.run_identity import run_identity, weight_files, weights_digest
from posecal.models.shipped import SHIPPED_MODELS
from posecal.parallel.parts import PartStore, part_folder, unit_key, write_part
from posecal.predict.job import PredictConfig
from posecal.predict.job import predict_fingerprint


def test_weights_digest_is_the_sha256_prefix_and_follows_the_bytes(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    assert weights_digest(f) == hashlib.sha256(b"abc").hexdigest()[:16] == "ba7816bf8f01cfea"
    f.write_bytes(b"abcd")   # another size: read again, not the cached digest
    assert weights_digest(f) == hashlib.sha256(b"abcd").hexdigest()[:16]


def test_identity_names_the_version_the_model_files_and_the_verifier(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"graph")
    (tmp_path / "m.onnx.data").write_bytes(b"weights")
    ident = run_identity(str(model), verifier="none", detector="none")
    assert ident["posecal"] == __version__
    assert ident["model"] == {"m.onnx": weights_digest(model), "m.onnx.data": weights_digest(tmp_path / "m.onnx.data")}
    assert ident["verifier"] is None and ident["detector"] is None
    other = tmp_path / "v.onnx"
    other.write_bytes(b"verifier")
    assert run_identity(str(model), verifier=str(other))["verifier"] == weights_digest(other)


def test_a_shipped_name_covers_its_pt_and_every_graph_it_may_run():
    files = {p.name for p in weight_files("accurate")}
    if not SHIPPED_MODELS["accurate"].is_file():
        pytest.skip("the accurate model's .pt is not in this installation")
    assert "posecal_accurate.pt" in files
    graphs = {p.name for p in SHIPPED_MODELS["accurate"].parent.glob("posecal_accurate.*onnx*")}
    assert graphs <= files and "posecal_accurate.int8.onnx" in graphs
    assert not any("fast" in name for name in files)


def test_a_resume_after_the_model_file_changed_is_refused(tmp_path):
    src = SHIPPED_MODELS["fast"]
    if not src.is_file():
        pytest.skip("the fast model's .pt is not in this installation")
    model = tmp_path / "model.pt"
    shutil.copyfile(src, model)
    picture = tmp_path / "a.png"
    picture.write_bytes(b"")
    out = tmp_path / "poses.json"
    cfg = PredictConfig(inputs=[str(picture)], out=str(out), model=str(model))
    key = unit_key(picture, picture.name)
    first = predict_fingerprint(cfg)
    with PartStore(part_folder(out), first) as store:
        write_part(store.folder, key, "[]")
    with PartStore(part_folder(out), predict_fingerprint(cfg)) as again:   # same weights: resumes
        assert again.done() == {key}
    with model.open("ab") as f:   # the model file replaced between the run and its resume
        f.write(b"\0")
    with pytest.raises(PosecalInputError, match=r"holds the parts of another run \(other model weights\)"):
        PartStore(part_folder(out), predict_fingerprint(cfg))
    older = part_folder(out).with_name(".older.parts")   # a folder written by another posecal version
    with PartStore(older, first | {"identity": first["identity"] | {"posecal": "0.0"}}):
        write_part(older, key, "[]")
    with pytest.raises(PosecalInputError, match=rf"posecal 0\.0 then {__version__}"):
        PartStore(older, first)


def test_named_detectors_are_digested_by_the_files_they_open():
    from posecal.detect.nanodet import NANODET_FILE
    from posecal.detect.ssd import SHIPPED_DETECTOR
    from posecal.inference.run_identity import weights_digest

    ssd, nanodet = weights_digest(SHIPPED_DETECTOR), weights_digest(NANODET_FILE)
    assert run_identity("accurate", detector="ssd")["detector"] == run_identity("accurate")["detector"] == ssd
    assert run_identity("accurate", detector="nanodet")["detector"] == nanodet
    assert run_identity("accurate", detector="ssd+nanodet")["detector"] == f"{ssd}+{nanodet}"
    assert run_identity("accurate", detector="none")["detector"] is None


def test_a_track_run_after_the_identity_map_was_refit_is_another_run(tmp_path):
    """track's fingerprint holds the id_confidence map's digest: a resume after a refit would mix two maps'
    ratings in one results file."""
    from posecal.tracking.pose_tracker import TrackConfig
    from posecal.tracking.units import track_fingerprint

    cfg, settings = TrackConfig(["v.mp4"], model="fast"), {"model": "fast"}
    if not SHIPPED_MODELS["fast"].is_file():
        pytest.skip("the fast model's .pt is not in this installation")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"w": 1}')
    b.write_text('{"w": 2}')
    assert track_fingerprint(cfg, settings, a) == track_fingerprint(cfg, settings, a)
    assert track_fingerprint(cfg, settings, a) != track_fingerprint(cfg, settings, b)
    assert track_fingerprint(cfg, settings)["id_confidence"] is not None   # the shipped map
