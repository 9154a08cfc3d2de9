"""What a camera does to a synthetic scene, with the truth kept exact: a moving camera and motion blur.

* `PanZoom`: the frame is a window moving slowly over a larger picture of the room (the world): it pans from
  one side to the other and zooms in or out as it goes. Its `view(t)` is the 2x3 affine map from world pixels to
  frame pixels at frame t ([[r, 0, -r x0], [0, r, -r y0]]: the window's top left (x0, y0) onto (0, 0), scaled by
  r = frame width / window width); bench.lab.moving_people draws the background and every person through it, so
  the truth (keypoints, boxes, what is in the frame) moves exactly as the window does. Why: a handheld or
  pan-tilt camera moves the whole picture, which a tracker's motion model and a detector's context never saw on
  the fixed rooms.
* `motion_blur`: each frame filtered by a straight line kernel of a given length and direction (the camera or
  the people moving during the exposure). The kernel is symmetric about its centre, so nothing moves: the truth
  stays as it was.

Everything is deterministic: the plans are drawn from a numpy Generator the caller seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PanZoom:
    """A window over a world picture of world_wh pixels, seen as frames of size_wh pixels. Over n_frames the
    window's left edge goes from pan[0] to pan[1] (shares of the room it can move over), its top at `tilt` (share),
    and its width from zoom[0] to zoom[1] times the frame width (>= 1: the frame never upsamples the world more
    than the room picture itself allows), along a smooth (cosine) ease so it starts and stops slowly."""

    world_wh: tuple[int, int]
    size_wh: tuple[int, int]
    n_frames: int
    pan: tuple[float, float]
    zoom: tuple[float, float]
    tilt: float

    def window(self, t: float) -> tuple[float, float, float]:
        """(x0, y0, width) of the window in world pixels at frame t."""
        u = 0.5 - 0.5 * np.cos(np.pi * min(max(t / max(self.n_frames - 1, 1), 0.0), 1.0))
        width = self.size_wh[0] * (self.zoom[0] + u * (self.zoom[1] - self.zoom[0]))
        height = width * self.size_wh[1] / self.size_wh[0]
        share = self.pan[0] + u * (self.pan[1] - self.pan[0])
        return share * (self.world_wh[0] - width), self.tilt * (self.world_wh[1] - height), width

    def view(self, t: float) -> np.ndarray:
        """The 2x3 affine map from world pixels to frame pixels at frame t."""
        x0, y0, width = self.window(t)
        r = self.size_wh[0] / width
        return np.array([[r, 0.0, -r * x0], [0.0, r, -r * y0]])

    def describe(self) -> dict:
        return {"kind": "pan_zoom", "world_wh": list(self.world_wh), "pan": list(self.pan), "zoom": list(self.zoom),
                "tilt": self.tilt}


def plan_pan_zoom(size_wh: tuple[int, int], n_frames: int, rng: np.random.Generator, world_scale: float = 1.4
                  ) -> PanZoom:
    """A slow pan across a world world_scale times the frame (left to right or back, by rng), zooming in or out
    between 1.0 and 1.3 frame widths, the window kept low in the world (tilt 0.6-1), where the people walk."""
    world = (round(size_wh[0] * world_scale), round(size_wh[1] * world_scale))
    pan = (0.0, 1.0) if rng.random() < 0.5 else (1.0, 0.0)
    zoom = tuple(float(z) for z in (rng.uniform(1.0, 1.1), rng.uniform(1.2, 1.3)))
    return PanZoom(world, tuple(size_wh), n_frames, pan, zoom if rng.random() < 0.5 else zoom[::-1],
                   float(rng.uniform(0.6, 1.0)))


def then(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine map `outer` after `inner` (x -> outer(inner(x)))."""
    o, i = np.asarray(outer, float), np.asarray(inner, float)
    return np.hstack([o[:, :2] @ i[:, :2], o[:, :2] @ i[:, 2:] + o[:, 2:]])


def motion_blur_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised (n, n) line kernel, n odd: a segment of `length` px through the centre at angle_deg (0: along
    x), drawn by bilinear splats of many points so a fractional length or any angle is exact; symmetric about
    its centre (the blurred picture does not shift)."""
    n = 2 * int(np.ceil(length / 2)) + 3
    c = n // 2
    kernel = np.zeros((n, n), np.float64)
    theta = np.deg2rad(angle_deg)
    for s in np.linspace(-length / 2, length / 2, max(int(8 * length), 2)):
        for sign in (1, -1):            # both halves alike: exact central symmetry
            x, y = c + sign * s * np.cos(theta), c + sign * s * np.sin(theta)
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            fx, fy = x - x0, y - y0
            kernel[y0, x0] += (1 - fx) * (1 - fy)
            kernel[y0, x0 + 1] += fx * (1 - fy)
            kernel[y0 + 1, x0] += (1 - fx) * fy
            kernel[y0 + 1, x0 + 1] += fx * fy
    return (kernel / kernel.sum()).astype(np.float32)


def motion_blur(frame: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """The frame (uint8) through motion_blur_kernel, edges reflected; same shape and type."""
    return cv2.filter2D(frame, -1, motion_blur_kernel(length, angle_deg), borderType=cv2.BORDER_REFLECT)


def plan_blur(rng: np.random.Generator, max_length: float) -> tuple[float, float]:
    """(length, angle_deg) of one scene's blur: half to all of max_length, any direction."""
    return float(rng.uniform(0.5, 1.0) * max_length), float(rng.uniform(0.0, 180.0))
