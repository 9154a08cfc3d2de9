"""What a shipped model costs on this CPU: milliseconds per person crop, measured here (`posecal models --time`).

Why measured and not quoted: the same graphs run 2-3x apart between CPU kinds (int8 with VNNI, float on an
AVX2-only x86, ARM), and a user choosing between `accurate` and `fast` wants this machine's figure. A crop's time
does not depend on what the crop shows, so a drawn crop serves; a photo costs about one crop per person found
plus the detector and the verifier, a tracked frame about a crop per person re-posed (README, "Speed").
"""
from __future__ import annotations

import time

import numpy as np

from posecal.inference.opener import open_model


def ms_per_crop(model: str, flip: bool, threads: int = 2, precision: str = "auto", runs: int = 10) -> float:
    """The median ms of `runs` single-crop passes of `model`'s graph as predict (flip) or track (no flip) runs it,
    after two warm passes (the first allocates)."""
    opened = open_model(model, None, flip, threads, "cpu", precision=precision)
    w, h = opened.config.input_wh
    crop = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    for _ in range(2):
        opened.runner.outputs(crop, opened.flip)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        opened.runner.outputs(crop, opened.flip)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)
