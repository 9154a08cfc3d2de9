"""Data-parallel training: torchrun with 2 gloo processes on CPU trains a few steps on a tiny synthetic set."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from posecal.models.checkpoint import model_from_config
from posecal.cli.main import main
from posecal.training.config import load_train_config
from posecal.training.distributed import DistributedEpochOrder, Group

from conftest import make_coco

REPO = Path(__file__).resolve().parents[2]

# What each rank runs: the library's train(), then its final weights saved under the rank's name.
WORKER = """
import os, sys, torch
from posecal.training.config import load_train_config
from posecal.training.train import train
result = train(load_train_config(sys.argv[1]), progress=False)
torch.save(result["model"].state_dict(), os.path.join(sys.argv[2], "rank%s.pt" % os.environ["RANK"]))
"""


def write_config(tmp_path, n_images=8, max_steps=3, extra=""):
    ann, img_dir = make_coco(tmp_path / "data", n_images=n_images)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
out_dir: {tmp_path / 'run'}
data: {{train_annotations: {ann}, train_images: {img_dir}, val_annotations: {ann}, val_images: {img_dir}}}
model: {{input_wh: [32, 48], head_widths: [8, 8, 8], imagenet: false}}
epochs: 2
batch_size: 2
max_steps: {max_steps}
num_workers: 0
threads: 1
{extra}
""")
    return cfg


def torchrun(args, nproc, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    cfg_path = write_config(tmp_path)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    run = torchrun([str(worker), str(cfg_path), str(tmp_path)], 2, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    cfg = load_train_config(cfg_path)
    torch.manual_seed(cfg.seed)
    init = dict(model_from_config(cfg.model, imagenet=False).named_parameters())
    # Every weight is equal on both ranks (BatchNorm's running statistics are each rank's own: DDP hands
    # rank 0's to all at each forward, and rank 0's are the ones saved).
    assert w0.keys() == w1.keys() and set(init) <= set(w0)
    assert all(torch.equal(w0[k], w1[k]) for k in init), "ranks diverged"
    # And they trained: 8 crops over 2 ranks of batch 2 is 2 steps an epoch; max_steps 3 stops in epoch 2.
    assert sum(not torch.equal(init[k].detach(), w0[k]) for k in init) > 0.9 * len(init)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [e["step"] for e in log] == [2, 3]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(last[k], w0[k]) for k in w0)
    # Rank 0 alone logs and writes: each epoch's line once, no file of another rank.
    assert run.stdout.count('"epoch": 1,') == 1, run.stdout
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best_model.pt", "config.json", "last.pt",
                                                                    "log.json"]


def test_ranks_share_each_epoch_without_overlap():
    groups = [Group(rank=r, world_size=2, local_rank=r, backend="gloo") for r in (0, 1)]
    orders = [DistributedEpochOrder(7, g, seed=3) for g in groups]
    for o in orders:
        o.set_epoch(5)
    shares = [list(o) for o in orders]
    assert all(e == 5 for share in shares for e, _ in share)
    idx = [[i for _, i in share] for share in shares]
    assert len(idx[0]) == len(idx[1]) == 4                      # padded: both ranks run the same steps
    assert set(idx[0]) | set(idx[1]) == set(range(7))
    orders[1].set_epoch(5, start=2)                             # an epoch resumed after one batch of 2
    assert [i for _, i in orders[1]] == idx[1][2:] and len(orders[1]) == 2
    orders[1].set_epoch(6)
    assert [i for _, i in orders[1]] != idx[1]                  # a new shuffle each epoch


@pytest.mark.slow
def test_python_m_posecal_is_the_cli(tmp_path):
    run = subprocess.run([sys.executable, "-m", "posecal", "train", str(tmp_path / "missing.yaml")],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == f"posecal: error: {tmp_path / 'missing.yaml'}: config file not found"


def test_sync_batchnorm_without_gpus_is_refused_under_torchrun(tmp_path, capsys, monkeypatch):
    # torchrun's environment, checked before any process group is joined
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    assert main(["train", str(write_config(tmp_path, extra="sync_batchnorm: true")), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == ("posecal: error: sync_batchnorm: true needs device: cuda "
                                               "(torch syncs BatchNorm on GPUs only)")
