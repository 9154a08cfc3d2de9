"""Batched top-down inference on person records: crops -> heatmaps (flip-merged) -> image coordinates."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from posecal.codec import decode, merge_flip
from posecal.data.coco import PersonRecord
from posecal.data.topdown import HEATMAP_STRIDE, TopDownDataset
from posecal.data.transforms import apply_affine, invert_affine
from posecal.errors import PosecalInputError
from posecal.models.estimator import TopDownEstimator


@dataclass
class Predictions:
    """Per-person arrays, aligned with `records` (persons whose image failed are dropped)."""

    records: list[PersonRecord]
    keypoints: np.ndarray        # (N, K, 2) image pixels
    heatmap_scores: np.ndarray   # (N, K) heatmap peak values


class _SafeCrops(Dataset):
    """Eval crops; an unreadable image becomes a warning and the others go on."""

    def __init__(self, base: TopDownDataset):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        try:
            item = self.base[i]
            item["valid"] = torch.tensor(True)
        except PosecalInputError as e:
            warnings.warn(f"skipping: {e}", stacklevel=1)
            w, h = self.base.input_wh
            item = {"image": torch.zeros(3, h, w), "matrix": torch.zeros(2, 3, dtype=torch.float64),
                    "index": torch.tensor(i), "valid": torch.tensor(False)}
        return {k: item[k] for k in ("image", "matrix", "index", "valid")}


@torch.no_grad()
def predict_records(model: TopDownEstimator, records: list[PersonRecord], input_wh, flip: bool = True,
                    batch_size: int = 32, decode_method: str = "dark", num_workers: int = 0,
                    progress: bool = True, device: str = "cpu") -> Predictions:
    model.eval()
    loader = DataLoader(_SafeCrops(TopDownDataset(records, input_wh)), batch_size=batch_size,
                        num_workers=num_workers)
    kept, coords, scores = [], [], []
    for batch in tqdm(loader, desc="estimating poses", unit="batch", disable=not progress, leave=False):
        valid = batch["valid"].numpy()
        images = batch["image"].to(device)
        hm = model(images).heatmaps.float().cpu().numpy()
        if flip:
            hm_flip = model(torch.flip(images, dims=[3])).heatmaps.float().cpu().numpy()
            hm = merge_flip(hm, hm_flip)
        xy_hm, s = decode(hm, decode_method)
        xy_in = (xy_hm + 0.5) * HEATMAP_STRIDE - 0.5
        for j, idx in enumerate(batch["index"].numpy()):
            if not valid[j]:
                continue
            inv = invert_affine(batch["matrix"][j].numpy())
            kept.append(records[idx])
            coords.append(apply_affine(xy_in[j], inv))
            scores.append(s[j])
    k = model.heatmap_head.final.out_channels
    return Predictions(kept, np.array(coords).reshape(-1, k, 2), np.array(scores).reshape(-1, k))
