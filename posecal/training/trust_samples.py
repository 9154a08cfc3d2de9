"""Training samples for the trust model: augmented person crops with a base estimator's keypoints on them.

Why a separate pass: the trust model learns how far the *base* model's keypoints are from the truth and whether
they are there at all, so each sample needs the base model's decoded keypoints on exactly the augmented crop the
trust model sees. The base (MoveNet Thunder, frozen) costs more per crop than a trust step on this CPU, and it
never changes, so its keypoints are computed once per augmented crop (onnxruntime, flip test, its own decode)
and stored beside the crop in shards (`shard_NNNN.npz`, written atomically): training then reads shards and
spends its time on the trust model alone, and an interrupted pass resumes at the first missing shard.

A sample: the crop as the base model sees it (uint8 RGB, the base's input size), the base's keypoints (crop
pixels) and scores, the GT keypoints in crop pixels with the visibility the crop shows (cut away or outside:
not labelled; under a pasted occluder: occluded), which visibility labels are known, and the GT area in crop
pixels (for OPKS targets).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from posecal.data.coco import PersonRecord
from posecal.pixels import IMAGENET_MEAN, IMAGENET_STD
from posecal.data.topdown import TopDownDataset
from posecal.data.transforms import AugmentConfig
from posecal.inference.topdown import decode_outputs
from posecal.io import progress_shown, write_atomic

SHARD = 512
# LSPET persons the trust model never trains on (a seeded 1,000 of the 8,500): the conditions benchmark judges
# the trust on sports poses with them (bench/trust_conditions.py). The pose network itself trained on all LSPET.
LSPET_TRUST_HELDOUT = 1000


def lspet_trust_split(n: int, seed: int = 38) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of n LSPET persons for the trust model, the same on every machine."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[LSPET_TRUST_HELDOUT:]), np.sort(order[:LSPET_TRUST_HELDOUT])


def crops_to_uint8(images: torch.Tensor) -> np.ndarray:
    """posecal's normalised crops (N, 3, H, W) -> uint8 RGB (N, H, W, 3), the inverse of to_batch."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return (images * std + mean).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def write_samples(base, records: list[PersonRecord], input_wh, out_dir, augment: AugmentConfig | None,
                  seed: int = 0, batch_size: int = 32, num_workers: int = 1, progress: bool = True,
                  flip: bool = True) -> int:
    """Shards of `records` (in their order) under out_dir; `base` runs the network as inference does
    (`outputs(batch, flip)`: an onnxruntime OnnxEstimator or a TorchRunner) and its own decode gives the keypoints. augment None: the plain test-time crop.
    Returns the number of shards written now (existing ones are kept)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = TopDownDataset(records, input_wh, augment=augment, seed=seed)
    written = 0
    for first in tqdm(range(0, len(records), SHARD), desc=f"trust samples {out_dir.name}",
                      disable=not progress_shown(progress)):
        path = out_dir / f"shard_{first // SHARD:04d}.npz"
        if path.is_file():
            continue
        idx = list(range(first, min(first + SHARD, len(records))))
        loader = DataLoader(torch.utils.data.Subset(dataset, idx), batch_size=batch_size, num_workers=num_workers)
        parts: dict[str, list] = {k: [] for k in ("crops", "base_xy", "base_scores", "keypoints",
                                                  "visibility_weight", "area", "index")}
        for batch in loader:
            xy, scores = decode_outputs(base.outputs(batch["image"].numpy(), flip))
            parts["crops"].append(crops_to_uint8(batch["image"]))
            parts["base_xy"].append(np.asarray(xy, np.float32))
            parts["base_scores"].append(np.asarray(scores, np.float32))
            for key in ("keypoints", "visibility_weight", "area", "index"):
                parts[key].append(batch[key].numpy())
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        write_atomic(path, lambda f: np.savez(f, **arrays))
        written += 1
    return written


def load_shards(folder) -> dict[str, np.ndarray]:
    """All shards of a samples folder, concatenated (in shard order)."""
    paths = sorted(Path(folder).glob("shard_*.npz"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no trust sample shards (shard_NNNN.npz)")
    parts = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
