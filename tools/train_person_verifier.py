"""Train the person verifier (posecal/detect/verifier.py) and write posecal/weights/person_verifier.onnx.

    python tools/train_person_verifier.py collect        # boxes -> pooled Lite0 features, cached in runs/
    python tools/train_person_verifier.py collect --sets train_cut_things val_cut_things
    python tools/train_person_verifier.py fit --cut-things [--out posecal/weights/person_verifier.onnx]

Boxes, each a person (IoU >= 0.5 with a labelled person of its photo), not one (IoU < 0.3 with every one, or
made beside or on a part of one) or left out (between):
- COCO crops (../shared/data/coco-val2017-crops, train and val splits): the labelled person's box; a jittered
  copy (IoU >= 0.6, a detector's box); the person cut by a frame (the picture beyond a line through them made
  black, the box what is left: a person); a shifted copy (0.55-0.9 of its size beside it) and a part (the top,
  bottom, left or right 30-45 %: an arm, the legs; the body goes on past the box); a random box where no
  labelled person is; the shipped SSD's best boxes at 0.1 (what detectors take for people, persons and not);
  and, as sets of their own, up to two of a photo's boxes on nobody cut by a frame as the persons are (cut things:
  black beyond a box's edge is no sign of a person);
- LSPET (sports; one labelled person a photo, so no detector boxes: others would be unlabelled people): the
  person's box, a jittered copy, a shifted copy and a part;
- scikit-image's photos without people: the SSD's boxes at 0.1 and random boxes (judged only: things);
- the clips' objects labelled by hand in tools/clip_objects.json (judged only, or fitted on by --fit-clips).
Each box is read as the product reads it, some after the picture was made small (a person 24-100 px tall),
compressed or blurred as video makes it, seeded per photo.

Fitting: the head on the train crops and LSPET photos numbered not 0 mod 5; its calibration (a * logit + b) and
the epoch on the val crops with even image ids; judged on the val crops with odd ids, LSPET photos 0 mod 5, the
person-free photos and the clip objects (AUROC per kind, ECE beside its floor).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))   # the tools' own modules (verifier_export, video_choice)
sys.path.insert(0, str(ROOT / "bench"))
from detector_recall import iou, no_people_photos, others_in_crop  # noqa: E402

from posecal.detect.verifier import box_masks, crop_regions, verifier_crops  # noqa: E402

SHARED = ROOT.parent / "shared/data"
COCO = SHARED / "coco-val2017-crops"
LSPET = SHARED / "lspet"
WORK = ROOT / "runs/person_verifier_visual"
CLIP_OBJECTS = ROOT / "tools/clip_objects.json"
IS_PERSON, NOT_PERSON = 0.5, 0.3
KINDS = ("labelled", "jitter", "cut", "shifted", "part", "empty", "detector", "clip_object", "clip_person", "thing",
         "cut_thing")
MAX_DETECTOR_BOXES = 6


def clipped(b: np.ndarray, w: int, h: int) -> np.ndarray | None:
    x0, y0 = np.clip(b[:2], 0, [w, h])
    x1, y1 = np.clip(b[:2] + b[2:], 0, [w, h])
    return np.array([x0, y0, x1 - x0, y1 - y0]) if x1 - x0 >= 6 and y1 - y0 >= 6 else None


def made_boxes(box: np.ndarray, people: np.ndarray, w: int, h: int, rng: np.random.Generator,
               with_empty: bool = True, with_cut: bool = True) -> list:
    """[(kind, box, cut)] made from a labelled person's box; cut = (axis, side, at) where the picture is blacked
    out beyond a line (the cut kind), else None."""
    x, y, bw, bh = box
    out = [("labelled", box.copy(), None)]
    j = rng.uniform(-0.1, 0.1, 4)
    out.append(("jitter", np.array([x + j[0] * bw, y + j[1] * bh, bw * (1 + j[2]), bh * (1 + j[3])]), None))
    if with_cut and rng.random() < 0.6:
        out.append(("cut", *cut_box(box, rng)))
    shift = rng.uniform(0.55, 0.9) * rng.choice([-1, 1])
    out.append(("shifted", np.array([x + shift * bw, y, bw, bh]) if rng.integers(2) == 0
                else np.array([x, y + shift * bh, bw, bh]), None))
    share = rng.uniform(0.3, 0.45)
    out.append(("part", [np.array([x, y, bw, bh * share]), np.array([x, y + bh * (1 - share), bw, bh * share]),
                         np.array([x, y, bw * share, bh]), np.array([x + bw * (1 - share), y, bw * share, bh])]
                [int(rng.integers(4))], None))
    if with_empty and len(people):
        x0, y0 = people[:, 0].min(), people[:, 1].min()
        x1, y1 = (people[:, 0] + people[:, 2]).max(), (people[:, 1] + people[:, 3]).max()
        sx, sy, sw, sh = max([(0, 0, x0, h), (x1, 0, w - x1, h), (0, 0, w, y0), (0, y1, w, h - y1)],
                             key=lambda s: min(s[2], s[3]))
        if min(sw, sh) >= 24:
            ew, eh = rng.uniform(0.4, 1.0) * sw, rng.uniform(0.4, 1.0) * sh
            out.append(("empty", np.array([sx + rng.uniform(0, sw - ew), sy + rng.uniform(0, sh - eh), ew, eh]),
                        None))
    return [(k, c, cut) for k, b, cut in out if (c := clipped(b, w, h)) is not None]


def cut_box(box: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """(what is left of a box, the cut (axis, at)) when a line through it makes the picture beyond it black: 0.45-0.75
    of the box is kept, the bottom cut twice as often (a frame's lower edge)."""
    x, y, bw, bh = box
    keep = rng.uniform(0.45, 0.75)
    side = int(rng.choice([0, 0, 1, 2]))
    if side == 0:
        return np.array([x, y, bw, bh * keep]), (1, y + bh * keep)
    if side == 1:
        return np.array([x, y, bw * keep, bh]), (0, x + bw * keep)
    return np.array([x + bw * (1 - keep), y, bw * keep, bh]), (2, x + bw * (1 - keep))


def cut_things(boxes, people, w: int, h: int, rng: np.random.Generator, most: int = 2) -> list:
    """[("cut_thing", box, cut)]: up to `most` of a photo's boxes on nobody (empty regions, detector boxes at IoU < 0.3
    with every person), cut as the cut persons are. Why: the cut persons taught the verifier that black beyond a box's
    edge means a person (a box of black padding scored 1.0; a thing at the picture's edge, whose ring the verifier's
    crop fills with black, gains); the same black beside things says it does not."""
    nobody = [b for k, b, cut in boxes if k in ("empty", "detector") and cut is None
              and (not len(people) or iou(b[None], people).max() < NOT_PERSON)]
    out = []
    for i in rng.permutation(len(nobody))[:most]:
        box, cut = cut_box(nobody[i], rng)
        if (c := clipped(box, w, h)) is not None:
            out.append(("cut_thing", c, cut))
    return out


def with_cut(bgr: np.ndarray, cut) -> np.ndarray:
    """The picture blacked out beyond the cut line (what a frame's edge leaves)."""
    axis, at = cut
    out = bgr.copy()
    at = int(round(at))
    if axis == 1:
        out[at:] = 0
    elif axis == 0:
        out[:, at:] = 0
    else:
        out[:, :at] = 0
    return out


def degraded_crop(bgr: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(crop, mask) of one box, sometimes as video shows it: the picture made small (the box 24-100 px tall),
    then JPEG-compressed or blurred."""
    u = rng.random()
    if u < 0.35 and box[3] > 40:
        f = min(1.0, rng.uniform(24, 100) / box[3])
        small = cv2.resize(bgr, (max(1, round(bgr.shape[1] * f)), max(1, round(bgr.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
        bgr, box = small, box * f
    crop = verifier_crops(bgr, box[None])[0]
    v = rng.random()
    if v < 0.25:
        ok, enc = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 50))])
        crop = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    elif v < 0.4:
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2] = 1.0 / k
        if rng.random() < 0.5:
            kern = kern.T
        crop = cv2.filter2D(crop, -1, kern)
    return crop, box_masks(box[None], crop_regions(box[None]))[0]


def coco_items(split: str, detector, rng_seed: int = 0):
    """Yields (photo key, [(kind, box, label, crop, mask)]) for the COCO crops of a split."""
    for key, bgr, boxes, people, rng in coco_photos(split, detector, rng_seed):
        yield key, labelled(bgr, boxes, people, rng)


def coco_photos(split: str, detector, rng_seed: int = 0):
    """Yields (photo key, picture, made boxes [(kind, box, cut)], labelled people, the photo's generator)."""
    coco = json.loads((COCO / f"annotations/{split}.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    for im in coco["images"]:
        ann = anns[im["id"]]
        bgr = cv2.imread(str(COCO / "images" / im["file_name"]))
        if bgr is None:
            continue
        rng = np.random.default_rng([rng_seed, im["id"]])
        h, w = bgr.shape[:2]
        target = np.array(ann["bbox"], float)
        people = np.concatenate([others_in_crop(ann, by_photo[ann["orig_image_id"]], w, h), target[None]])
        boxes = made_boxes(target, people, w, h, rng)
        dboxes, dscores = detector(bgr)
        top = np.argsort(-dscores, kind="stable")[:MAX_DETECTOR_BOXES]
        boxes += [("detector", b, None) for b in dboxes[top]]
        yield im["id"], bgr, boxes, people, rng


def coco_cut_things(split: str, detector, rng_seed: int = 0):
    """Yields (photo key, [(kind, box, label, crop, mask)]) of the cut things (cut_things) of a split's COCO crops."""
    for key, bgr, boxes, people, rng in coco_photos(split, detector, rng_seed):
        h, w = bgr.shape[:2]
        yield key, labelled(bgr, cut_things(boxes, people, w, h, rng), people, rng)


def labelled_boxes(boxes, people) -> list:
    """[(kind, box, label, cut)] of made boxes [(kind, box, cut)]: 1 a person, 0 not one; boxes between left out."""
    out = []
    overlap = iou(np.array([b for _, b, _ in boxes]).reshape(-1, 4), people).max(1) if len(people) else \
        np.zeros(len(boxes))
    for (kind, box, cut), o in zip(boxes, overlap):
        if kind == "cut":
            label = 1
        elif kind in ("shifted", "part"):
            label = 1 if o >= IS_PERSON else 0
        else:
            label = 1 if o >= IS_PERSON else 0 if o < NOT_PERSON else -1
        if label >= 0:
            out.append((kind, box, label, cut))
    return out


def labelled(bgr, boxes, people, rng) -> list:
    """[(kind, box, label, crop, mask)]: the labelled boxes read as the product reads them (some degraded)."""
    return [(kind, box, label, *degraded_crop(with_cut(bgr, cut) if cut is not None else bgr, box, rng))
            for kind, box, label, cut in labelled_boxes(boxes, people)]


def lspet_items(limit: int):
    for key, bgr, boxes, people, rng in lspet_photos(limit):
        yield key, labelled(bgr, boxes, people, rng)


def lspet_photos(limit: int):
    """Yields (photo key, picture, made boxes, the person's box (1, 4), the photo's generator) of LSPET's first
    `limit` photos."""
    d = json.loads((LSPET / "annotations/lspet.json").read_text())
    anns = {a["image_id"]: a for a in d["annotations"]}
    for im in d["images"][:limit]:
        ann = anns.get(im["id"])
        bgr = cv2.imread(str(LSPET / "images" / im["file_name"]))
        if ann is None or bgr is None:
            continue
        rng = np.random.default_rng([7, im["id"]])
        h, w = bgr.shape[:2]
        x, y, bw, bh = ann["bbox"]
        box = clipped(np.array([x - 0.08 * bw, y - 0.1 * bh, 1.16 * bw, 1.2 * bh]), w, h)
        if box is None:
            continue
        boxes = [b for b in made_boxes(box, box[None], w, h, rng, with_empty=False) if b[0] != "cut"]
        yield int(im["file_name"][2:7]), bgr, boxes, box[None], rng


def nopeople_items(detector):
    for n, (name, bgr) in enumerate(no_people_photos()):
        rng = np.random.default_rng([11, n])
        h, w = bgr.shape[:2]
        dboxes, dscores = detector(bgr)
        boxes = [("detector", b, None) for b in dboxes[np.argsort(-dscores, kind="stable")[:12]]]
        for _ in range(6):
            bh = rng.uniform(0.2, 0.9) * h
            bw = bh * rng.uniform(0.3, 0.8)
            if bw < w:
                boxes.append(("empty", np.array([rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]), None))
        yield n, labelled(bgr, boxes, np.zeros((0, 4)), rng)


def clip_items():
    """The hand-labelled boxes of tools/clip_objects.json: {clip: {frame: [[x, y, w, h, is_person, name]]}}."""
    if not CLIP_OBJECTS.is_file():
        return
    spec = json.loads(CLIP_OBJECTS.read_text())
    for clip, frames in spec["clips"].items():
        cap = cv2.VideoCapture(str(SHARED / "videos" / clip))
        want = {int(k): v for k, v in frames.items()}
        i = 0
        while want:
            ok, bgr = cap.read()
            if not ok:
                break
            if i in want:
                items = []
                for x, y, w, h, person, name in want.pop(i):
                    box = np.array([x, y, w, h], float)
                    crop, mask = verifier_crops(bgr, box[None])[0], box_masks(box[None], crop_regions(box[None]))[0]
                    items.append(("clip_person" if person else "clip_object", box, int(person), crop, mask,
                                  f"{clip}:{i}:{name}"))
                yield clip, items
            i += 1


def collect(args) -> None:
    import torch

    from posecal.data.crops import crops_to_batch
    from posecal.detect.detector import load_detector
    from posecal.models.verifier import PersonVerifierNet

    torch.set_num_threads(args.threads)
    net = PersonVerifierNet().eval()
    detector = load_detector("default", 0.1, threads=args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    sources = {"train": lambda: coco_items("train", detector), "val": lambda: coco_items("val", detector),
               "lspet": lambda: lspet_items(args.lspet), "nopeople": lambda: nopeople_items(detector),
               "clips": clip_items, "train_cut_things": lambda: coco_cut_things("train", detector),
               "val_cut_things": lambda: coco_cut_things("val", detector)}
    for name in args.sets:
        path = WORK / f"{name}.npz"
        if path.is_file() and not args.again:
            print(f"{path} exists", flush=True)
            continue
        feats, meta, crops, masks, t0 = [], [], [], [], time.time()

        def flush():
            if crops:
                with torch.no_grad():
                    f = net.features(torch.from_numpy(crops_to_batch(crops)), torch.from_numpy(np.stack(masks)))
                feats.append(f.numpy().astype(np.float16))
                crops.clear()
                masks.clear()

        for n, (key, items) in enumerate(sources[name]()):
            for item in items:
                kind, box, label, crop, mask = item[:5]
                crops.append(crop)
                masks.append(mask)
                meta.append((key, KINDS.index(kind), label, *box, item[5] if len(item) > 5 else ""))
            if len(crops) >= 64:
                flush()
            if n % 200 == 0:
                print(f"{name}: {n} photos, {len(meta)} boxes, {time.time() - t0:.0f} s", flush=True)
        flush()
        np.savez(path, features=np.concatenate(feats), key=np.array([m[0] for m in meta]),
                 kind=np.array([m[1] for m in meta]), label=np.array([m[2] for m in meta]),
                 box=np.array([m[3:7] for m in meta]), name=np.array([m[7] for m in meta]))
        print(f"{name}: {len(meta)} boxes in {time.time() - t0:.0f} s -> {path}", flush=True)


def person_cover(d: dict, split: str) -> np.ndarray:
    """(N,) the largest share of each COCO box that one labelled person of its photograph covers: a detector box
    on no labelled person (< 0.1) is on a thing (or an unlabelled person), not on a part of someone."""
    coco = json.loads((COCO / f"annotations/{split}.json").read_text())
    by_photo = defaultdict(list)
    for a in coco["annotations"]:
        by_photo[a["orig_image_id"]].append(a)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    images = {im["id"]: im for im in coco["images"]}
    out = np.zeros(len(d["key"]))
    for i, (key, box) in enumerate(zip(d["key"], d["box"])):
        a, im = anns[int(key)], images[int(key)]
        people = np.concatenate([others_in_crop(a, by_photo[a["orig_image_id"]], im["width"], im["height"]),
                                 np.array(a["bbox"])[None]])
        lo, hi = np.maximum(box[:2], people[:, :2]), np.minimum(box[:2] + box[2:], people[:, :2] + people[:, 2:])
        out[i] = (np.clip(hi - lo, 0, None).prod(1) / max(box[2] * box[3], 1e-9)).max()
    return out


def load(name: str, with_cut_things: bool = False) -> dict | None:
    """A cached set; with_cut_things: with its cut things (the set `{name}_cut_things`) appended, where cached."""
    path = WORK / f"{name}.npz"
    if not path.is_file():
        return None
    d = dict(np.load(path))
    extra = WORK / f"{name}_cut_things.npz"
    if with_cut_things and extra.is_file():
        e = dict(np.load(extra))
        d = {k: np.concatenate([d[k], e[k]]) for k in d}
    d["features"] = d["features"].astype(np.float32)
    return d


def auroc_of(p, y) -> float:
    from posecal.metrics.calibration import auroc

    return float(auroc(p, y == 1)) if 0 < (y == 1).sum() < len(y) else float("nan")


def report(p: np.ndarray, d: dict, part: np.ndarray, title: str) -> dict:
    """AUROC against every positive of `part` and per negative kind, ECE beside its floor."""
    from posecal.metrics.calibration import binary_ece_floor, ece

    y, kind = d["label"][part], d["kind"][part]
    q = p[part]
    out = {"boxes": int(part.sum()), "persons": int((y == 1).sum())}
    if 0 < (y == 1).sum() < len(y):
        floor, floor90 = binary_ece_floor(q)
        out.update(auroc=round(auroc_of(q, y), 4), ece=round(float(ece(q, y)), 4), floor=round(floor, 4),
                   floor_p90=round(floor90, 4))
    pos = y == 1
    for k, name in enumerate(KINDS):
        neg = (kind == k) & (y == 0)
        if neg.any() and pos.any():
            sel = pos | neg
            out[f"auroc_vs_{name}"] = round(auroc_of(q[sel], y[sel]), 4)
        has = kind == k
        if has.any():
            out[f"mean_p_{name}"] = round(float(q[has].mean()), 3)
    print(title, json.dumps(out), flush=True)
    return out


def fit(args) -> None:
    import torch

    from posecal.models.verifier import PersonVerifierNet

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    # the val crops' cut things are judged whether or not they were fitted on (the same boxes judge both)
    train, val, lspet = load("train", args.cut_things), load("val", True), load("lspet")
    nopeople, clips = load("nopeople"), load("clips")
    lspet_fit = lspet["key"] % 5 != 0
    fx = np.concatenate([train["features"], lspet["features"][lspet_fit]])
    fy = np.concatenate([train["label"], lspet["label"][lspet_fit]]).astype(np.float32)
    if args.fit_clips and clips is not None:
        fx, fy = np.concatenate([fx, clips["features"]]), np.concatenate([fy, clips["label"].astype(np.float32)])
    tune = (val["key"] % 2 == 0) & (args.cut_things | (val["kind"] != KINDS.index("cut_thing")))
    vx, vy = torch.from_numpy(val["features"][tune]), val["label"][tune]
    head, best = train_head(fx, fy, vx, vy, args)
    with torch.no_grad():
        logit = head.logit(vx)
    a = torch.zeros(2, requires_grad=True)
    lbfgs = torch.optim.LBFGS([a], max_iter=200)
    t = torch.from_numpy(vy.astype(np.float32))

    def closure():
        lbfgs.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits((1 + a[0]) * logit + a[1], t)
        loss.backward()
        return loss

    lbfgs.step(closure)
    head.calibration.copy_(torch.tensor([1 + a[0].item(), a[1].item()]))
    print(f"best epoch {best}; calibration a={head.calibration[0]:.3f} b={head.calibration[1]:.3f}")

    def probs(d):
        with torch.no_grad():
            return head(torch.from_numpy(d["features"])).numpy().astype(np.float64)

    results = {"fit": {"boxes": len(fy), "persons": int(fy.sum()), "best_epoch": best}}
    pv = probs(val)
    things = (val["kind"] == KINDS.index("detector")) & (val["label"] == 0) & (person_cover(val, "val") < 0.1)
    val["kind"] = np.where(things, KINDS.index("thing"), val["kind"])
    results["val_tuning"] = report(pv, val, tune, "val crops, even ids (tuning):")
    results["val_held_out"] = report(pv, val, val["key"] % 2 == 1, "val crops, odd ids (held out):")
    pl = probs(lspet)
    results["lspet_held_out"] = report(pl, lspet, ~lspet_fit, "LSPET photos 0 mod 5 (held out):")
    if nopeople is not None:
        pn = probs(nopeople)
        results["no_people_photos"] = {"boxes": len(pn), "mean_p": round(float(pn.mean()), 3),
                                       "over_0.5": int((pn >= 0.5).sum()), "max_p": round(float(pn.max()), 3)}
        print("photos without people:", json.dumps(results["no_people_photos"]))
    if clips is not None:
        pc = probs(clips)
        results["clips"] = [{"name": str(n), "is_person": int(lab), "p": round(float(q), 3)}
                            for n, lab, q in zip(clips["name"], clips["label"], pc)]
        results["clips_auroc"] = round(auroc_of(pc, clips["label"]), 4)
        named = {k: [r["p"] for r in results["clips"] if r["name"].endswith(k)]
                 for k in ("sign post", "tripod", "bollard")}
        print("clip boxes: AUROC", results["clips_auroc"], "persons", int(clips["label"].sum()), "objects",
              int((clips["label"] == 0).sum()), "named objects:", named, flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "report.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.out:
        from verifier_export import export_verifier

        net = PersonVerifierNet()
        net.head.load_state_dict(head.state_dict())
        info = {"trained_by": "tools/train_person_verifier.py", "fit_boxes": len(fy),
                "judged": {k: results[k] for k in ("val_held_out", "lspet_held_out", "clips_auroc") if k in results}}
        size = export_verifier(net.eval(), Path(args.out), info)
        print(f"wrote {args.out} ({size / 1e6:.1f} MB)")


def train_head(fx: np.ndarray, fy: np.ndarray, vx, vy: np.ndarray, args):
    """(the head at its best epoch by the tuning loss, that epoch) fitted on features fx, labels fy."""
    import torch

    from posecal.models.verifier import VerifierHead

    torch.manual_seed(0)
    head = VerifierHead()
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-2)
    x, y = torch.from_numpy(fx), torch.from_numpy(fy.astype(np.float32))
    ty = torch.from_numpy(vy.astype(np.float32))
    best = (np.inf, None, 0)
    for epoch in range(args.epochs):
        head.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            idx = perm[i:i + 256]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head.logit(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            vl = torch.nn.functional.binary_cross_entropy_with_logits(head.logit(vx), ty).item()
        if vl < best[0]:
            best = (vl, {k: v.clone() for k, v in head.state_dict().items()}, epoch)
    head.load_state_dict(best[1])
    return head.eval(), best[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("collect", "fit"))
    ap.add_argument("--sets", nargs="+", default=["clips", "nopeople", "val", "lspet", "train"])
    ap.add_argument("--lspet", type=int, default=3000, help="LSPET photos read (the first N)")
    ap.add_argument("--again", action="store_true", help="collect a set again although it is cached")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--fit-clips", action="store_true", help="fit on the clip objects too (then not judged)")
    ap.add_argument("--cut-things", action="store_true",
                    help="with the cut things (collect --sets train_cut_things val_cut_things first)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--input-hw", type=int, nargs=2, default=None, help="try another input size (a study)")
    ap.add_argument("--context", type=float, default=None, help="try another context factor (a study)")
    ap.add_argument("--work", default=None, help="cache folder (default runs/person_verifier_visual)")
    args = ap.parse_args()
    global WORK
    if args.work:
        WORK = Path(args.work)
    if args.input_hw or args.context:
        import posecal.detect.verifier as v

        v.INPUT_HW = tuple(args.input_hw or v.INPUT_HW)
        v.MASK_HW = (v.INPUT_HW[0] // v.STRIDE, v.INPUT_HW[1] // v.STRIDE)
        v.CONTEXT = args.context or v.CONTEXT
    collect(args) if args.stage == "collect" else fit(args)


if __name__ == "__main__":
    main()
