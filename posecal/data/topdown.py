"""Torch dataset of top-down person crops with heatmap targets (training and evaluation)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from posecal.codec.heatmap import encode
from posecal.data.coco import PersonRecord, area_scale, read_image
from posecal.data.transforms import (AugmentConfig, apply_affine, box_to_center_scale, color_jitter,
                                     crop_matrix, degrade, jitter_box, flip_keypoints, half_body_region, inside_frame, paste_occluders,
                                     paste_person, person_crop_matrix, person_mask,
                                     rotated_box, sample_augmentation, sample_truncation, truncate, warp)
from posecal.data.crops import HEATMAP_STRIDE, crops_to_batch, input_to_heatmap
from posecal.skeleton import flip_permutation

# Negatives per keypoint type: the target's own left/right partner, then people beside it (pasted, then labelled).
NEGATIVE_SLOTS = 4


def to_tensor(crop_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 crop -> normalised RGB float tensor (3, H, W)."""
    return to_batch([crop_bgr])[0]


def to_batch(crops_bgr: list[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops of one size -> normalised RGB float tensor (N, 3, H, W) (crops_to_batch, as a tensor)."""
    return torch.from_numpy(crops_to_batch(crops_bgr))


class TopDownDataset(Dataset):
    """Each item: input crop, heatmaps, target weights and the GT in crop pixels (for online OKS targets)."""

    def __init__(self, records: list[PersonRecord], input_wh=(144, 192), augment: AugmentConfig | None = None,
                 sigma: float = 2.0, seed: int = 0, rotation: float = 0.0,
                 neighbours: dict[str, np.ndarray] | None = None, max_negatives: int = NEGATIVE_SLOTS):
        """rotation: without augmentation, every crop is turned by this many degrees (test-time orientation
        search, posecal/inference/orientation.py), framed as `person_crop_matrix` frames it.
        neighbours: image path -> (N, K, 3) the other labelled people of the record's photograph in its image's
        pixels (posecal.data.neighbours.neighbours_by_image); with a pasted person they give each item's
        `negatives`: where each keypoint type must not be answered (training.losses.negative_cells_loss)."""
        self.records = records
        self.neighbours = neighbours or {}
        self.max_negatives = int(max_negatives)
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
        others = []                                                       # other people, in input pixels
        if len(self.neighbours.get(rec.image_path, ())):
            for nb in self.neighbours[rec.image_path]:
                pts = np.concatenate([apply_affine(nb[:, :2], m), nb[:, 2:3]], 1)
                others.append(pts[flip_permutation(len(pts))] if flip else pts)
        if rng is not None and self.augment.paste_person_prob > 0 and rng.random() < self.augment.paste_person_prob:
            pasted = self._pasted_person(idx, rng)
            if pasted is not None:
                person, donor_kp, mask = pasted
                crop, covered = paste_person(np.ascontiguousarray(crop), kp_in, person, mask)
                kp_in[covered, 2] = 1
                vis_weight[covered] = 1.0
                others.insert(0, donor_kp)
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
            "negatives": torch.from_numpy(self._negatives(kp_in, others)),   # (K, M, 3) x, y, valid
        }

    def _pasted_person(self, idx: int, rng: np.random.Generator):
        """Another record's person as it will be pasted into this item's input crop: (crop, keypoints in input
        pixels, soft mask), sized paste_person_scale x this person's box and moved sideways; None when the
        record drawn shares the image or has too few labelled joints to draw."""
        j = int(rng.integers(len(self.records)))
        donor = self.records[j]
        if j == idx or donor.image_path == self.records[idx].image_path or (donor.keypoints[:, 2] > 0).sum() < 4:
            return None
        aspect = self.input_wh[0] / self.input_wh[1]
        centre, size = box_to_center_scale(donor.bbox, aspect)
        size = size * float(rng.uniform(*self.augment.paste_person_scale))
        shift = float(rng.uniform(*self.augment.paste_person_shift)) * (1 if rng.random() < 0.5 else -1)
        centre = centre - np.array([shift * size[0], float(rng.normal(0, 0.08)) * size[1]])
        m = crop_matrix(centre, size, 0.0, self.input_wh)
        person = warp(read_image(donor.image_path), m, self.input_wh)
        kp = np.concatenate([apply_affine(donor.keypoints[:, :2], m), donor.keypoints[:, 2:3]], 1)
        if rng.random() < 0.5:
            person = np.ascontiguousarray(person[:, ::-1])
            kp = flip_keypoints(kp, self.input_wh[0])
        kp[~inside_frame(kp[:, :2], self.input_wh), 2] = 0
        height = float(donor.bbox[3]) * abs(m[1, 1])
        return person, kp, person_mask(kp, self.input_wh, height)

    def _negatives(self, kp_in: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
        """(K, max_negatives, 3): for each keypoint type, places its heatmap must stay low at: the target's own
        left/right partner (a swap) and the same joint of the people beside it, inside the crop; valid = 1."""
        k = len(kp_in)
        out = np.zeros((k, self.max_negatives, 3), np.float32)
        partner = flip_permutation(k)
        for i in range(k):
            p = partner[i]
            if p != i and kp_in[p, 2] > 0:
                out[i, 0] = (kp_in[p, 0], kp_in[p, 1], 1.0)
        for slot, pts in enumerate(others[: self.max_negatives - 1], start=1):
            ok = (pts[:, 2] > 0) & inside_frame(pts[:, :2], self.input_wh)
            out[ok, slot, :2] = pts[ok, :2]
            out[ok, slot, 2] = 1.0
        return out
