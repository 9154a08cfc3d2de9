"""report.html of `posecal audit`: the top findings as cards, each the person's crop with the label drawn
against the estimate, so that a person can accept or reject a finding at a glance and copy its id.

Drawing: the labelled skeleton thin grey for context; the label magenta (a cross), the estimate green (a dot)
with its conformal radius circle, a line from one to the other; a swap shows both sides' labels and estimates
marked L / R; visibility and missing findings ring the keypoint in yellow; a person finding draws the whole
labelled pose magenta and the estimated pose green. Self-contained: crops embedded as JPEG data URIs.
"""
from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np

from posecal.audit.estimates import Estimates
from posecal.data.images import read_image
from posecal.errors import PosecalInputError
from posecal.io import write_atomic
from posecal.skeleton import COCO_LIMBS
from posecal.viz.report import CSS, crop_thumbnail, data_uri

THUMB_H = 300
LABEL, ESTIMATE, CONTEXT, RING = (220, 40, 220), (40, 200, 40), (170, 170, 170), (0, 220, 255)   # BGR
VIS_NAMES = ("absent", "occluded", "visible")


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _skeleton(img, xy, present, color, thickness) -> None:
    for a, b in COCO_LIMBS:
        if present[a] and present[b]:
            cv2.line(img, _pt(xy[a]), _pt(xy[b]), color, thickness, cv2.LINE_AA)


def _cross(img, p, color, size=6) -> None:
    x, y = _pt(p)
    cv2.line(img, (x - size, y - size), (x + size, y + size), color, 2, cv2.LINE_AA)
    cv2.line(img, (x - size, y + size), (x + size, y - size), color, 2, cv2.LINE_AA)


def _text(img, text, p, color) -> None:
    cv2.putText(img, text, (_pt(p)[0] + 7, _pt(p)[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


def _draw(f: dict, bgr, box, labels, estimate) -> np.ndarray:
    """The finding drawn on the crop around `box`; labels (K, 3) and estimate (K, 2) in image pixels."""
    thumb, to_thumb, s = crop_thumbnail(bgr, box, THUMB_H)
    lab, est = to_thumb(labels[:, :2]), to_thumb(estimate)
    present = labels[:, 2] > 0
    kind, k = f["kind"], f["keypoint"]
    if kind == "person":
        _skeleton(thumb, lab, present, LABEL, 2)
        _skeleton(thumb, est, np.ones(len(est), bool), ESTIMATE, 2)
        return thumb
    _skeleton(thumb, lab, present, CONTEXT, 1)
    sides = [(k, "")] if kind != "swap" else [(f["pair"][0], "L"), (f["pair"][1], "R")]
    for j, tag in sides:
        r = max(2, int(round(f["radius"] * s))) if j == k else None
        if kind in ("position", "swap"):
            cv2.line(thumb, _pt(lab[j]), _pt(est[j]), CONTEXT, 1, cv2.LINE_AA)
            cv2.circle(thumb, _pt(est[j]), 4, ESTIMATE, -1, cv2.LINE_AA)
            if r:
                cv2.circle(thumb, _pt(est[j]), r, ESTIMATE, 1, cv2.LINE_AA)
            _cross(thumb, lab[j], LABEL)
            if tag:
                _text(thumb, tag, lab[j], LABEL)
                _text(thumb, tag, est[j], ESTIMATE)
        else:   # visibility, missing: ring where the keypoint is (the label's place, else the estimate's)
            at = lab[j] if present[j] else est[j]
            cv2.circle(thumb, _pt(at), 12, RING, 2, cv2.LINE_AA)
            if not present[j]:
                cv2.circle(thumb, _pt(est[j]), 4, ESTIMATE, -1, cv2.LINE_AA)
            else:
                _cross(thumb, lab[j], LABEL)
    return thumb


def _caption(rank: int, f: dict) -> str:
    what = f["kind"] if f["keypoint"] is None else f"{f['kind']}: {f['keypoint_name']}"
    if f["kind"] == "visibility":
        detail = f"labelled {VIS_NAMES[f['label'][2]]}, p({VIS_NAMES[f['estimate'][2]]}) = {f['score']:.3f}"
    elif f["kind"] == "missing":
        detail = f"not labelled, p(labelled) = {f['score']:.3f}, model says {VIS_NAMES[f['estimate'][2]]}"
    elif f["kind"] == "position":
        detail = f"P(a correct label this far) = {f['p_label_correct']:.2g}"
    elif f["kind"] == "swap":
        detail = f"P(swapped) = {f['score']:.4f}, log10 odds {f['strength']:.1f}"
    else:
        detail = f"labels' OKS vs estimate {f['oks']:.2f}, expected {f['pose_quality']:.2f}"
    return (f"<b>#{rank} {html.escape(what)}</b> score {f['score']:.3f}<br>{html.escape(detail)}<br>"
            f"<code>{html.escape(f['id'])}</code>")


def write_gallery(path, findings: list[dict], est: Estimates, labels, total: int) -> Path:
    """report.html with one card per finding (the top ones: the caller cuts the list)."""
    row = {int(a): i for i, a in enumerate(est.annotation_ids)}
    cards = []
    for rank, f in enumerate(findings, 1):
        i = row[f["annotation_id"]]
        img = ""
        if est.image_paths[i]:
            try:
                bgr = read_image(str(est.image_paths[i]))
                ok, jpg = cv2.imencode(".jpg", _draw(f, bgr, est.boxes[i], labels[i], est.keypoints[i]),
                                       [cv2.IMWRITE_JPEG_QUALITY, 85])
                img = f'<img src="{data_uri(jpg.tobytes(), "image/jpeg")}"><br>' if ok else ""
            except PosecalInputError:
                img = "<p class=note>image unreadable</p>"
        cards.append(f'<div class="card">{img}{_caption(rank, f)}</div>')
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>posecal audit</title><style>{CSS}"
            ".gallery{grid-template-columns:repeat(auto-fill,minmax(260px,1fr))}</style></head><body>"
            f"<h1>posecal audit</h1><p class=note>{total} findings; the top {len(findings)} below, highest score "
            "first. Magenta cross = the label, green dot = the model's estimate with its conformal radius circle, "
            "yellow ring = a visibility or missing finding; swaps mark both sides L / R; person findings draw the "
            "labelled pose magenta and the estimate green. Accept a finding with <code>posecal audit apply "
            "--accept ID,...</code> (ids under each card). Scores: position 1 − P(a correct label this far from "
            "the estimate); swap P(swapped); visibility P(the other labelled class: occluded ↔ visible); missing "
            "P(labelled) = 1 − P(absent); "
            "person the OKS shortfall.</p>"
            f'<div class="gallery">{"".join(cards)}</div></body></html>')
    path = Path(path)
    write_atomic(path, lambda fh: fh.write(page), mode="w")
    return path
