"""A posecal model file's network run in PyTorch, giving inference what an onnxruntime graph gives
(`outputs(batch, flip)`: numpy arrays by name). Imported only where a PyTorch model runs (`--backend torch`,
training's validation, trust sampling): inference on onnxruntime never imports PyTorch."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from posecal.inference.topdown import decode_outputs
from posecal.models.estimator import (PoseOutput, look_outputs, named_outputs, refine_outputs, runtime_outputs,
                                      stages_by_default)
from posecal.models.outputs import REFINE_INPUTS


class TorchRunner:
    """model: a TopDownEstimator (put in eval mode); device: where its inputs go; threads: PyTorch's intra-op
    threads for each call (None: the process's)."""

    def __init__(self, model, device: str = "cpu", threads: int | None = None):
        self.model, self.device, self.threads = model.eval(), device, threads

    @torch.no_grad()
    def outputs(self, batch: np.ndarray, flip: bool) -> dict[str, np.ndarray]:
        with torch_threads(self.threads):
            named = runtime_outputs(self.model, torch.from_numpy(batch).to(self.device), flip)
            return {name: t.float().cpu().numpy() for name, t in named.items()}

    @property
    def staged(self) -> bool:
        """Its crops are posed in two stages (look, then refine): models.config.stages_crops's rule."""
        return stages_by_default(self.model)

    @torch.no_grad()
    def look(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """A staged crop's look (posecal.models.estimator.look_outputs) on a batch of crops."""
        with torch_threads(self.threads):
            named = look_outputs(self.model, torch.from_numpy(batch).to(self.device))
            return {name: t.float().cpu().numpy() for name, t in named.items()}

    @torch.no_grad()
    def refine(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A staged crop's refinement (refine_outputs) of looks: REFINE_INPUTS by name."""
        with torch_threads(self.threads):
            args = [torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device) for name in REFINE_INPUTS]
            return {name: t.float().cpu().numpy() for name, t in refine_outputs(self.model, *args).items()}


def pose_output_arrays(out: PoseOutput) -> dict[str, np.ndarray]:
    """A forward pass's PoseOutput (training's, already computed) as the named arrays infer_crops decodes."""
    with torch.no_grad():
        return {name: t.detach().float().cpu().numpy() for name, t in named_outputs(out).items()}


def decode_pose_output(out: PoseOutput, decode_method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A forward pass's keypoints (N, K, 2) in input-crop pixels and heatmap scores, by the model's own decode
    (infer_crops's): what training scores the quality heads' targets on and trust sampling stores."""
    return decode_outputs(pose_output_arrays(out), decode_method)


@contextmanager
def torch_threads(threads: int | None):
    """PyTorch's intra-op threads set for one call and restored after, so that a Predictor's `threads` is its
    own and not the process's (a user's other torch work keeps its setting)."""
    if not threads or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
