"""What `--engine ray` asks Ray for (posecal/parallel/ray_rows.py): the actors and each one's CPUs and GPU share
for a cluster, every command's RowJob asking for GPUs exactly when --device is cuda, and a cluster without a GPU
said once by the driver before any actor starts. No Ray: the clusters are fakes and the RowJob is caught where
the command hands it to run_rows."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

from conftest import make_coco, write_walking_video
from posecal import devices
from posecal.cli.main import main
from posecal.parallel import ray_rows
from posecal.parallel.parts import PartStore
from posecal.parallel.ray_rows import RayConfig, actor_resources, run_rows
from posecal.parallel.runner import RowJob


def test_a_cpu_job_has_one_actor_per_cpu():
    assert actor_resources(16, 0, None, None, False) == (16, 1, {"num_cpus": 1.0})
    assert actor_resources(16, 1, None, None, False) == (16, 1, {"num_cpus": 1.0})   # the GPU left alone


def test_a_gpu_job_has_one_actor_per_gpu_with_the_cpus_shared_among_them():
    assert actor_resources(16, 1, None, None, True) == (1, 16, {"num_cpus": 16.0, "num_gpus": 1.0})
    assert actor_resources(16, 4, None, None, True) == (4, 4, {"num_cpus": 4.0, "num_gpus": 1.0})


def test_more_workers_than_gpus_share_them_and_still_fit():
    assert actor_resources(16, 1, 2, None, True) == (2, 8, {"num_cpus": 8.0, "num_gpus": 0.5})
    workers, _, ask = actor_resources(16, 2, 3, None, True)
    assert ask["num_gpus"] == 0.6666 and workers * ask["num_gpus"] <= 2   # rounded down to Ray's 0.0001
    assert actor_resources(16, 4, 2, None, True)[2]["num_gpus"] == 1.0    # fewer workers: one GPU each


def test_a_gpu_job_on_a_cluster_without_a_gpu_runs_as_a_cpu_job():
    assert actor_resources(16, 0, None, None, True) == (16, 1, {"num_cpus": 1.0})


class FakeRay:
    """Ray as _run_rows uses it, on a cluster of `resources`: what map_batches is asked for is kept, and the
    dataset gives no rows back (no actor runs)."""

    def __init__(self, resources: dict):
        self.resources, self.asked, self.said_before = resources, None, None
        self.data = SimpleNamespace(from_items=lambda rows, override_num_blocks: self,
                                    ActorPoolStrategy=lambda size: ("actors", size))

    def cluster_resources(self):
        return self.resources

    def map_batches(self, fn, fn_constructor_kwargs, batch_size, compute, **ask):
        self.said_before = list(self.caught)   # the lines said before any actor is asked for
        self.asked = {"compute": compute, **ask}
        return self

    def iter_batches(self, **kwargs):
        return iter([])


def run_on(resources: dict, gpu: bool, tmp_path, monkeypatch) -> tuple[FakeRay, list[str]]:
    """run_rows of a one-row job on a fake cluster: (the fake, the warning lines said)."""
    monkeypatch.setattr(ray_rows, "_start", lambda ray, address: False)   # no Ray to connect to
    monkeypatch.setattr(devices, "_warned", set())   # fall_back says each reason once a process
    monkeypatch.setenv("POSECAL_RAY_LOGS", "1")      # stderr left as it is
    ray = FakeRay(resources)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ray.caught = caught
        with PartStore(tmp_path / "parts", {"run": 1}) as store:
            run_rows(ray, RayConfig(), RowJob(object, {}, "out", gpu=gpu), [{"index": 0, "key": "k"}], store,
                     progress=False)
    return ray, [str(w.message) for w in caught]


def test_a_gpu_job_asks_for_the_gpus(tmp_path, monkeypatch):
    ray, said = run_on({"CPU": 16.0, "GPU": 1.0}, True, tmp_path, monkeypatch)
    assert ray.asked == {"compute": ("actors", 1), "num_cpus": 16.0, "num_gpus": 1.0} and said == []


def test_no_gpu_on_the_cluster_is_said_once_by_the_driver_before_any_actor(tmp_path, monkeypatch):
    ray, said = run_on({"CPU": 16.0}, True, tmp_path, monkeypatch)
    line = "device 'cuda': running on the CPU instead: the Ray cluster has no GPU"
    assert said == [line] and [str(w.message) for w in ray.said_before] == [line]
    assert ray.asked == {"compute": ("actors", 16), "num_cpus": 1.0}
    ray, said = run_on({"CPU": 16.0}, False, tmp_path, monkeypatch)   # a CPU job: nothing to say
    assert said == [] and ray.asked == {"compute": ("actors", 16), "num_cpus": 1.0}


class Caught(Exception):
    """Raised by the fake run_rows once it holds the command's RowJob: nothing runs further."""


def command_line(command: str, tmp_path) -> list[str]:
    out = str(tmp_path / command)
    if command == "predict":
        return ["predict", str(write_walking_video(tmp_path / "clip.avi", frames=2)), "--out", out + ".json"]
    if command == "track":
        return ["track", str(write_walking_video(tmp_path / "clip.avi", frames=2)), "--out", out + ".json"]
    ann, images = make_coco(tmp_path / "data", n_images=1)
    return [command, "--annotations", str(ann), "--images", str(images), "--out", out]


@pytest.mark.parametrize("command", ["predict", "track", "eval", "audit"])
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_every_commands_ray_path_asks_for_gpus_exactly_with_device_cuda(command, device, tmp_path, monkeypatch):
    jobs = []

    def caught_run_rows(ray, ray_cfg, job, *args, **kwargs):
        jobs.append(job)
        raise Caught

    monkeypatch.setattr(ray_rows, "import_ray", lambda: object())   # every command's one Ray executor
    monkeypatch.setattr(ray_rows, "run_rows", caught_run_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # this machine's own CUDA fall-back lines
        with pytest.raises(Caught):
            main([*command_line(command, tmp_path), "--model", "fast", "--engine", "ray", "--device", device,
                  "--no-progress"])
    assert len(jobs) == 1 and jobs[0].gpu is (device == "cuda")
