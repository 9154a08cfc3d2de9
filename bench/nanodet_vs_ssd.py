"""The shipped SSD against the shipped NanoDet-m: recall, invented persons, ms per picture; NanoDet's threshold
chosen on one half, judged on the other (python bench/nanodet_vs_ssd.py [--patches 200] [--threads 2]).

Data (the same split as bench/person_worlds.py):
* val crops (822, one labelled person each; the photo's other labelled people mapped in): tuning = even image ids,
  held-out = odd. Found = some box with IoU >= 0.5 with the labelled person; "false per crop" = boxes on no
  labelled person of the photo (an upper bound: COCO leaves some people unlabelled).
* person-free pictures: --patches regions of the *train* crops overlapping no labelled person (tuning;
  detector_recall.person_free_patches) and scikit-image's 22 photos without people (held out).

Each detector runs once per picture at a floor below every threshold measured; a threshold's boxes are those
scored at or above it, which is exactly what the detector at that threshold returns (greedy box NMS only lets
a higher-scored box suppress a lower one). The two detectors run alternately on each picture, so that the
machine's load weighs on both alike; ms = median wall time of the detector call (resize, network, decoding,
NMS), --threads onnxruntime threads.

NanoDet's threshold, on the tuning data alone: the highest of THRESHOLDS (the fewest boxes) whose recall on the
tuning crops is still at least the SSD's at 0.3, among those inventing no more persons on the tuning patches than
the SSD (the lowest threshold if none keeps the SSD's recall). Why not "as few false boxes per crop as the SSD":
NanoDet finds many more of the crops' other people, cut at the crop's edge or unlabelled (COCO labels keypoints
of some people only), and that count, an upper bound on invented persons, then held it at 0.45 with recall
0.62 on the tuning crops, far below the SSD's 0.76; on the person-free patches, where a box is surely invented,
NanoDet invents fewer than the SSD at every threshold measured.
Small people: recall on the crops whose labelled person is under SMALL px tall (the count is printed).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from detector_recall import iou, no_people_photos, others_in_crop, person_free_patches

SSD_THRESHOLD = 0.3
THRESHOLDS = (0.3, 0.3125, 0.325, 0.3375, 0.35, 0.375, 0.4, 0.45)
FLOOR = 0.25
SMALL = 128


def run(detectors: dict, pictures: list, threads: int) -> dict:
    """Per detector: per picture (boxes, scores) at its floor, and the seconds each call took."""
    out = {name: ([], []) for name in detectors}
    for bgr in pictures:
        for name, det in detectors.items():
            t = time.perf_counter()
            boxes, scores = det(bgr)
            out[name][1].append(time.perf_counter() - t)
            out[name][0].append((boxes, scores))
    return out


def judge(dets: list, threshold: float, targets: list | None, labelled: list | None) -> tuple[int, int]:
    """(labelled persons found, boxes on nobody labelled) over pictures at `threshold`."""
    found = false = 0
    for k, (boxes, scores) in enumerate(dets):
        boxes = boxes[scores >= threshold]
        if not len(boxes):
            continue
        if targets is not None:
            found += int(iou(targets[k][None], boxes).max() >= 0.5)
        people = labelled[k] if labelled is not None else np.zeros((0, 4))
        false += int((iou(boxes, people).max(1, initial=0) < 0.5).sum()) if len(people) else len(boxes)
    return found, false


def parse_args() -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/coco-val2017-crops"))
    ap.add_argument("--patches", type=int, default=200, help="person-free train patches (tuning)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N val crops only (0: all)")
    ap.add_argument("--nms", type=float, help="NanoDet's box NMS IoU (default: the detector's own)")
    return ap.parse_args()


class ValCrops(NamedTuple):
    """The val crops, each with its labelled person's box (the target) and the photograph's labelled people
    mapped into it."""

    images: list[dict]
    crops: list[np.ndarray]
    targets: list[np.ndarray]
    labelled: list[np.ndarray]


def load_val_crops(data: Path, limit: int) -> ValCrops:
    """The first `limit` val crops (0: all) of the crop set at `data`."""
    coco = json.loads((data / "annotations/val.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    images = coco["images"][: limit or None]
    crops = [cv2.imread(str(data / "images" / im["file_name"])) for im in images]
    targets = [np.array(anns[im["id"]]["bbox"], float) for im in images]
    labelled = [others_in_crop(anns[im["id"]], by_photo[anns[im["id"]]["orig_image_id"]], im["width"],
                               im["height"]) for im in images]
    return ValCrops(images, crops, targets, labelled)


def load_detectors(threads: int, nms: float | None) -> dict:
    """The SSD at its shipped threshold and NanoDet at FLOOR (below every threshold judged), with --nms."""
    from posecal.detect.detector import load_detector

    detectors = {"ssd": load_detector("ssd", SSD_THRESHOLD, threads=threads),
                 "nanodet": load_detector("nanodet", FLOOR, threads=threads)}
    if nms is not None:
        detectors["nanodet"].nms_threshold = nms
    return detectors


def warm_up(detectors: dict, picture: np.ndarray) -> None:
    """One untimed call each: the first calls (session warm-up) would weigh on the timings."""
    for det in detectors.values():
        det(picture)


class Measured(NamedTuple):
    """The detectors' boxes and call times on the val crops, the person-free train patches (tuning) and the
    person-free photos (held out), and the val crops' halves."""

    val: ValCrops
    on_crops: dict
    on_patches: dict
    on_photos: dict
    halves: dict      # "tuning" (even image ids) / "held-out" (odd): crop indices
    small: np.ndarray  # the crop's labelled person is under SMALL px tall

    def row(self, name: str, threshold: float, half: str) -> dict:
        """One detector at one threshold on one half: recall (all and small people), false boxes per crop and
        boxes on the person-free pictures of that half."""
        idx = self.halves[half]
        targets, labelled = self.val.targets, self.val.labelled
        dets = [self.on_crops[name][0][i] for i in idx]
        found, false = judge(dets, threshold, [targets[i] for i in idx], [labelled[i] for i in idx])
        sidx = [i for i in idx if self.small[i]]
        found_small, _ = judge([self.on_crops[name][0][i] for i in sidx], threshold, [targets[i] for i in sidx],
                               None)
        free = self.on_patches if half == "tuning" else self.on_photos
        _, invented = judge(free[name][0], threshold, None, None)
        pictures_with = sum(int((s >= threshold).any()) for _, s in free[name][0])
        return dict(n=len(idx), recall=found / max(len(idx), 1), false=false, false_per_crop=false / max(len(idx), 1),
                    small=found_small / max(len(sidx), 1), n_small=len(sidx), invented=invented,
                    pictures_with=pictures_with, n_free=len(free[name][0]))


def measure(detectors: dict, val: ValCrops, patches: list, photos: list, threads: int) -> Measured:
    """Every detector on every picture (alternately), and the val crops split into halves."""
    on_crops, on_patches, on_photos = (run(detectors, p, threads) for p in (val.crops, patches, photos))
    ids = np.array([im["id"] for im in val.images])
    halves = {"tuning": np.flatnonzero(ids % 2 == 0), "held-out": np.flatnonzero(ids % 2 == 1)}
    small = np.array([t[3] < SMALL for t in val.targets])
    return Measured(val, on_crops, on_patches, on_photos, halves, small)


def choose_threshold(measured: Measured) -> tuple[float, dict]:
    """NanoDet's threshold on the tuning half (see the module's docstring), and the SSD's tuning row."""
    ssd_tune = measured.row("ssd", SSD_THRESHOLD, "tuning")
    tune = {t: measured.row("nanodet", t, "tuning") for t in THRESHOLDS}
    fits = [t for t in THRESHOLDS if tune[t]["recall"] >= ssd_tune["recall"]
            and tune[t]["invented"] <= ssd_tune["invented"]]
    return (max(fits) if fits else min(THRESHOLDS)), ssd_tune


def median_ms(measured: Measured, names) -> tuple[dict, dict]:
    """Per detector, the median ms of a call over every picture, and over the val crops alone."""
    ms = {name: 1000 * np.median(measured.on_crops[name][1] + measured.on_patches[name][1]
                                 + measured.on_photos[name][1]) for name in names}
    ms_crop = {name: 1000 * np.median(measured.on_crops[name][1]) for name in names}
    return ms, ms_crop


def print_setup(measured: Measured, patches: list, photos: list, threads: int, detectors: dict) -> None:
    """What was measured: the pictures of each kind, the threads and the detectors' box NMS."""
    halves = measured.halves
    print(f"{len(measured.val.images)} val crops (tuning {len(halves['tuning'])}, held-out {len(halves['held-out'])}), "
          f"{len(patches)} person-free train patches (tuning), {len(photos)} person-free scikit-image photos "
          f"(held out); {threads} onnxruntime threads; box NMS IoU: SSD {detectors['ssd'].nms_threshold}, "
          f"NanoDet {detectors['nanodet'].nms_threshold}")


def print_choice(chosen: float, ssd_tune: dict) -> None:
    """NanoDet's threshold and the SSD's tuning figures it was chosen against."""
    print(f"NanoDet threshold chosen on the tuning half: {chosen} (the highest of {THRESHOLDS} with tuning recall "
          f">= the SSD's at 0.3, {ssd_tune['recall']:.3f}, and no more boxes on the tuning patches, "
          f"{ssd_tune['invented']})")


def print_photo_hits(measured: Measured, detectors: dict, chosen: float) -> None:
    """Which held-out person-free photos each detector puts a box on at its threshold, with the best score."""
    names = [n for n, _ in no_people_photos()]
    for name in detectors:
        t = chosen if name == "nanodet" else SSD_THRESHOLD
        hits = [f"{n} {s[s >= t].max():.2f}" for n, (_, s) in zip(names, measured.on_photos[name][0])
                if (s >= t).any()]
        print(f"held-out person-free photos with a {name} box at {t} (best score): {', '.join(hits) or 'none'}")


def table_rows(measured: Measured, half: str, chosen: float) -> list[tuple[str, dict, str]]:
    """(label, row, detector) of the SSD and of NanoDet at each threshold, on one half."""
    rows = [("SSD-MobileNetV2, 0.3", measured.row("ssd", SSD_THRESHOLD, half), "ssd")]
    rows += [(f"NanoDet-m 416, {t}" + (" (chosen)" if t == chosen else ""), measured.row("nanodet", t, half),
              "nanodet") for t in THRESHOLDS]
    return rows


def print_table(measured: Measured, chosen: float, ms: dict, ms_crop: dict) -> None:
    """The markdown table: every detector and threshold on both halves."""
    head = ("| detector | half | recall IoU>=0.5 | false per crop | recall, person < {s} px tall (n) | "
            "person-free pictures: boxes (pictures with one) | ms per picture: all / crops |")
    print()
    print(head.format(s=SMALL))
    print("|---|---|---|---|---|---|---|")
    for half in ("tuning", "held-out"):
        for label, r, name in table_rows(measured, half, chosen):
            print(f"| {label} | {half} | {r['recall']:.3f} | {r['false_per_crop']:.3f} | {r['small']:.3f} "
                  f"({r['n_small']}) | {r['invented']} ({r['pictures_with']} of {r['n_free']}) | "
                  f"{ms[name]:.1f} / {ms_crop[name]:.1f} |")


def main() -> None:
    """Measure both detectors, choose NanoDet's threshold on the tuning half, print the figures."""
    args = parse_args()
    data = Path(args.data)
    val = load_val_crops(data, args.limit)
    patches = [bgr for _, bgr in person_free_patches(data, args.patches)]
    photos = [bgr for _, bgr in no_people_photos()]
    detectors = load_detectors(args.threads, args.nms)
    warm_up(detectors, val.crops[0])
    measured = measure(detectors, val, patches, photos, args.threads)
    chosen, ssd_tune = choose_threshold(measured)
    ms, ms_crop = median_ms(measured, detectors)

    print_setup(measured, patches, photos, args.threads, detectors)
    print_choice(chosen, ssd_tune)
    print_photo_hits(measured, detectors, chosen)
    print_table(measured, chosen, ms, ms_crop)


if __name__ == "__main__":
    main()
