"""Packed training data (tools/pack_training_data.py) and the GPU-path training options on CPU: packed
keypoints land on the same image content, shards keep their budget, LSPET keeps visibility_known False, and a
max_minutes stop mid-epoch resumes at the right batch with the right learning rate."""
import importlib.util
import json
import os
import signal
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import posecal.training.train as train_mod
from posecal.cli.main import main
from posecal.training.config import load_train_config
from posecal.data.coco import load_coco_persons
from posecal.data.packed import load_packed_persons, packed_val_paths
from pack_writer import folder_bytes, pack_person
from posecal.errors import PosecalInputError

from conftest import make_coco, make_lsp_like

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pack_training_data", ROOT / "tools" / "pack_training_data.py")
pack_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pack_tool)

REAL_STEP_LOSSES, REAL_LR_AT = train_mod.step_losses, train_mod.lr_at
DOTS = (0, 9, 16)   # nose, left wrist, right ankle


def make_dotted(folder: Path, n: int = 3, size=(300, 400)) -> tuple[Path, Path]:
    """A COCO set whose images are dark noise with a white dot exactly at keypoints DOTS (others unlabelled)."""
    rng = np.random.default_rng(1)
    img_dir = folder / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        w, h = size
        img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        # person of ~150-260 px, placed so that its region leaves the image on some side in some images
        cx, cy, ph = rng.uniform(60, 240), rng.uniform(100, 300), rng.uniform(150, 260)
        kp = np.zeros((17, 3))
        for k, (dx, dy) in zip(DOTS, ((0, -0.45), (-0.2, 0.0), (0.15, 0.45))):
            kp[k] = [cx + dx * ph, cy + dy * ph, 2]
            cv2.circle(img, (int(round(kp[k, 0] * 16)), int(round(kp[k, 1] * 16))), 3 * 16, (255, 255, 255), -1,
                       lineType=cv2.LINE_AA, shift=4)
        cv2.imwrite(str(img_dir / f"d{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
        box = [cx - 0.3 * ph, cy - 0.5 * ph, 0.6 * ph, ph]
        images.append({"id": i + 1, "file_name": f"d{i}.jpg", "width": w, "height": h})
        anns.append({"id": 10 + i, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 3,
                     "keypoints": kp.reshape(-1).tolist(), "bbox": box, "area": 0.5 * box[2] * box[3]})
    ann = folder / "dots.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return ann, img_dir


def write_config(path: Path, train_ann, train_img, val_ann=None, val_img=None, lspet=None, extra="") -> Path:
    lsp = f", lspet_annotations: {lspet[0]}, lspet_images: {lspet[1]}" if lspet else ""
    path.write_text(f"""
out_dir: {path.parent / 'run'}
data: {{train_annotations: {train_ann}, train_images: {train_img}, val_annotations: {val_ann or train_ann},
        val_images: {val_img or train_img}{lsp}}}
model: {{input_wh: [48, 64], head_widths: [16, 16, 8], imagenet: false}}
{extra}
""")
    return path


def brightest_centroid(img: np.ndarray, xy, r: int = 8) -> np.ndarray:
    """Intensity-weighted centroid of the bright pixels within r of xy."""
    gray = img.astype(np.float64).mean(2)
    x0, y0 = int(round(xy[0])) - r, int(round(xy[1])) - r
    win = gray[max(y0, 0):y0 + 2 * r + 1, max(x0, 0):x0 + 2 * r + 1]
    wgt = np.clip(win - 45, 0, None)   # background noise is 0..40
    ys, xs = np.mgrid[0:win.shape[0], 0:win.shape[1]]
    return np.array([(xs * wgt).sum() / wgt.sum() + max(x0, 0), (ys * wgt).sum() / wgt.sum() + max(y0, 0)])


@pytest.mark.parametrize("input_h", [64, 1000])   # shrunk (INTER_AREA) / native (cut or the file kept)
def test_packed_keypoints_land_on_the_same_content(tmp_path, input_h):
    ann, img_dir = make_dotted(tmp_path / "data")
    cfg = write_config(tmp_path / "cfg.yaml", ann, img_dir)
    out = tmp_path / "pack"
    assert pack_tool.main([str(cfg), "--out", str(out), "--input-h", str(input_h), "--quality", "95",
                           "--no-progress"]) == 0
    src = {r.ann_id: r for r in load_coco_persons(ann, img_dir)}
    packed = load_packed_persons(out)
    assert len(packed) == 3
    index = json.loads((out / "shard_000" / "index.json").read_text())
    for rec, a in zip(packed, index["annotations"]):
        orig = src[a["orig_ann_id"]]
        img = cv2.imread(rec.image_path)
        # padded box (1.25, 3:4) at most input_h high, never enlarged
        assert rec.bbox[3] * 1.25 <= input_h + 1 and rec.bbox[3] <= orig.bbox[3] + 0.01
        scale = rec.bbox[3] / orig.bbox[3]
        assert rec.area == pytest.approx(orig.area * scale ** 2, rel=0.02)
        for k in DOTS:
            found = brightest_centroid(img, rec.keypoints[k, :2], r=max(4, int(8 * scale)))
            assert np.abs(found - rec.keypoints[k, :2]).max() < 0.3, (k, found, rec.keypoints[k])   # measured <= 0.08
        assert (rec.keypoints[:, 2] == orig.keypoints[:, 2]).all()
        assert rec.visibility_known


def test_an_image_inside_its_region_is_kept_as_it_was(tmp_path):
    """LSPET's case: the stored image is already the person's region; re-encoding it would only lose quality."""
    ann, img_dir = make_coco(tmp_path, n_images=1)   # 120x160 images, person box ~50x140
    rec = load_coco_persons(ann, img_dir)[0]
    img = cv2.imread(rec.image_path)
    small = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])[1].tobytes()
    kept = pack_person(img, rec, 0.75, 256, 1.6, 90, source_jpeg=small)
    assert kept.original and kept.jpeg == small and (kept.width, kept.height) == (120, 160)
    assert np.array_equal(kept.record.keypoints, rec.keypoints) and np.allclose(kept.record.bbox, rec.bbox)
    big = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    assert not pack_person(img, rec, 0.75, 256, 1.6, 90, source_jpeg=big).original   # larger: re-encoded
    assert not pack_person(img, rec, 0.75, 64, 1.6, 90, source_jpeg=small).original  # must shrink
    assert not pack_person(img, rec, 0.75, 256, 1.0, 90, source_jpeg=small).original  # region cuts the image


def test_shards_keep_the_budget_and_lspet_keeps_visibility_unknown(tmp_path):
    ann, img_dir = make_coco(tmp_path / "coco", n_images=6)
    lsp = make_lsp_like(tmp_path / "lsp", n=4)
    val_ann, val_img = make_coco(tmp_path / "val", n_images=2, seed=7)
    cfg = write_config(tmp_path / "cfg.yaml", ann, img_dir, val_ann, val_img, lspet=lsp)
    out = tmp_path / "pack"
    budget_mib = 0.01   # ~10 KB: a few persons per shard
    assert pack_tool.main([str(cfg), "--out", str(out), "--input-h", "96", "--shard-mib", str(budget_mib),
                           "--lspet-holdout", "1", "--no-progress"]) == 0
    shards = sorted(out.glob("shard_*"))
    assert len(shards) >= 3
    val_bytes = folder_bytes(out / "val")[0]
    for i, shard in enumerate(shards):
        assert folder_bytes(shard)[0] + (val_bytes if i == 0 else 0) <= budget_mib * 2 ** 20
    records = load_packed_persons(out)
    assert len(records) == 9              # LSPET's last person held out (what bench/lspet_ap.py scores)
    assert [r.visibility_known for r in records] == [True] * 6 + [False] * 3    # COCO, then LSPET, in order
    # LSPET's face keypoints (not in LSP) stay unlabelled; its 12 limb joints are there
    assert all((r.keypoints[:5, 2] == 0).all() and (r.keypoints[5:, 2] > 0).all() for r in records[6:])
    # the val split is packed apart, for validation only, and reads back as a COCO file with its own ids
    val = packed_val_paths(out)
    assert val is not None
    val_recs = load_coco_persons(*val)
    assert len(val_recs) == 2 and {r.ann_id for r in val_recs} == {100, 101}
    # a pack with a shard missing (a device call that did not bring it) is refused, not trained on in part
    shutil.move(str(shards[-1]), str(tmp_path / "away"))
    with pytest.raises(PosecalInputError, match="bring all of them"):
        load_packed_persons(out)
    shutil.move(str(tmp_path / "away"), str(shards[-1]))
    shutil.move(str(shards[1]), str(tmp_path / "away"))
    with pytest.raises(PosecalInputError, match="bring all of them"):
        load_packed_persons(out)
    shutil.move(str(tmp_path / "away"), str(shards[1]))
    # a second pack into the same folder is refused (no silent mixing of packs)
    assert pack_tool.main([str(cfg), "--out", str(out), "--no-progress"]) == 2


TRAIN_EXTRA = """
epochs: 2
batch_size: 2
lr: 0.001
warmup_steps: 1
resume_warmup_steps: 2
num_workers: 0
threads: 1
device: cpu
amp: true
"""


@pytest.fixture
def packed_cfg(tmp_path):
    ann, img_dir = make_coco(tmp_path / "data", n_images=6)
    cfg = write_config(tmp_path / "cfg.yaml", ann, img_dir, extra=TRAIN_EXTRA)
    assert pack_tool.main([str(cfg), "--out", str(tmp_path / "pack"), "--input-h", "96", "--no-progress"]) == 0
    text = cfg.read_text().replace("data: {", f"data: {{packed: {tmp_path / 'pack'}, ", 1)
    cfg.write_text(text + f"resume_state: {tmp_path / 'state'}\n")
    return cfg


def _record_steps(monkeypatch) -> list:
    """Record (step's batch indices, its learning rate) of every training step."""
    steps, lrs = [], []
    real_losses, real_lr = REAL_STEP_LOSSES, REAL_LR_AT

    def losses(model, batch, *a, **k):
        steps.append(batch["index"].tolist())
        return real_losses(model, batch, *a, **k)

    def lr(*a, **k):
        lrs.append(real_lr(*a, **k))
        return lrs[-1]

    monkeypatch.setattr(train_mod, "step_losses", losses)
    monkeypatch.setattr(train_mod, "lr_at", lr)
    return [steps, lrs]


@pytest.mark.slow
def test_max_minutes_stop_mid_epoch_resumes_at_the_right_batch(packed_cfg, tmp_path, monkeypatch, capsys):
    # Reference: the whole run in one call (6 persons, batch 2: 3 steps an epoch, 6 in all).
    ref = _record_steps(monkeypatch)
    assert main(["train", str(packed_cfg), "--out-dir", str(tmp_path / "ref"), "--no-progress"]) == 0
    assert "validation on" in capsys.readouterr().out and len(ref[0]) == 6
    ref_log = json.loads((tmp_path / "ref" / "log.json").read_text())

    # The same run, stopped by a tiny time budget after every step and resumed each time.
    got = _record_steps(monkeypatch)
    chain = ["train", str(packed_cfg), "--out-dir", str(tmp_path / "chain"), "--max-minutes", "1e-9",
             "--no-progress"]
    assert main(chain) == 0
    out = capsys.readouterr().out
    assert "stopped after" in out and '"batch": 1, "of": 3' in out
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["epoch"] == 0 and state["step"] == 1 and state["partial"]["batches"] == 1
    for _ in range(5):
        assert main(chain + ["--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert got == ref                      # same batches in the same order, same learning rates: none twice, none lost
    log = json.loads((tmp_path / "chain" / "log.json").read_text())
    assert [(e["epoch"], e["step"]) for e in log] == [(1, 3), (2, 6)]
    for a, b in zip(log, ref_log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val_ap"] == pytest.approx(b["val_ap"], abs=1e-6)
    w_ref = torch.load(tmp_path / "ref" / "last.pt", weights_only=False)["model"]
    w_chain = torch.load(tmp_path / "chain" / "last.pt", weights_only=False)["model"]
    assert all(torch.allclose(w_ref[k].float(), w_chain[k].float(), atol=1e-6) for k in w_ref)
    assert main(chain + ["--resume"]) == 0          # nothing left to do: returns at once
    assert len(got[0]) == 6


@pytest.mark.slow
def test_resume_from_committed_state_mid_epoch(packed_cfg, tmp_path, monkeypatch, capsys):
    """Without last.pt (a new machine): the committed state goes on at the next batch; the lr re-warms."""
    ref = _record_steps(monkeypatch)
    assert main(["train", str(packed_cfg), "--out-dir", str(tmp_path / "ref"), "--no-progress"]) == 0
    got = _record_steps(monkeypatch)
    run = ["train", str(packed_cfg), "--out-dir", str(tmp_path / "new"), "--no-progress"]
    assert main(run + ["--max-minutes", "1e-9"]) == 0
    (tmp_path / "new" / "last.pt").unlink()
    assert main(run + ["--resume"]) == 0
    assert "resumed from committed state" in capsys.readouterr().out
    assert got[0] == ref[0]
    cfg = load_train_config(packed_cfg)
    total = 6
    assert got[1][:1] == ref[1][:1]
    assert got[1][1:] == pytest.approx([train_mod.lr_at(s, total, cfg, rewarm_from=1) for s in range(1, 6)])
    assert got[1][1] < ref[1][1]           # re-warming


def test_device_and_amp_are_checked(packed_cfg, capsys):
    packed_cfg.write_text(packed_cfg.read_text().replace("device: cpu", "device: tpu"))
    assert main(["train", str(packed_cfg), "--no-progress"]) == 2
    assert "device must be cpu or cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():
        packed_cfg.write_text(packed_cfg.read_text().replace("device: tpu", "device: cuda"))
        assert main(["train", str(packed_cfg), "--no-progress"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_persistent_workers_see_each_epoch(packed_cfg, tmp_path):
    """Loader workers live across epochs: each item carries its epoch, so augmentation follows the epoch as
    in the main process (same losses with 0 and 1 workers)."""
    logs = []
    for workers in (0, 1):
        packed_cfg.write_text(packed_cfg.read_text().replace(f"num_workers: {1 - workers}", f"num_workers: {workers}"))
        out = tmp_path / f"w{workers}"
        assert main(["train", str(packed_cfg), "--out-dir", str(out), "--no-progress"]) == 0
        logs.append(json.loads((out / "log.json").read_text()))
    assert [e["loss"] for e in logs[0]] == pytest.approx([e["loss"] for e in logs[1]], rel=1e-5)
    assert logs[0][0]["loss"] != pytest.approx(logs[0][1]["loss"], rel=1e-3)


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_resume_loses_no_step(packed_cfg, tmp_path, monkeypatch, capsys):
    """SIGTERM during a step: training finishes that step, saves a resumable mid-epoch checkpoint and returns;
    --resume then runs exactly the steps that were left (none twice, none lost)."""
    ref = _record_steps(monkeypatch)
    assert main(["train", str(packed_cfg), "--out-dir", str(tmp_path / "ref"), "--no-progress"]) == 0
    got = _record_steps(monkeypatch)
    recording = train_mod.step_losses

    def terminated_at_step_2(model, batch, *a, **k):
        if len(got[0]) == 1:              # this is the second step
            os.kill(os.getpid(), signal.SIGTERM)
        return recording(model, batch, *a, **k)

    monkeypatch.setattr(train_mod, "step_losses", terminated_at_step_2)
    handler = signal.getsignal(signal.SIGTERM)
    run = ["train", str(packed_cfg), "--out-dir", str(tmp_path / "term"), "--no-progress"]
    assert main(run) == 0
    assert "stopped by SIGTERM at epoch 0, step 2" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is handler          # the handler is put back
    assert json.loads((tmp_path / "state" / "state.json").read_text())["partial"]["batches"] == 2
    monkeypatch.setattr(train_mod, "step_losses", recording)
    assert main(run + ["--resume"]) == 0
    assert got[0] == ref[0]


def test_a_killed_checkpoint_write_leaves_no_temp_file(packed_cfg, tmp_path, capsys):
    """kill -9 mid-write leaves write_atomic's temp file; the next run removes it and says so."""
    out = tmp_path / "killed"
    out.mkdir()
    stale = out / ".last.ptk3j2h1.tmp"
    stale.write_bytes(b"\0" * 1000)
    keep = out / "notes.tmp"                  # not one of write_atomic's (no leading dot): left alone
    keep.write_text("mine")
    assert main(["train", str(packed_cfg), "--out-dir", str(out), "--no-progress", "--max-minutes", "1e-9"]) == 0
    assert f"removed {stale}" in capsys.readouterr().out
    assert not stale.exists() and keep.read_text() == "mine"
    assert not list(out.glob(".*.tmp")) and (out / "last.pt").is_file()
