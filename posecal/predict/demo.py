"""`posecal demo`: the shipped model on a real photograph available offline on any machine.

The photo is scikit-image's public-domain astronaut (Eileen Collins, NASA), from the optional `demo` extra.
The demo is `posecal predict` on that file, so what it shows is exactly what users get.
"""
from __future__ import annotations

from pathlib import Path

import cv2

from posecal.detect.detector import MIN_POSE_QUALITY
from posecal.errors import PosecalInputError
from posecal.io import write_bytes_atomic
from posecal.outputs import check_output_dir
from posecal.predict.job import PredictConfig, render_path, run_predict
from posecal.data.sources import Frame

CLASS_NAMES = ("absent", "occluded", "visible")


def demo_photo():
    """RGB uint8 astronaut photo (512x512)."""
    try:
        from skimage import data
    except ImportError:
        raise PosecalInputError("posecal demo needs scikit-image for its photo: pip install 'posecal[demo]'") from None
    return data.astronaut()


def run_demo(out_dir="posecal-demo", model=None, log=print, min_pose_quality: float = MIN_POSE_QUALITY) -> dict:
    out = check_output_dir(out_dir, "--out")
    photo = out / "astronaut.png"
    ok, png = cv2.imencode(".png", demo_photo()[:, :, ::-1])
    write_bytes_atomic(photo, png.tobytes())
    cfg = PredictConfig(inputs=[str(photo)], out=str(out / "astronaut_poses.json"), model=model,
                        render=str(out / "overlay"), progress=False, min_pose_quality=min_pose_quality)
    summary = run_predict(cfg, keep_people=True)
    overlay = render_path(Frame("astronaut.png", photo, None), cfg.render)
    for i, person in enumerate(summary.people.get("astronaut.png", []), 1):
        counts = ""
        if person.visibility is not None:
            n = [int((person.visibility == c).sum()) for c in range(3)]
            counts = f"; keypoints: {n[2]} visible, {n[1]} occluded, {n[0]} absent"
        good = int((person.keypoint_quality >= 0.5).sum())
        log(f"person {i}: pose quality {person.pose_quality:.2f} (predicted OKS){counts}; "
            f"{good}/{len(person.keypoint_quality)} keypoints with quality >= 0.5")
    log(f"overlay: {overlay}")
    log(f"results: {cfg.out} (COCO keypoint results + pose_quality, keypoint_quality, visibility)")
    return {"overlay": overlay, "results": Path(cfg.out), "people": summary.people.get("astronaut.png", [])}
