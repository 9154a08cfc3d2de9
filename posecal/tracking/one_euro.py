"""One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) over arrays, with a cutoff per element.

An exponential smoother whose cutoff frequency rises with the signal's speed: slow motion is smoothed hard
(jitter goes), fast motion passes with little lag. posecal gives every keypoint its own minimum cutoff, set
from how far the keypoint is trusted (tracker.keypoint_cutoffs): trusted keypoints follow quickly, doubtful
ones are damped.
"""
from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff, dt: float):
    """alpha of an exponential smoother with cutoff frequency `cutoff` (Hz) at time step dt (s)."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, float))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """x_hat = alpha * x + (1 - alpha) * x_hat_prev, alpha from cutoff = min_cutoff + beta * |dx_hat/dt|.

    Works on arrays of any fixed shape; min_cutoff may be given per element at each call. Elements marked
    `reset` (e.g. a keypoint that was absent) restart from the raw value, with no memory of where they were.
    """

    def __init__(self, min_cutoff=1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x_prev = self.dx_prev = self.t_prev = None

    def __call__(self, x, t: float, min_cutoff=None, reset=None) -> np.ndarray:
        x = np.asarray(x, float)
        if self.x_prev is None or t <= self.t_prev:
            self.x_prev, self.dx_prev, self.t_prev = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t_prev
        dx = (x - self.x_prev) / dt
        dx_hat = self.dx_prev + smoothing_factor(self.d_cutoff, dt) * (dx - self.dx_prev)
        cutoff = (self.min_cutoff if min_cutoff is None else np.asarray(min_cutoff, float)) + self.beta * np.abs(dx_hat)
        x_hat = self.x_prev + smoothing_factor(cutoff, dt) * (x - self.x_prev)
        if reset is not None:
            reset = np.broadcast_to(np.asarray(reset, bool), x.shape)
            x_hat = np.where(reset, x, x_hat)
            dx_hat = np.where(reset, 0.0, dx_hat)
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx_hat, t
        return x_hat.copy()
