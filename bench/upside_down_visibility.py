"""Visibility of people upside down or lying, judged in their upright crop or in their crop turned to stand them up
(posecal/inference/orientation.py visibility_turns: half a turn from UPSIDE_DOWN_TILT, a quarter turn from
LYING_TILT), side by side in one run with the rule before (upside down only), on labelled boxes:

    python bench/upside_down_visibility.py [--model accurate] [--precision float] [--lspet 600] [--photos 150]
        [--json OUT]

LSPET: its last --lspet persons (held out from pose training, never used to choose the rule), split by the labels
into upside down, lying (by the labelled torso's tilt, the rule's thresholds) and the rest. LSPET's labels do not
tell visible from occluded (v = 2 may be hidden), so it reports, over the 12 body joints it labels, the share of
labelled joints called visible, the share called absent, and binary F1 (labelled vs called there). COCO val
(822 persons, visible / occluded / absent labelled): ternary weighted F1 and occluded F1, which the rule must keep. Each set is posed once with the rule
on; the persons it turned are posed again under the other rules (everyone else gets the same answer either way). Its cost:
the share of crops the rule turns (one more pass each) on --photos whole photos of each set posed with the
detector, rejected candidates included.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from posecal.data.coco import load_coco_persons, load_lspet  # noqa: E402
from posecal.data.images import read_image  # noqa: E402
from posecal.inference import estimator, orientation  # noqa: E402
from posecal.inference.predictor import Predictor  # noqa: E402
from posecal.metrics.visibility import binary_report, classification_report  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
BODY = slice(5, 17)   # the joints LSPET labels (its face keypoints are never labelled, though faces are there)


def posed(predictor: Predictor, records) -> np.ndarray:
    """(N, 17) visibility classes of each record's person on its labelled box."""
    out = []
    for r in records:
        out.append(predictor(read_image(r.image_path), boxes=[list(r.bbox)]).people[0].visibility)
    return np.array(out)


RULES = ("upright crop", "turned where upside down", "turned where upside down or lying")


@contextlib.contextmanager
def turns(rule: str = RULES[-1]):
    """The estimator's visibility turns (orientation.visibility_turns) as `rule` says (none; half a turn for poses
    upside down only, the rule before lying people were turned; the shipped rule), counting per upright pass the
    crops it posed and turned."""
    seen: list[tuple[int, int]] = []

    def counted(res):
        t = orientation.visibility_turns(res)
        t = t * 0 if rule == RULES[0] else np.where(t == 180.0, t, 0.0) if rule == RULES[1] else t
        seen.append((len(res.get("xy", [])), int((t > 0).sum())))
        return t
    estimator.visibility_turns = counted
    try:
        yield seen
    finally:
        estimator.visibility_turns = orientation.visibility_turns


def turned_share(predictor: Predictor, paths) -> dict:
    """The crops the upright passes posed and the share the rule turned (one more pass each), on whole photos
    with the detector: what the rule costs where people are found, rejected candidates included."""
    with turns() as seen:
        for path in paths:
            predictor(read_image(path))
    crops, turned = (sum(v) for v in zip(*seen)) if seen else (0, 0)
    return {"photos": len(paths), "crops": crops, "turned": turned, "share": round(turned / max(crops, 1), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--precision", default="float")
    ap.add_argument("--lspet", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", type=int, default=150, help="whole photos of each set posed with the detector")
    ap.add_argument("--json")
    args = ap.parse_args()
    predictor = Predictor(args.model, precision=args.precision, threads=args.threads, detector=None)
    figures = {}
    worlds = {"lspet": load_lspet(SHARED / "lspet/annotations/lspet.json", SHARED / "lspet/images")[-args.lspet:],
              "val": load_coco_persons(SHARED / "coco-val2017-crops/annotations/val.json",
                                       SHARED / "coco-val2017-crops/images")}
    for world, records in worlds.items():
        with turns() as seen:
            on = posed(predictor, records)
        rows = [i for i, (_, turned) in enumerate(seen) if turned]
        answers = {RULES[-1]: on}
        for rule in RULES[:-1]:   # the persons no rule turns get one answer whatever the rule
            answers[rule] = on.copy()
            if rows:
                with turns(rule):
                    answers[rule][rows] = posed(predictor, [records[i] for i in rows])
        truth = np.array([r.keypoints[:, 2] for r in records]).astype(int)
        torso = np.array([(r.keypoints[[5, 6, 11, 12], 2] > 0).all() for r in records])
        tilt = orientation.torso_tilt(np.array([r.keypoints[:, :2] for r in records]))
        down = torso & (tilt >= orientation.UPSIDE_DOWN_TILT)
        lying = torso & ~down & (tilt >= orientation.LYING_TILT)
        figures[world] = {"persons": len(records), "turned": len(rows),
                          "upside_down_in_truth": int(down.sum()), "lying_in_truth": int(lying.sum())}
        for how, vis in answers.items():
            line = {}
            if world == "lspet":
                for group, sel in (("upside down", down), ("lying", lying), ("the rest", ~down & ~lying)):
                    lab = truth[sel][:, BODY] > 0
                    v = vis[sel][:, BODY]
                    line[group] = {"n": int(sel.sum()), "visible_share": round(float((v[lab] == 2).mean()), 3),
                                   "absent_share": round(float((v[lab] == 0).mean()), 3),
                                   "binary_f1": round(binary_report(lab, v > 0)["f1"], 3)}
            else:
                rep = classification_report(truth, vis, 3)
                line = {"ternary_weighted_f1": round(float(rep["f1_weighted"]), 4),
                        "occluded_f1": round(float(rep["f1"][1]), 4),
                        "binary_f1": round(binary_report(truth > 0, vis > 0)["f1"], 4)}
            figures[world][how] = line
            print(world, how, json.dumps(line))
        print(world, f"turned {len(rows)} of {len(records)} persons ({int(down.sum())} upside down, {int(lying.sum())} "
              "lying by their labels)")
    finder = Predictor(args.model, precision=args.precision, threads=args.threads)   # the detector's boxes
    val_photos = sorted({r.image_path for r in worlds["val"]})
    figures["cost"] = {"val photos": turned_share(finder, val_photos[:: max(len(val_photos) // args.photos, 1)]
                                                  [:args.photos]),
                       "lspet photos": turned_share(finder, [r.image_path for r in worlds["lspet"]][-args.photos:])}
    for name, line in figures["cost"].items():
        print(f"cost, {name} with the detector: {line['turned']} of {line['crops']} crops turned ({line['share']:.1%})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
