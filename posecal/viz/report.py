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
from posecal.evaluation.one_to_one import CONFIDENT, WRONG_BELOW
from posecal.evaluation.outcome import Evaluation
from posecal.io import write_atomic
from posecal.viz import plots

GALLERY = 6
THUMB_H = 280
PLOTS = (("reliability.png", "Keypoint reliability"), ("pose_score_vs_oks.png", "Pose score vs true OKS"),
         ("risk_coverage.png", "Risk-coverage"), ("visibility_confusion.png", "Visibility"))
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em;line-height:1.4}h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1em;margin:.2em 0}table{border-collapse:collapse;margin:.3em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}td.off{background:#fde2e2}.tables{display:flex;flex-wrap:wrap;
gap:10px 32px;align-items:flex-start}.plots{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.plots figure{margin:0}.plots figure.wide{grid-column:span 2;text-align:center}.plots figure.wide img{width:auto;max-width:100%;max-height:330px}.plots img{width:100%}figcaption{color:#666;
font-size:.85em;text-align:center}.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));
gap:12px;align-items:start}.card{border:1px solid #ddd;border-radius:6px;padding:6px;font-size:.85em}.card img{max-width:100%}
.note{color:#666;font-size:.9em}.scale{display:inline-block;width:140px;height:.8em;vertical-align:middle;
border-radius:2px;background:linear-gradient(90deg,#d72626,#f07020,#f5c428,#96cd3c,#1a9e4e)}"""
WIDE = 1.8   # plots wider than this (width / height) get a whole row


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """Image bytes as a data: URI, so report.html needs no other file."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else html.escape(str(v)))


def _ap(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def _table(rows: list[tuple], header: tuple, title: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<div><h3>{html.escape(title)}</h3>" if title else "<div>") + f"<table><tr>{head}</tr>{body}</table></div>"


def _coverage_table(per_keypoint: dict, target: float, columns: int = 3) -> str:
    """Per-keypoint radius coverage, `columns` keypoints a row; cells more than 0.05 off the target shaded."""
    items = list(per_keypoint.items())
    n_rows = -(-len(items) // columns)
    rows = [items[i::n_rows] for i in range(n_rows)]   # down the columns, as one reads a list
    cell = lambda v: f'<td class=off>{_fmt(v)}</td>' if v is not None and abs(v - target) > 0.05 \
        else f"<td>{_fmt(v)}</td>"  # noqa: E731
    body = "".join("<tr>" + "".join(f"<td>{html.escape(k)}</td>{cell(v)}" for k, v in r) + "</tr>" for r in rows)
    head = "<th>keypoint</th><th>coverage</th>" * columns
    return f"<div><h3>Radius coverage per keypoint</h3><table><tr>{head}</tr>{body}</table></div>"


def _floor(floor) -> tuple:
    """(mean, 90th percentile) of an ECE's floor (evaluation/results.py ece_floors: what a perfectly calibrated
    predictor shows on this many people), None where the metrics have none: an ECE means little without it."""
    return tuple(floor) if floor else (None, None)


# metrics.json's one_to_one figures (evaluation/one_to_one.py), as the report names them
ONE_TO_ONE_ROWS = (("poses", "poses reported"), ("matched", "matched to a labelled person"),
                   ("duplicates", "a labelled person posed again (scored 0)"),
                   ("uncovered", "on nobody labelled (not scored)"), ("people_labelled", "labelled people"),
                   ("found_right", f"labelled people found with a right pose (OKS ≥ {WRONG_BELOW})"),
                   ("scored", "poses scored"), ("mean_quality", "mean pose quality"), ("mean_oks", "mean OKS"),
                   ("pearson", "Pearson, quality vs OKS"), ("ece", "pose-quality ECE"),
                   ("confident", f"confident poses (quality ≥ {CONFIDENT})"),
                   ("confident_wrong_share", f"share of them wrong (OKS < {WRONG_BELOW})"))
# what made the figures, as metrics.json says it (eval's own keys, and eval --detector's `about`)
RUN_FIELDS = (("model", "model"), ("boxes", "boxes"), ("precision", "precision"), ("backend", "backend"),
              ("verifier", "verifier"), ("fingerprint", "fingerprint"))


def _one_to_one_table(m: dict) -> str:
    """metrics.json's one_to_one figures: every reported pose against the labelled people of its picture."""
    e = m.get("one_to_one") or {}
    floor = _floor(e.get("ece_floor"))
    rows = []
    for key, label in ONE_TO_ONE_ROWS:
        if key in e:
            rows.append((label, e[key]))
        if key == "ece" and key in e:
            rows += [("ECE floor", floor[0]), ("ECE floor p90", floor[1])]
    return _table(rows, ("reported poses", ""), "Pose quality, one to one")


def _run_line(m: dict) -> str:
    """What made the figures (model, boxes or detector, precision, the run's fingerprint), where metrics.json
    says it: a report read apart from its folder still names its run."""
    parts = [f"{label} <b>{_fmt(m[key])}</b>" for key, label in RUN_FIELDS if m.get(key) is not None]
    return f"<p class=note>{', '.join(parts)}</p>" if parts else ""


def _pose_table(m: dict, one_to_one: bool) -> str:
    """AP per pose score, with (on matched pairs) how each score follows OKS; with one_to_one, AP only: how the
    pose quality follows OKS is the one-to-one table's."""
    scores = list(m.get("ap", {}))
    if one_to_one:
        return _table([(s, _ap(m["ap"].get(s)), _ap(m.get("ap50", {}).get(s)), _ap(m.get("ar", {}).get(s)))
                       for s in scores], ("pose score", "AP", "AP50", "AR"), "COCO AP")
    scores = list(m.get("pose_score_pearson", {}))
    pose_floor = m.get("pose_score_ece_floor", {})
    rows = [(s, _ap(m["ap"].get(s)), m["pose_score_pearson"].get(s), m.get("pose_score_spearman", {}).get(s),
             m.get("pose_score_ece", {}).get(s), *_floor(pose_floor.get(s))) for s in scores]
    return _table(rows, ("pose score", "AP", "Pearson vs OKS", "Spearman", "ECE", "ECE floor", "floor p90"),
                  "Pose scores")


def _summary(m: dict, one_to_one: bool = False) -> str:
    keypoint_floor = m.get("keypoint_ece_floor", {})
    tables = ([_one_to_one_table(m)] if one_to_one else []) + [
        _pose_table(m, one_to_one),
        _table([(k, v, *_floor(keypoint_floor.get(k))) for k, v in m.get("keypoint_ece", {}).items()],
               ("keypoint confidence", "ECE", "ECE floor", "floor p90"), "Keypoint confidences")]
    if "visibility" in m:
        b = m["visibility"]["binary"]
        tables.append(_table([("labelled vs not", b["precision"], b["recall"], b["f1"])],
                             ("visibility", "precision", "recall", "F1"), "Visibility"))
    rc = m.get("risk_coverage", {})
    tables.append(_table([(k, c["aurc"], c["oracle_aurc"], c["mean_oks"][4] if c["mean_oks"] else None)
                          for k, c in rc.items()], ("ranked", "area", "oracle area", "mean truth, top 50 %"),
                         "Risk-coverage"))
    out = '<div class="tables">' + "".join(tables) + "</div>"
    if "keypoint_radius" in m:
        r = m["keypoint_radius"]
        out += (f"<p>Conformal keypoint radii (target {r['target']}): <b>{_fmt(r['coverage'])}</b> of labelled "
                f"keypoints lie inside their circle; median radius {_fmt(r['median_radius_rel'])} × √area.</p>")
        out += _coverage_table(r["coverage_per_keypoint"], r["target"])
    return out


def crop_thumbnail(bgr: np.ndarray, box, height: int = THUMB_H):
    """The box's region (padded by 15 %) scaled to `height` pixels high, and the map from image points to the
    thumbnail's (pixel centres kept), so that every card of a gallery is drawn at one size."""
    x, y, w, h = (float(v) for v in box)
    pad = 0.15 * max(w, h)
    x0, y0 = int(max(0, x - pad)), int(max(0, y - pad))
    x1, y1 = int(min(bgr.shape[1], x + w + pad)), int(min(bgr.shape[0], y + h + pad))
    if not (x1 > x0 and y1 > y0):
        x0, y0, x1, y1 = 0, 0, bgr.shape[1], bgr.shape[0]
    s = height / (y1 - y0)
    thumb = cv2.resize(bgr[y0:y1, x0:x1], (max(1, round((x1 - x0) * s)), height), interpolation=cv2.INTER_CUBIC)
    to_thumb = lambda xy: (np.asarray(xy, float) - (x0, y0) + 0.5) * s - 0.5  # noqa: E731 (pixel centres)
    return thumb, to_thumb, s


def _thumb(bgr: np.ndarray, box, person) -> np.ndarray:
    """The box's region scaled to THUMB_H pixels high, with `person` drawn at that size, so that lines and
    labels look alike on every card whatever the photo's resolution."""
    from dataclasses import replace

    from posecal.overlay import render_people

    thumb, to_thumb, s = crop_thumbnail(bgr, box)
    b = np.asarray(person.box, float)
    moved = replace(person, keypoints=to_thumb(person.keypoints),
                    box=np.r_[to_thumb(b[:2]), b[2:] * s] if np.isfinite(b).all() else b)
    return render_people(thumb, [moved], legend=False)


def _card(image_path, pred, gt_kp: np.ndarray, gt_oks: float) -> str | None:
    from posecal.data.coco import read_image
    from posecal.inference.predictor import PersonPose

    try:
        bgr = read_image(image_path)
    except PosecalInputError:
        return None
    # no box for the truth: its "Q" label would read as a prediction
    truth = PersonPose(np.full(4, np.nan), gt_kp[:, :2], np.ones(len(gt_kp)), np.ones(len(gt_kp)), 1.0,
                       visibility=gt_kp[:, 2].astype(int))
    left, right = _thumb(bgr, pred.box, pred), _thumb(bgr, pred.box, truth)
    ok, png = cv2.imencode(".png", np.concatenate([left, np.full((THUMB_H, 6, 3), 255, np.uint8), right], 1))
    if not ok:
        return None
    return (f'<div class="card"><img src="{data_uri(png.tobytes())}"><br>predicted quality '
            f"<b>{pred.pose_quality:.2f}</b>, true OKS <b>{gt_oks:.2f}</b><br>"
            f"<span class=note>{html.escape(Path(image_path).name)}</span></div>")


def _gallery(order, people, image_paths, gt, gt_oks) -> str:
    cards = []
    for i in order:
        card = _card(image_paths[i], people[i], gt[i], gt_oks[i]) if image_paths[i] else None
        if card:
            cards.append(card)
        if len(cards) == GALLERY:
            break
    return '<div class="gallery">' + "".join(cards) + "</div>" if cards else "<p class=note>no images</p>"


def _skipped_section(metrics: dict) -> str:
    """The inputs' entries left out under --skip-invalid, each with its reason, above the numbers they change."""
    skipped = (metrics.get("invalid_entries") or {}).get("entries") or []
    if not skipped:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in skipped)
    return (f"<h2>Skipped entries</h2><p class=note>--skip-invalid: these {len(skipped)} entries of the inputs were "
            f"left out, so every number below is computed without them.</p><ul>{items}</ul>")


def _counts(metrics: dict, one_to_one: bool) -> str:
    """Who the figures are of: the persons posed (or results matched), or, one to one, the poses reported and the
    labelled people they are scored against."""
    if one_to_one:
        e = metrics.get("one_to_one") or {}
        return (f"{e.get('poses')} poses reported, {e.get('matched')} matched one to one to the "
                f"{e.get('people_labelled')} labelled people of their pictures (the galleries show these)")
    return f"{metrics.get('num_matched', metrics.get('num_instances'))} persons"


def write_report(out_dir, metrics: dict, people=None, image_paths=None, gt=None, gt_oks=None,
                 title: str = "posecal trust report", one_to_one: bool = False) -> Path:
    """people: PersonPose-like predictions aligned with gt (N, K, 3), gt_oks (N,) and image_paths (None
    where the image is unknown); without them the galleries are left out. one_to_one: the poses a detector's
    boxes gave (eval --detector), whose pose figures are metrics' one_to_one ones, and `people` the poses
    matched one to one."""
    out_dir = Path(out_dir)
    parts = [f"<h1>{html.escape(title)}</h1>", _run_line(metrics),
             f"<p class=note>{_counts(metrics, one_to_one)}. Pose quality = predicted OKS; keypoint quality = "
             f"predicted per-keypoint OKS term; ECE: 15 equal-width bins, |mean predicted − mean true| weighted by "
             f"bin share.</p>",
             _skipped_section(metrics), "<h2>Numbers</h2>", _summary(metrics, one_to_one),
             "<h2>Plots</h2><div class=plots>"]
    figures = []
    for name, alt in PLOTS:
        if (out_dir / name).is_file():
            png = (out_dir / name).read_bytes()
            im = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
            wide = im is not None and im.shape[1] > WIDE * im.shape[0]
            figures.append((wide, f'<figure{" class=wide" if wide else ""}><img alt="{alt}" src="{data_uri(png)}">'
                                  f"<figcaption>{alt}</figcaption></figure>"))
    # the half-width plots side by side first, then the wide ones each on a row of its own
    parts += [f for _, f in sorted(figures, key=lambda f: f[0])] + ["</div>"]
    if people is not None and len(people):
        q = np.array([p.pose_quality for p in people])
        gap = q - np.asarray(gt_oks)
        parts += ["<h2>Most over-confident</h2><p class=note>highest predicted quality minus true OKS. Each card: "
                  "the prediction (left; colour = keypoint quality <span class=scale></span> 0 → 1, hollow ring "
                  "and dashed limb = predicted occluded, keypoints predicted absent hidden, Q = pose quality) "
                  "beside the ground truth (right; hollow = labelled occluded).</p>",
                  _gallery(np.argsort(-gap), people, image_paths, gt, gt_oks),
                  "<h2>Most under-confident</h2><p class=note>highest true OKS minus predicted quality</p>",
                  _gallery(np.argsort(gap), people, image_paths, gt, gt_oks)]
    page = f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style>" \
           f"</head><body>{''.join(parts)}</body></html>"
    path = out_dir / "report.html"
    write_atomic(path, lambda f: f.write(page), mode="w")
    return path


def draw_evaluation(ev: Evaluation) -> Path | None:
    """The pictures of one evaluation, drawn from its numbers into its out folder: the plots (reliability,
    pose score vs OKS, visibility confusion, risk-coverage; each where its inputs exist) and report.html.
    Nothing when the evaluation asked for no pictures."""
    pic, out = ev.pictures, Path(ev.out_dir)
    if pic is None:
        return None
    if pic.reliability:
        plots.reliability_diagram(pic.reliability, pic.reliability_truth, out / "reliability.png")
    if pic.pose_scores:
        plots.score_scatter(pic.pose_scores, pic.pose_truth, out / "pose_score_vs_oks.png")
    if pic.confusion is not None:
        plots.confusion_plot(pic.confusion, pic.confusion_labels, out / "visibility_confusion.png")
    if pic.risk_coverage:
        plots.risk_coverage_plot(pic.risk_coverage, out / "risk_coverage.png")
    return write_report(out, ev.metrics, pic.people, pic.image_paths, pic.gt, pic.gt_oks, one_to_one=pic.one_to_one)
