"""`posecal track --show`: the overlay in a window as frames are tracked, where a display exists.

Why optional and quiet about it: posecal ships opencv-python-headless (no GUI) and mostly runs where no display
is (servers, containers). Where a window cannot be shown the run goes on without one, after one line saying why.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import cv2
import numpy as np


class LiveWindow:
    """A window showing one frame at a time; `closed_by_user` once the user pressed q or Esc (the run stops)."""

    def __init__(self, title: str):
        self.title = title
        self.closed_by_user = False

    @classmethod
    def open(cls, title: str, log: Callable[[str], None]) -> "LiveWindow | None":
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            log("--show: no display (DISPLAY is not set); going on without a window")
            return None
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            log("--show: this OpenCV has no GUI (opencv-python-headless); going on without a window "
                "(pip install opencv-python for one)")
            return None
        return cls(title)

    def show(self, bgr: np.ndarray) -> bool:
        cv2.imshow(self.title, bgr)
        if (cv2.waitKey(1) & 0xFF) in (ord("q"), 27):
            self.closed_by_user = True
        return not self.closed_by_user

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
