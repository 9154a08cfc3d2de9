"""Torch dataset of top-down person crops with heatmap targets (training and evaluation)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from posecal.codec.heatmap import encode
from posecal.data.coco import PersonRecord, area_scale, read_image
from posecal.data.transforms import (AugmentConfig, apply_affine, box_to_center_scale, color_jitter,
                                     crop_matrix, degrade, jitter_box, flip_keypoints, half_body_region, inside_frame, paste_occluders,
                                     person_crop_matrix,
                                     rotated_box, sample_augmentation, sample_truncation, truncate, warp)
from posecal.data.crops import (HEATMAP_STRIDE, IMAGENET_MEAN, IMAGENET_STD,  # noqa: F401 - re-exported
                                crops_to_batch, heatmap_to_input, input_to_heatmap)
from posecal.skeleton import flip_permutation


def to_tensor(crop_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 crop -> normalised RGB float tensor (3, H, W)."""
    return to_batch([crop_bgr])[0]


def to_batch(crops_bgr: list[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops of one size -> normalised RGB float tensor (N, 3, H, W) (crops_to_batch, as a tensor)."""
    return torch.from_numpy(crops_to_batch(crops_bgr))


class TopDownDataset(Dataset):
    """Each item: input crop, heatmaps, target weights and the GT in crop pixels (for online OKS targets)."""

    def __init__(self, records: list[PersonRecord], input_wh=(144, 192), augment: AugmentConfig | None = None,
                 sigma: float = 2.0, seed: int = 0, rotation: float = 0.0):
        """rotation: without augmentation, every crop is turned by this many degrees (test-time orientation
        search, posecal/inference/orientation.py), framed as `person_crop_matrix` frames it."""
        self.records = records
        self.rotation = float(rotation)
        self.input_wh = tuple(int(v) for v in input_wh)
        self.hm_wh = (self.input_wh[0] // HEATMAP_STRIDE, self.input_wh[1] // HEATMAP_STRIDE)
        self.augment = augment
        self.sigma = sigma
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, idx: int) -> dict:
        rec = self.records[idx]
        image = read_image(rec.image_path)
        aspect = self.input_wh[0] / self.input_wh[1]
        box, kpts = rec.bbox, rec.keypoints.copy()
        rot, flip, rng = 0.0, False, None
        vis_weight = np.full(len(kpts), 1.0 if rec.visibility_known else 0.0, dtype=np.float32)
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, idx))
            cut = sample_truncation(self.augment, box, rng)
            if cut is not None:
                labelled_before = kpts[:, 2] > 0
                image, box, kpts = truncate(image, box, kpts, *cut)
                vis_weight[labelled_before & (kpts[:, 2] == 0)] = 1.0  # cut away: known to be absent
            if self.augment.box_jitter > 0:
                box = jitter_box(box, self.augment.box_jitter, rng)
        center, size = box_to_center_scale(box, aspect)
        if rng is not None:
            region = None
            if rng.random() < self.augment.half_body_prob and (kpts[:, 2] > 0).sum() > self.augment.half_body_min_keypoints:
                region = half_body_region(kpts, aspect, rng)
                if region is not None:
                    center, size = region
            scale, rot, flip = sample_augmentation(self.augment, rng)
            if rot and self.augment.rotation_rebox and region is None:
                center, size = box_to_center_scale(rotated_box(box, rot), aspect)
            size = size * scale
        m = crop_matrix(center, size, rot, self.input_wh) if rng is not None else \
            person_crop_matrix(box, self.input_wh, self.rotation)
        crop = warp(image, m, self.input_wh)
        if rng is not None:
            crop = color_jitter(crop, self.augment.color_jitter, rng)
            crop = degrade(crop, self.augment.blur_prob, self.augment.jpeg_prob, rng, self.augment,
                           person_height=max(float(box[2]) * self.input_wh[0] / float(size[0]),
                                             float(box[3]) * self.input_wh[1] / float(size[1])))
        kp_in = np.concatenate([apply_affine(kpts[:, :2], m), kpts[:, 2:3]], 1)
        if flip:
            crop = crop[:, ::-1]
            kp_in = flip_keypoints(kp_in, self.input_wh[0])
            vis_weight = vis_weight[flip_permutation(len(vis_weight))]
            # Mirroring is part of the image->input map: x' = W-1-x.
            m = np.array([[-1.0, 0, self.input_wh[0] - 1], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
        # A labelled keypoint outside the crop is absent from what the network sees (v = 0, known).
        outside = (kp_in[:, 2] > 0) & ~inside_frame(kp_in[:, :2], self.input_wh)
        kp_in[outside, 2] = 0
        vis_weight[outside] = 1.0
        if rng is not None and self.augment.occluder_prob > 0 and rng.random() < self.augment.occluder_prob:
            crop, covered = paste_occluders(np.ascontiguousarray(crop), kp_in, self.augment, rng)
            kp_in[covered, 2] = 1
            vis_weight[covered] = 1.0
        kp_hm = input_to_heatmap(kp_in[:, :2])
        heatmaps, weight = encode(kp_hm, kp_in[:, 2], self.hm_wh, self.sigma)
        return {
            "image": to_tensor(np.ascontiguousarray(crop)),
            "heatmaps": torch.from_numpy(heatmaps),
            "target_weight": torch.from_numpy(weight),
            "keypoints": torch.from_numpy(kp_in.astype(np.float32)),      # GT in input pixels, v
            "visibility_weight": torch.from_numpy(vis_weight),             # 0: the labels do not say
            "area": torch.tensor(rec.area * area_scale(m), dtype=torch.float32),  # GT area in input pixels
            "matrix": torch.from_numpy(m.astype(np.float64)),              # image -> input pixels
            "index": torch.tensor(idx),
        }
