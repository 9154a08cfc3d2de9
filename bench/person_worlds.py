"""Who is a person, judged end to end in several worlds: the product's pipeline (`Predictor`, the shipped detector,
the person verifier and the person policy) against the labels, with and without the verifier, side by side.

    python bench/person_worlds.py [--model accurate] [--limit N] [--json bench/results/person_worlds.json]
        [--configs verifier "no verifier"] [--worlds ...] [--policy unsure_person=0.5 ...] [--verifier FILE.onnx]

Configs (CONFIGS: a name -> the Predictor's keyword arguments): "verifier" (the defaults), "no verifier",
"ssd+nanodet, verifier" (both shipped detectors merged, their unsure boxes judged by the verifier), "second look,
verifier" (the detector also on square tiles of a wide picture, posecal/detect/tiles.py) and "ssd+nanodet, second
look, verifier". Each photo and nobody world also counts the people reported from unsure boxes (a detector score
below the policy's sure score): the recall the verifier lets in, and the people it invents.

Worlds (none of them but the train crops' patches fitted the verifier's head; the "tuning" ones chose its calibration
and the policy's numbers, the others chose nothing):
- COCO val crops, even image ids (tuning) and odd ids (held out): each crop's labelled person (the crop is cut
  around them) and the others of its photograph; the labelled person found (a reported box of IoU >= 0.5), found
  with a pose of OKS >= 0.5, given a second pose (another reported box of IoU >= 0.5 with them);
- LSPET photos numbered 0 mod 5 (held out; sports: one labelled person a photo): found;
- person-free patches of the train crops (tuning) and of the val crops, and scikit-image's photos without
  people: people invented;
- frames of the five clips with their people and objects labelled by hand (tools/clip_objects.json): people
  found, objects (signs, a tripod, bollards, cones, shelves) reported as a person.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from detector_recall import iou, others_in_crop, person_free_patches  # noqa: E402

from posecal.inference.person_policy import DETECTED  # noqa: E402
from posecal.metrics.oks import oks  # noqa: E402

SHARED = ROOT.parent / "shared/data"
COCO = SHARED / "coco-val2017-crops"
LSPET = SHARED / "lspet"
CLIP_OBJECTS = ROOT / "tools/clip_objects.json"
# a config's name -> the Predictor's keyword arguments ("default" verifier: the shipped one, opened once)
CONFIGS = {"verifier": {"verifier": "default"},
           "no verifier": {"verifier": None},
           "ssd+nanodet, verifier": {"detector": "ssd+nanodet", "verifier": "default"},
           "second look, verifier": {"second_look": True, "verifier": "default"},
           "ssd+nanodet, second look, verifier": {"detector": "ssd+nanodet", "second_look": True,
                                                  "verifier": "default"}}
WORLDS = ("coco_val_tuning_even", "train_person_free_patches", "coco_val_held_out_odd", "lspet_held_out",
          "val_person_free_patches", "photos_without_people", "clip_frames")


def coco_pictures(parity: int, limit: int):
    coco = json.loads((COCO / "annotations/val.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    images = [im for im in coco["images"] if im["id"] % 2 == parity][: limit or None]
    for im in images:
        bgr = cv2.imread(str(COCO / "images" / im["file_name"]))
        if bgr is not None:
            yield im["file_name"], bgr, anns[im["id"]], others_in_crop(anns[im["id"]], by_photo[anns[im["id"]]
                                                                                              ["orig_image_id"]],
                                                                       bgr.shape[1], bgr.shape[0])


def unsure_people(predictor, bgr, people) -> int:
    """How many of the people reported come from boxes the detector was unsure of (the policy's sure score, scaled
    for this picture as the pipeline scales it)."""
    if not people:
        return 0
    pipeline = predictor.pipeline
    origins = [p.box_origin for p in people]
    sure = pipeline.policy.is_sure([p.box_score for p in people], pipeline.sure_factor(bgr, origins))
    return int(sum(o == DETECTED and not s for o, s in zip(origins, sure)))


def photo_figures(predictor, pictures) -> dict:
    found = posed = second = n = reported = unsure = 0
    for _, bgr, ann, _ in pictures:
        people = predictor(bgr).people
        n += 1
        reported += len(people)
        unsure += unsure_people(predictor, bgr, people)
        target = np.array(ann["bbox"], float)
        if not people:
            continue
        boxes = np.array([p.box for p in people]).reshape(-1, 4)
        hit = iou(boxes, target[None])[:, 0] >= 0.5
        found += bool(hit.any())
        second += int(hit.sum() >= 2)
        gt = np.reshape(ann["keypoints"], (17, 3))
        if hit.any():
            best = max(float(oks(people[i].keypoints[None], gt[None, :, :2], gt[None, :, 2], ann["area"])[0])
                       for i in np.flatnonzero(hit))
            posed += best >= 0.5
    return {"persons": n, "found": round(found / n, 4), "found_with_pose_oks_0.5": round(posed / n, 4),
            "second_pose_share": round(second / n, 4), "reported_per_picture": round(reported / n, 3),
            "reported_from_unsure_boxes": unsure}


def lspet_pictures(limit: int):
    """LSPET photos numbered 0 mod 5 (held out everywhere): (picture, the labelled athlete's box), the box around
    the labelled joints grown as the verifier's training grew it."""
    d = json.loads((LSPET / "annotations/lspet.json").read_text())
    anns = {a["image_id"]: a for a in d["annotations"]}
    images = [im for im in d["images"] if int(im["file_name"][2:7]) % 5 == 0][: limit or None]
    for im in images:
        bgr = cv2.imread(str(LSPET / "images" / im["file_name"]))
        ann = anns.get(im["id"])
        if bgr is not None and ann is not None:
            x, y, w, h = ann["bbox"]
            yield bgr, np.array([x - 0.08 * w, y - 0.1 * h, 1.16 * w, 1.2 * h])


def lspet_figures(predictor, limit: int) -> dict:
    found = second = n = unsure = 0
    for bgr, target in lspet_pictures(limit):
        people = predictor(bgr).people
        n += 1
        unsure += unsure_people(predictor, bgr, people)
        if people:
            hit = iou(np.array([p.box for p in people]).reshape(-1, 4), target[None])[:, 0] >= 0.5
            found += bool(hit.any())
            second += int(hit.sum() >= 2)
    return {"persons": n, "found": round(found / max(n, 1), 4), "second_pose_share": round(second / max(n, 1), 4),
            "reported_from_unsure_boxes": unsure}


def nobody_figures(predictor, pictures) -> dict:
    invented, unsure = [], 0
    for _, bgr in pictures:
        people = predictor(bgr).people
        invented.append(len(people))
        unsure += unsure_people(predictor, bgr, people)
    return {"pictures": len(invented), "people_invented": int(sum(invented)),
            "pictures_with_someone": int(sum(v > 0 for v in invented)), "invented_from_unsure_boxes": unsure}


def clip_figures(predictor) -> dict:
    spec = json.loads(CLIP_OBJECTS.read_text())["clips"]
    out = {"persons": 0, "persons_found": 0, "objects": 0, "objects_reported": 0, "reported_objects": [],
           "reported_not_labelled": 0}
    for clip, frames in spec.items():
        cap = cv2.VideoCapture(str(SHARED / "videos" / clip))
        want, i = {int(k): v for k, v in frames.items()}, 0
        while want:
            ok, bgr = cap.read()
            if not ok:
                break
            if i in want:
                labels = want.pop(i)
                people = predictor(bgr).people
                boxes = np.array([p.box for p in people]).reshape(-1, 4)
                lab = np.array([r[:4] for r in labels], float).reshape(-1, 4)
                is_person = np.array([r[4] for r in labels], bool)
                overlap = iou(boxes, lab) if len(boxes) else np.zeros((0, len(lab)))
                out["persons"] += int(is_person.sum())
                out["persons_found"] += int((overlap[:, is_person] >= 0.5).any(0).sum()) if len(boxes) else 0
                out["objects"] += int((~is_person).sum())
                for j in np.flatnonzero(~is_person):
                    if len(boxes) and (overlap[:, j] >= 0.5).any():
                        out["objects_reported"] += 1
                        out["reported_objects"].append(f"{clip}:{i}:{labels[j][5]}")
                if len(boxes):
                    out["reported_not_labelled"] += int((overlap.max(1) < 0.3).sum()) if lab.size else len(boxes)
            i += 1
    out["persons_found_share"] = round(out["persons_found"] / max(out["persons"], 1), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="accurate")
    ap.add_argument("--limit", type=int, default=0, help="pictures per photo world (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=["verifier", "no verifier"], choices=list(CONFIGS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--policy", nargs="*", default=[], help="PersonPolicy overrides, KEY=VALUE (STILL's otherwise)")
    ap.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=WORLDS)
    ap.add_argument("--verifier", default="default", help="the verifier of the configs that have one: default (the "
                    "shipped one) or an .onnx file (one trained by tools/train_person_verifier.py)")
    args = ap.parse_args()
    from posecal.detect.verifier import open_verifier
    from posecal.inference.person_policy import STILL
    from posecal.inference.predictor import Predictor

    patches = person_free_patches(COCO, 200, split="val")
    train_patches = person_free_patches(COCO, 200, split="train")
    from detector_recall import no_people_photos

    photos = no_people_photos()
    results = {}
    shipped = open_verifier(args.verifier, args.threads)
    for name in args.configs:
        t0 = time.time()
        kwargs = dict(CONFIGS[name])
        if kwargs.get("verifier") == "default":
            if shipped is None:
                raise SystemExit("no shipped verifier (posecal/weights/person_verifier.onnx): train it first")
            kwargs["verifier"] = shipped
        policy = replace(STILL, **{k: None if v.lower() == "none" else float(v)
                                    for k, v in (o.split("=", 1) for o in args.policy)})
        predictor = Predictor(args.model, threads=args.threads, policy=policy, **kwargs)
        worlds = {"coco_val_tuning_even": lambda: photo_figures(predictor, coco_pictures(0, args.limit)),
                  "coco_val_held_out_odd": lambda: photo_figures(predictor, coco_pictures(1, args.limit)),
                  "lspet_held_out": lambda: lspet_figures(predictor, args.limit),
                  "train_person_free_patches": lambda: nobody_figures(predictor, train_patches),
                  "val_person_free_patches": lambda: nobody_figures(predictor, patches),
                  "photos_without_people": lambda: nobody_figures(predictor, photos),
                  "clip_frames": lambda: clip_figures(predictor)}
        r = {w: worlds[w]() for w in args.worlds}
        r["seconds"] = round(time.time() - t0, 1)
        r["policy"] = args.policy
        results[name] = r
        print(name, json.dumps(r, indent=1), flush=True)
    if args.json:
        command = "python bench/person_worlds.py " + " ".join(f'"{a}"' if " " in a else a for a in sys.argv[1:])
        Path(args.json).write_text(json.dumps({"model": args.model, "limit": args.limit, "command": command,
                                               "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
