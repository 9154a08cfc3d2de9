"""`posecal demo`: the shipped model on a real photograph available offline on any machine.

The photo is scikit-image's public-domain astronaut (Eileen Collins, NASA), from the optional `demo` extra.
The demo is `posecal predict` on that file, so what it shows is exactly what users get.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from posecal.inference.person_policy import MIN_POSE_QUALITY
from posecal.errors import PosecalInputError
from posecal.io import check_output_dir, write_bytes_atomic
from posecal.predict.job import PredictConfig, render_path
from posecal.predict.units import run_predict


def demo_photo():
    """RGB uint8 astronaut photo (512x512)."""
    try:
        from skimage import data
    except ImportError:
        raise PosecalInputError("posecal demo needs scikit-image for its photo: pip install 'posecal[demo]'") from None
    return data.astronaut()


def person_line(i: int, person) -> str:
    """One person of the demo in words. Keypoint quality is the expected OPKS of a keypoint that is there, so the
    count of good keypoints is among those posecal calls present (visible or occluded): an absent hip with a high
    quality is not a good keypoint the picture shows."""
    counts, present = "", np.ones(len(person.keypoint_quality), bool)
    if person.visibility is not None:
        n = [int((person.visibility == c).sum()) for c in range(3)]
        counts = f"; keypoints: {n[2]} visible, {n[1]} occluded, {n[0]} absent"
        present = np.asarray(person.visibility) > 0
    good = int(((np.asarray(person.keypoint_quality) >= 0.5) & present).sum())
    return (f"person {i}: pose quality {person.pose_quality:.2f} (predicted OKS){counts}; "
            f"{good}/{int(present.sum())} {'present ' if person.visibility is not None else ''}keypoints with "
            f"quality >= 0.5")


def run_demo(out_dir="posecal-demo", model=None, log=print, min_pose_quality: float = MIN_POSE_QUALITY) -> dict:
    out = check_output_dir(out_dir, "--out")
    photo = out / "astronaut.png"
    ok, png = cv2.imencode(".png", demo_photo()[:, :, ::-1])
    write_bytes_atomic(photo, png.tobytes())
    cfg = PredictConfig(inputs=[str(photo)], out=str(out / "astronaut_poses.json"), model=model,
                        render=str(out / "overlay"), progress=False, min_pose_quality=min_pose_quality)
    run_predict(cfg)
    overlay = render_path("astronaut.png", cfg.render)
    people = [person_of(entry) for entry in json.loads(Path(cfg.out).read_text())]
    for i, person in enumerate(people, 1):
        log(person_line(i, person))
    log(f"overlay: {overlay}")
    log(f"results: {cfg.out} (COCO keypoint results + pose_quality, keypoint_quality, visibility)")
    return {"overlay": overlay, "results": Path(cfg.out), "people": people}


def person_of(entry: dict) -> SimpleNamespace:
    """A results entry as the fields person_line reads: what the demo says is what its results file holds."""
    visibility = entry.get("visibility")
    return SimpleNamespace(pose_quality=entry["pose_quality"], keypoint_quality=np.asarray(entry["keypoint_quality"]),
                           visibility=None if visibility is None else np.asarray(visibility))
