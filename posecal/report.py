"""report.html: the trust report of one evaluation as a single self-contained page (plots and pictures
embedded as data URIs), something to read and to send to a colleague.

Tables of the headline numbers, the plots of the out folder, and two galleries where trust failed most:
the most over-confident persons (high pose quality, low true OKS) and the most under-confident, each drawn
with posecal's trust overlay beside the ground truth.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np

from posecal.errors import PosecalInputError
from posecal.io import write_atomic

GALLERY = 6
THUMB_H = 260
PLOTS = (("reliability.png", "Keypoint reliability"), ("pose_score_vs_oks.png", "Pose score vs true OKS"),
         ("risk_coverage.png", "Risk-coverage"), ("visibility_confusion.png", "Visibility"))
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.3em .7em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.plots img{max-width:48%;margin:.5%}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:6px;
font-size:.85em}.card img{height:""" + str(THUMB_H) + """px}.note{color:#666;font-size:.9em}"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else html.escape(str(v)))


def _table(rows: list[tuple], header: tuple) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary(m: dict) -> str:
    scores = list(m.get("pose_score_pearson", {}))
    rows = [(s, m["ap"].get(s), m["pose_score_pearson"].get(s), m.get("pose_score_spearman", {}).get(s),
             m.get("pose_score_ece", {}).get(s)) for s in scores]
    out = _table(rows, ("pose score", "AP", "Pearson vs OKS", "Spearman", "ECE"))
    out += _table([(k, v) for k, v in m.get("keypoint_ece", {}).items()], ("keypoint confidence", "ECE"))
    if "keypoint_radius" in m:
        r = m["keypoint_radius"]
        out += (f"<p>Conformal keypoint radii (target {r['target']}): coverage <b>{_fmt(r['coverage'])}</b> of "
                f"labelled keypoints; median radius {_fmt(r['median_radius_rel'])} × √area.</p>")
        out += _table(list(r["coverage_per_keypoint"].items()), ("keypoint", "coverage"))
    if "visibility" in m:
        b = m["visibility"]["binary"]
        out += _table([("labelled vs not", b["precision"], b["recall"], b["f1"])],
                      ("visibility", "precision", "recall", "F1"))
    rc = m.get("risk_coverage", {})
    out += _table([(k, c["aurc"], c["oracle_aurc"], c["mean_oks"][4] if c["mean_oks"] else None)
                   for k, c in rc.items()], ("risk-coverage", "area", "oracle area", "mean truth, top 50 %"))
    return out


def _thumb(bgr: np.ndarray, box) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    pad = 0.15 * max(w, h)
    x0, y0 = int(max(0, x - pad)), int(max(0, y - pad))
    x1, y1 = int(min(bgr.shape[1], x + w + pad)), int(min(bgr.shape[0], y + h + pad))
    crop = bgr[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else bgr
    return cv2.resize(crop, (max(1, round(crop.shape[1] * THUMB_H / crop.shape[0])), THUMB_H))


def _card(image_path, pred, gt_kp: np.ndarray, gt_oks: float) -> str | None:
    from posecal.data.coco import read_image
    from posecal.predictor import PersonPose
    from posecal.render import render_people

    try:
        bgr = read_image(image_path)
    except PosecalInputError:
        return None
    truth = PersonPose(pred.box, gt_kp[:, :2], np.ones(len(gt_kp)), np.ones(len(gt_kp)), 1.0,
                       visibility=gt_kp[:, 2].astype(int))
    left = _thumb(render_people(bgr, [pred], legend=False, radius=True), pred.box)
    right = _thumb(render_people(bgr, [truth], legend=False), pred.box)
    ok, png = cv2.imencode(".png", np.concatenate([left, np.full((THUMB_H, 4, 3), 255, np.uint8), right], 1))
    if not ok:
        return None
    return (f'<div class="card"><img src="{_data_uri(png.tobytes())}"><br>predicted quality '
            f"<b>{pred.pose_quality:.2f}</b>, true OKS <b>{gt_oks:.2f}</b> · {html.escape(Path(image_path).name)}"
            f"<br><span class=note>left: prediction with trust overlay · right: ground truth</span></div>")


def _gallery(order, people, image_paths, gt, gt_oks) -> str:
    cards = []
    for i in order:
        card = _card(image_paths[i], people[i], gt[i], gt_oks[i]) if image_paths[i] else None
        if card:
            cards.append(card)
        if len(cards) == GALLERY:
            break
    return '<div class="gallery">' + "".join(cards) + "</div>" if cards else "<p class=note>no images</p>"


def write_report(out_dir, metrics: dict, people=None, image_paths=None, gt=None, gt_oks=None,
                 title: str = "posecal trust report") -> Path:
    """people: PersonPose-like predictions aligned with gt (N, K, 3), gt_oks (N,) and image_paths (None
    where the image is unknown); without them the galleries are left out."""
    out_dir = Path(out_dir)
    parts = [f"<h1>{html.escape(title)}</h1><p class=note>{metrics.get('num_matched', metrics.get('num_instances'))}"
             f" persons. Pose quality = predicted OKS; keypoint quality = predicted per-keypoint OKS term; ECE: 15 "
             f"equal-width bins, |mean predicted − mean true| weighted by bin share.</p>",
             "<h2>Numbers</h2>", _summary(metrics), "<h2>Plots</h2><div class=plots>"]
    for name, alt in PLOTS:
        if (out_dir / name).is_file():
            parts.append(f'<img alt="{alt}" title="{alt}" src="{_data_uri((out_dir / name).read_bytes())}">')
    parts.append("</div>")
    if people is not None and len(people):
        q = np.array([p.pose_quality for p in people])
        gap = q - np.asarray(gt_oks)
        parts += ["<h2>Most over-confident</h2><p class=note>highest predicted quality minus true OKS</p>",
                  _gallery(np.argsort(-gap), people, image_paths, gt, gt_oks),
                  "<h2>Most under-confident</h2><p class=note>highest true OKS minus predicted quality</p>",
                  _gallery(np.argsort(gap), people, image_paths, gt, gt_oks)]
    page = f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style>" \
           f"</head><body>{''.join(parts)}</body></html>"
    path = out_dir / "report.html"
    write_atomic(path, lambda f: f.write(page), mode="w")
    return path
