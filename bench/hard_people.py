"""Hard people posed right given the labelled box, and where wrong keypoints land (issue 62 items 1 and 3).

    python bench/hard_people.py [--model accurate] [--flip | --no-flip] [--threads 1] [--limit N]
        [--json bench/results/hard_people_<model>.json] [--cache F.npz] [--sheet 50] [--sheet-dir /tmp]

The val crops (822 persons, shared/data/coco-val2017-crops) through the shipped graph with each person's labelled
box, as `posecal eval` runs them (onnxruntime, flip test by default, the model's own decode and calibration).
A person is "posed right" when their OKS (COCO's, with the crop's `area`) is >= 0.5. Shares with their binomial
standard error sqrt(p (1 - p) / n) (people of one photograph are not independent: the SEs are a floor), overall
and by:
- crowding: the largest IoU of the person's box with another labelled person's box of the same photograph
  (`orig_bbox`, `orig_image_id`): < 0.1 / >= 0.1. Only labelled persons count (COCO people without keypoints are
  not in the data), so crowding is undercounted;
- size, in the photograph's pixels (crop area / s^2, box height from `orig_bbox`): sqrt(area) < 48 / >= 48, and
  box height < 64 / >= 64;
- labelled keypoints: 1-9 / >= 10;
- cut by the frame: the box within FRAME_TOLERANCE px (photograph pixels) of an edge of the photograph. The
  photographs' sizes are not in the data: left and top edges are x, y = 0; the right and bottom ones are read
  from the black border `cv2.warpAffine` left where a crop leaves the photograph (photo_sizes: the median over
  the photograph's crops whose border shows it; checked on the known left and top edges to within about a
  pixel). Cut: the box within FRAME_TOLERANCE (3) px of an edge, or within FRAME_NEAR (12) px of one while at
  least one keypoint is not labelled (v = 0) (the boxes of people cut at the bottom often stop some pixels short
  of it); the row "box_touches_edge" is the first part alone.

Joint confusions: a labelled keypoint is wrong when its OPKS (COCO's per-keypoint KS, same area) is < 0.5. Where
did a wrong prediction land? Within the OKS tolerance (KS >= 0.5, the candidate joint's own sigma and person's
area) of another labelled joint of the same person ("own joint": the pair predicted joint -> the joint it sits
on; a left/right swap when that is its mirror), of a labelled joint of another labelled person of the photograph
mapped into the crop (posecal.data.neighbours), or elsewhere; the nearest candidate by KS wins. Split by the wrong
keypoint's flag: occluded (v = 1) or visible (v = 2), over all people and over the people posed wrong.

End to end (the detector path on val photos) is not rebuilt here: its latest figure is read from
bench/results/person_worlds.json (found with a pose of OKS >= 0.5).

--sheet N: the N people of lowest OKS drawn on contact sheets of 10 (crop, the given box yellow, labelled skeleton
green with occluded joints hollow, predicted red with left joints filled and right ones rings, the neighbours'
labelled joints as small blue dots) in --sheet-dir/hard_people_sheet*.png, listed in hard_people_worst.json.
--cache: the predicted keypoints saved to (or, when the file is there for this model and flip, read from) an
.npz, so a second look at the figures does not pose everyone again.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from detector_recall import iou  # noqa: E402

from posecal.data.neighbours import by_photo, neighbours_in_crop  # noqa: E402
from posecal.metrics.oks import opks  # noqa: E402
from posecal.skeleton import COCO_KEYPOINTS, COCO_LIMBS, flip_permutation  # noqa: E402

DATA = ROOT.parent / "shared/data/coco-val2017-crops"
RIGHT = 0.5            # OKS (a person) or OPKS (a keypoint) at or above: right
CROWD_IOU = 0.1
SMALL_SQRT_AREA = 48.0
SHORT_HEIGHT = 64.0
FEW_KEYPOINTS = 10     # 1 .. FEW_KEYPOINTS - 1 labelled: half hidden
FRAME_TOLERANCE = 3.0  # photograph pixels: a box this near an edge touches it
FRAME_NEAR = 12.0      # ... and this near, cut when a keypoint is unlabelled (COCO boxes of people cut at the
                       # bottom often stop 4-10 px short of it: the segmentation polygons do)
BLEED = 0.35           # crop px: the photograph's content runs this far into the black border (JPEG; measured
                       # on the known left and top edges: median 0.35-0.39 px)
BLACK = 20             # a crop column / row whose 98th percentile (max over channels) is under this is border
MIRROR = flip_permutation()
FACE = set(range(5))


def share(mask: np.ndarray, right: np.ndarray) -> dict:
    n = int(mask.sum())
    p = float(right[mask].mean()) if n else float("nan")
    return {"n": n, "share": round(p, 4), "se": round(float(np.sqrt(p * (1 - p) / n)) if n else float("nan"), 4)}


# ---------------------------------------------------------------- the photograph's frame

def border_edge(grey: np.ndarray, axis: int) -> float | None:
    """Crop coordinate (pixel-centre convention) of the photograph's right (axis 0: columns) or bottom (axis 1:
    rows) edge when the crop shows a black border there (its last 3 lines black), else None."""
    black = np.percentile(grey, 98, axis=axis) < BLACK
    if not black[-3:].all():
        return None
    if black.all():
        return None
    last = len(black) - 1 - int(np.argmax(~black[::-1]))
    return last + 0.5 - BLEED


def photo_sizes(annotations: list[dict], crops: dict[int, np.ndarray]) -> dict[int, tuple[float | None, float | None]]:
    """orig_image_id -> (width, height) of the photograph as the crops' borders show them; None for a side no crop
    of the photograph reaches (then nobody's box touches it). `crops`: annotation id -> grey crop (max over
    channels). An estimate left of / above a labelled box of the photograph (a dark region read as border) is
    dropped."""
    est: dict[int, tuple[list, list]] = {}
    reach: dict[int, np.ndarray] = {}
    for a in annotations:
        (s, _, tx), (_, _, ty) = a["crop_transform"]
        x, y, w, h = a["orig_bbox"]
        p = a["orig_image_id"]
        reach[p] = np.maximum(reach.get(p, np.zeros(2)), [x + w, y + h])
        e = est.setdefault(p, ([], []))
        for i, t in enumerate((tx, ty)):
            edge = border_edge(crops[a["id"]], i)
            if edge is not None:
                e[i].append((edge - t) / s + 0.5)
    out = {}
    for p, (ws, hs) in est.items():
        side = []
        for i, v in enumerate((ws, hs)):
            v = [x for x in v if x >= reach[p][i] - 2]
            side.append(float(np.median(v)) if v else None)
        out[p] = tuple(side)
    return out


def cut_by_frame(orig_bbox, size: tuple[float | None, float | None], tol: float = FRAME_TOLERANCE) -> bool:
    x, y, w, h = orig_bbox
    wd, ht = size
    return bool(x <= tol or y <= tol or (wd is not None and x + w >= wd - tol)
                or (ht is not None and y + h >= ht - tol))


# ---------------------------------------------------------------- where wrong keypoints land

def ks_to(p: np.ndarray, joints: np.ndarray, area: float) -> np.ndarray:
    """KS of one point p (2,) against each of K joints (K, 2), each with its own sigma."""
    return opks(np.broadcast_to(p, joints.shape), joints, area)


def landing(pred: np.ndarray, gt: np.ndarray, area: float, neighbours: np.ndarray, n_areas: np.ndarray) -> list:
    """For each labelled keypoint j of one person whose OPKS < RIGHT: (j, v, kind, target) with kind "own"
    (target: the joint of the same person it sits on), "neighbour" (target: (neighbour index, joint)) or
    "elsewhere" (None). pred (K, 2), gt (K, 3), neighbours (N, K, 3) with OKS areas n_areas (N,)."""
    ks = opks(pred, gt[:, :2], area)
    labelled = gt[:, 2] > 0
    out = []
    for j in np.flatnonzero(labelled & (ks < RIGHT)):
        own = ks_to(pred[j], gt[:, :2], area)
        own[~labelled] = 0
        own[j] = 0
        best = ("own", int(np.argmax(own)), float(own.max()))
        for m, (nk, na) in enumerate(zip(neighbours, n_areas)):
            k = ks_to(pred[j], nk[:, :2], na)
            k[nk[:, 2] <= 0] = 0
            if k.max() > best[2]:
                best = ("neighbour", (m, int(np.argmax(k))), float(k.max()))
        kind, target, score = best if best[2] >= RIGHT else ("elsewhere", None, 0.0)
        out.append((int(j), int(gt[j, 2]), kind, target))
    return out


LINKED = {frozenset(l) for l in COCO_LIMBS}


def pair_kind(j: int, i: int) -> str:
    """A predicted joint j sitting on the same person's joint i: "left/right swap" (i is j's mirror), "face part"
    (both of the face), "along the limb" (i and j joined by a bone of the skeleton: wrist on elbow, knee on hip),
    "across, along the limb" (i joined to j's mirror: left knee on right hip) or "other"."""
    if MIRROR[j] == i:
        return "left/right swap"
    if j in FACE and i in FACE:
        return "face part"
    if frozenset((j, i)) in LINKED:
        return "along the limb"
    if frozenset((int(MIRROR[j]), i)) in LINKED:
        return "across, along the limb"
    return "other"


def confusion_table(rows: list[tuple]) -> dict:
    """rows: (j, v, kind, target, person_right) for every wrong keypoint; figures by visibility and joint pairs."""
    def part(sel):
        n = len(sel)
        c = Counter(r[2] for r in sel)
        return {"wrong": n, **{k: c.get(k, 0) for k in ("own", "neighbour", "elsewhere")},
                **{f"{k}_share": round(c.get(k, 0) / n, 4) if n else None for k in ("own", "neighbour", "elsewhere")}}
    out = {"all": part(rows), "occluded_v1": part([r for r in rows if r[1] == 1]),
           "visible_v2": part([r for r in rows if r[1] == 2])}
    own = [r for r in rows if r[2] == "own"]
    kinds = Counter(pair_kind(r[0], r[3]) for r in own)
    out["own_by_kind"] = dict(kinds.most_common())
    pairs = Counter((COCO_KEYPOINTS[r[0]], COCO_KEYPOINTS[r[3]]) for r in own)
    out["own_pairs"] = [{"predicted": a, "sits_on": b, "kind": pair_kind(COCO_KEYPOINTS.index(a),
                                                                        COCO_KEYPOINTS.index(b)), "n": n}
                        for (a, b), n in pairs.most_common()]
    nb = [r for r in rows if r[2] == "neighbour"]
    out["neighbour_same_joint"] = int(sum(r[0] == r[3][1] for r in nb))
    out["neighbour_mirror_joint"] = int(sum(MIRROR[r[0]] == r[3][1] for r in nb))
    return out


# ---------------------------------------------------------------- posing

def pose(model: str, flip: bool, threads: int, limit: int, cache: Path | None) -> tuple[dict, float]:
    """ann id -> predicted keypoints (K, 2) in crop pixels, and seconds spent."""
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if str(z["model"]) == model and bool(z["flip"]) == flip and (not limit or len(z["ids"]) >= limit):
            return {int(i): k for i, k in zip(z["ids"], z["keypoints"])}, 0.0
    from posecal.calibration.quality import calibration_from_meta
    from posecal.data.coco import load_coco_persons
    from posecal.inference.estimator import predict_records
    from posecal.inference.opener import open_model

    records = load_coco_persons(DATA / "annotations/val.json", DATA / "images")[: limit or None]
    t = time.time()
    opened = open_model(None if model == "default" else model, "onnx", flip, threads)
    cal = calibration_from_meta(opened.meta, model)
    pred = predict_records(opened.runner, records, opened.config.input_wh, flip=opened.flip, progress=False,
                           calibration=cal, threads=threads)
    seconds = time.time() - t
    out = {r.ann_id: k for r, k in zip(pred.records, pred.keypoints)}
    if cache is not None:
        np.savez(cache, ids=np.array(list(out)), keypoints=np.array(list(out.values())), model=model, flip=flip)
    return out, seconds


# ---------------------------------------------------------------- contact sheet

TILE = (240, 320)


def tile(bgr: np.ndarray, box, gt: np.ndarray, pred: np.ndarray, neighbours: np.ndarray, label: str) -> np.ndarray:
    h, w = bgr.shape[:2]
    f = min(TILE[0] / w, TILE[1] / h)
    img = np.zeros((TILE[1], TILE[0], 3), np.uint8)
    small = cv2.resize(bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    img[:small.shape[0], :small.shape[1]] = small

    def pt(p):
        return int(round((p[0] + 0.5) * f - 0.5)), int(round((p[1] + 0.5) * f - 0.5))

    x, y, bw, bh = box
    cv2.rectangle(img, pt((x - 0.5, y - 0.5)), pt((x + bw - 0.5, y + bh - 0.5)), (0, 220, 220), 1)
    for nk in neighbours:
        for p in nk[nk[:, 2] > 0]:
            cv2.circle(img, pt(p), 2, (255, 128, 0), -1, cv2.LINE_AA)
    lab = gt[:, 2] > 0
    for a, b in COCO_LIMBS:
        if lab[a] and lab[b]:
            cv2.line(img, pt(gt[a]), pt(gt[b]), (0, 200, 0), 2, cv2.LINE_AA)
        cv2.line(img, pt(pred[a]), pt(pred[b]), (0, 0, 255), 1, cv2.LINE_AA)
    for k in np.flatnonzero(lab):
        cv2.circle(img, pt(gt[k]), 3, (0, 230, 0), -1 if gt[k, 2] == 2 else 1, cv2.LINE_AA)
    for k in range(len(pred)):   # left joints a filled dot, right joints a ring: swaps show
        cv2.circle(img, pt(pred[k]), 2, (0, 0, 255), -1 if k % 2 == 1 or k == 0 else 1, cv2.LINE_AA)
    cv2.rectangle(img, (0, TILE[1] - 16), (TILE[0], TILE[1]), (0, 0, 0), -1)
    cv2.putText(img, label, (3, TILE[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def contact_sheets(items: list[tuple], out_dir: Path, per_sheet: int = 10, cols: int = 5) -> list[Path]:
    paths = []
    for s in range(0, len(items), per_sheet):
        tiles = [tile(*it) for it in items[s:s + per_sheet]]
        while len(tiles) % cols:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.concatenate(tiles[r:r + cols], 1) for r in range(0, len(tiles), cols)]
        p = out_dir / f"hard_people_sheet{s // per_sheet + 1}.png"
        cv2.imwrite(str(p), np.concatenate(rows, 0))
        paths.append(p)
    return paths


# ---------------------------------------------------------------- main

def end_to_end() -> dict | None:
    f = ROOT / "bench/results/person_worlds.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    r = d["results"]["verifier"]
    worlds = {w: r[w] for w in ("coco_val_tuning_even", "coco_val_held_out_odd") if w in r}
    n = sum(w["persons"] for w in worlds.values())
    posed = sum(w["persons"] * w["found_with_pose_oks_0.5"] for w in worlds.values())
    return {"source": "bench/results/person_worlds.json (config \"verifier\", the defaults)",
            "command": d.get("command"), "note": d.get("note"),
            "found_with_pose_oks_0.5": {w: v["found_with_pose_oks_0.5"] for w, v in worlds.items()},
            "found": {w: v["found"] for w, v in worlds.items()},
            "pooled": {"n": n, "share": round(posed / n, 4), "se": round(float(np.sqrt(posed / n * (1 - posed / n)
                                                                                          / n)), 4)}}


def parse_args() -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="accurate", help="a shipped model name, 'default' or an .onnx file")
    ap.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="flip test (default on)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N val persons only (0: all)")
    ap.add_argument("--json", type=Path, help="default bench/results/hard_people_<model>[_noflip].json")
    ap.add_argument("--cache", type=Path, help="predicted keypoints .npz (written, or read when it matches)")
    ap.add_argument("--sheet", type=int, default=50, help="contact sheets of the N worst people (0: none)")
    ap.add_argument("--sheet-dir", type=Path, default=Path("/tmp"))
    return ap.parse_args()


def read_crops(coco: dict, images: dict, anns: list[dict]) -> dict[int, np.ndarray]:
    """ann id -> BGR crop, for every crop of the photographs the posed people come from: the photograph's edges
    are read from all of them, not only from the posed people's."""
    posed_photos = {b["orig_image_id"] for b in anns}
    return {a["id"]: cv2.imread(str(DATA / "images" / images[a["image_id"]]["file_name"])) for a in
            coco["annotations"] if a["orig_image_id"] in posed_photos}


def crop_photo_sizes(coco: dict, crops: dict[int, np.ndarray]) -> dict[int, tuple[float | None, float | None]]:
    """photo_sizes over the annotations whose crops were read (grey: the max over channels)."""
    return photo_sizes([a for a in coco["annotations"] if a["id"] in crops],
                       {i: c.max(2) for i, c in crops.items()})


class PersonMeasures:
    """What each posed person is grouped by (arrays, one entry a person, in the order of the annotations), where
    each of their wrong keypoints landed, and what their contact-sheet tile is drawn from."""

    def __init__(self, n: int):
        self.oks = np.zeros(n)
        self.crowd = np.zeros(n)       # the largest IoU with another labelled person's box of the photograph
        self.sqrt_area = np.zeros(n)   # photograph pixels
        self.height = np.zeros(n)      # box height, photograph pixels
        self.keypoints = np.zeros(n)   # labelled keypoints
        self.cut = np.zeros(n)         # 1: cut by the photograph's frame
        self.touch = np.zeros(n)       # 1: the box touches the photograph's edge
        self.missing = np.zeros(n)     # 1: some keypoint is not labelled
        self.landings: list[tuple] = []   # (j, v, kind, target, person posed right), per wrong keypoint
        self.people: list[tuple] = []     # (annotation, gt (K, 3), pred (K, 2), neighbours (N, K, 3))


def crowding(a: dict, photo_people: list[dict]) -> float:
    """The largest IoU of the person's photograph box with another labelled person's of the same photograph."""
    others = [o for o in photo_people if o["id"] != a["id"]]
    return iou(np.array([a["orig_bbox"]]), np.array([o["orig_bbox"] for o in others])).max() if others else 0.0


def sqrt_photo_area(a: dict) -> float:
    """sqrt of the person's area in the photograph's pixels: the crop's area over the crop's scale squared."""
    s2 = abs(np.linalg.det(np.asarray(a["crop_transform"])[:, :2]))
    return np.sqrt(a["area"] / s2)


def measure_person(m: PersonMeasures, i: int, a: dict, pred: np.ndarray, photos: dict, sizes: dict) -> None:
    """Fill person i's entries of `m` (a: their annotation, pred: their predicted keypoints) and add where their
    wrong keypoints landed."""
    gt = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
    lab = gt[:, 2] > 0
    photo_people = photos[a["orig_image_id"]]
    size = sizes[a["orig_image_id"]]
    m.oks[i] = opks(pred, gt[:, :2], a["area"])[lab].mean()
    m.crowd[i] = crowding(a, photo_people)
    m.sqrt_area[i] = sqrt_photo_area(a)
    m.height[i] = a["orig_bbox"][3]
    m.keypoints[i] = lab.sum()
    m.missing[i] = (~lab).any()
    m.touch[i] = cut_by_frame(a["orig_bbox"], size)
    m.cut[i] = m.touch[i] or (m.missing[i] and cut_by_frame(a["orig_bbox"], size, FRAME_NEAR))
    nbrs, n_areas = neighbours_in_crop(a, photo_people)
    for j, v, kind, target in landing(pred, gt, a["area"], nbrs, n_areas):
        m.landings.append((j, v, kind, target, m.oks[i] >= RIGHT))
    m.people.append((a, gt, pred, nbrs))


def measure_people(anns: list[dict], preds: dict, photos: dict, sizes: dict) -> PersonMeasures:
    """PersonMeasures of the posed people, in the order of `anns`."""
    m = PersonMeasures(len(anns))
    for i, a in enumerate(anns):
        measure_person(m, i, a, preds[a["id"]], photos, sizes)
    return m


def groups(m: PersonMeasures) -> dict[str, np.ndarray]:
    """The people's groups, by name: boolean masks."""
    return {
        "all": np.ones(len(m.oks), bool),
        "crowd_iou_lt_0.1": m.crowd < CROWD_IOU, "crowd_iou_ge_0.1": m.crowd >= CROWD_IOU,
        "sqrt_area_lt_48": m.sqrt_area < SMALL_SQRT_AREA, "sqrt_area_ge_48": m.sqrt_area >= SMALL_SQRT_AREA,
        "height_lt_64": m.height < SHORT_HEIGHT, "height_ge_64": m.height >= SHORT_HEIGHT,
        "keypoints_1_9": m.keypoints < FEW_KEYPOINTS, "keypoints_ge_10": m.keypoints >= FEW_KEYPOINTS,
        "cut_by_frame": m.cut > 0, "not_cut": m.cut == 0,
        "box_touches_edge": m.touch > 0,
    }


def posed_right(m: PersonMeasures) -> dict:
    """Each group's share of people posed right (OKS >= RIGHT), with its count and standard error."""
    right = m.oks >= RIGHT
    return {k: share(mask, right) for k, mask in groups(m).items()}


def keypoints_wrong_by_flag(m: PersonMeasures) -> dict:
    """Labelled keypoints by flag (occluded v1, visible v2): how many, and the share wrong (OPKS < RIGHT)."""
    gts = np.stack([p[1] for p in m.people])
    lab = gts[..., 2]
    allks = np.stack([opks(p[2], p[1][:, :2], p[0]["area"]) for p in m.people])
    return {f"v{v}": {"labelled": int((lab == v).sum()),
                      "wrong_share": round(float((allks[lab == v] < RIGHT).mean()), 4)} for v in (1, 2)}


def confusions(m: PersonMeasures) -> dict:
    """Where wrong keypoints land: over all people and over the people posed wrong."""
    return {"all_people": confusion_table(m.landings),
            "people_posed_wrong": confusion_table([r for r in m.landings if not r[4]])}


def definitions() -> dict:
    """The words of the figures, with the thresholds they stand for."""
    return {"right": f"OKS >= {RIGHT}", "crowd": f"max IoU with another labelled person's box >= {CROWD_IOU}",
            "small": f"sqrt(area) < {SMALL_SQRT_AREA} photo px",
            "short": f"box height < {SHORT_HEIGHT} photo px",
            "half_hidden": f"1..{FEW_KEYPOINTS - 1} labelled keypoints",
            "cut": f"box within {FRAME_TOLERANCE} photo px of the photo's edge, or within "
                   f"{FRAME_NEAR} px with a keypoint unlabelled (right/bottom edges read from the "
                   "crops' black borders)",
            "wrong_keypoint": f"labelled, OPKS < {RIGHT}",
            "landing": f"KS >= {RIGHT} to the candidate joint (its own sigma, its person's area)"}


def photo_sides_found(sizes: dict) -> dict:
    """On how many photographs the right (width) and bottom (height) edges were read."""
    return {"width": sum(s[0] is not None for s in sizes.values()),
            "height": sum(s[1] is not None for s in sizes.values()), "photos": len(sizes)}


def figures(args: argparse.Namespace, m: PersonMeasures, anns: list[dict], sizes: dict, seconds: float) -> dict:
    """The bench's result (its JSON file): the run, the definitions, and every figure."""
    right, kp_wrong, confusion = posed_right(m), keypoints_wrong_by_flag(m), confusions(m)
    sides = photo_sides_found(sizes)
    return {"model": args.model, "flip": args.flip, "persons": len(anns),
            "photos": len({a["orig_image_id"] for a in anns}),
            "command": "python " + " ".join(sys.argv), "seconds_posing": round(seconds, 1),
            "definitions": definitions(), "photo_sides_found": sides,
            "posed_right": right, "mean_oks": round(float(m.oks.mean()), 4),
            "keypoints_wrong_by_flag": kp_wrong, "confusion": confusion, "end_to_end": end_to_end()}


def write_result(args: argparse.Namespace, result: dict) -> None:
    """The result as JSON: at --json, else bench/results/hard_people_<model>[_noflip].json; a --limit run without
    --json writes nothing (its figures are not the bench's)."""
    out = args.json or ROOT / f"bench/results/hard_people_{Path(args.model).stem}{'' if args.flip else '_noflip'}.json"
    if not args.limit or args.json:
        out.write_text(json.dumps(result, indent=1) + "\n")


def worst_people(m: PersonMeasures, n: int) -> np.ndarray:
    """Indices of the n people of lowest OKS, lowest first."""
    return np.argsort(m.oks)[:n]


def sheet_items(m: PersonMeasures, worst: np.ndarray, crops: dict) -> list[tuple]:
    """The tiles' arguments of the worst people, each labelled with its rank, OKS, keypoints, crowding and cut."""
    items = []
    for i in worst:
        a, gt, pred, nbrs = m.people[i]
        label = f"#{len(items)} oks {m.oks[i]:.2f} kp {int(m.keypoints[i])} iou {m.crowd[i]:.2f}" \
                f"{' cut' if m.cut[i] else ''}"
        items.append((crops[a["id"]], a["bbox"], gt, pred, nbrs, label))
    return items


def worst_list(m: PersonMeasures, worst: np.ndarray, anns: list[dict], images: dict) -> list[dict]:
    """The worst people as hard_people_worst.json lists them: rank, figures and crop file."""
    return [{"rank": r, "index": int(i), "ann_id": anns[i]["id"], "oks": round(float(m.oks[i]), 3),
             "keypoints": int(m.keypoints[i]), "crowd_iou": round(float(m.crowd[i]), 2), "cut": bool(m.cut[i]),
             "file": images[anns[i]["image_id"]]["file_name"]} for r, i in enumerate(worst)]


def draw_worst(args: argparse.Namespace, m: PersonMeasures, crops: dict, anns: list[dict], images: dict) -> None:
    """The --sheet worst people on contact sheets in --sheet-dir (printed), listed in hard_people_worst.json."""
    worst = worst_people(m, args.sheet)
    for p in contact_sheets(sheet_items(m, worst, crops), args.sheet_dir):
        print("sheet:", p)
    (args.sheet_dir / "hard_people_worst.json").write_text(json.dumps(worst_list(m, worst, anns, images), indent=1))


def main() -> None:
    """Pose the val persons, measure them, write and print the figures, and draw the worst people."""
    args = parse_args()
    coco = json.loads((DATA / "annotations/val.json").read_text())
    images = {im["id"]: im for im in coco["images"]}
    photos = by_photo(coco["annotations"])
    preds, seconds = pose(args.model, args.flip, args.threads, args.limit, args.cache)
    anns = [a for a in coco["annotations"] if a["id"] in preds]
    crops = read_crops(coco, images, anns)
    sizes = crop_photo_sizes(coco, crops)
    measures = measure_people(anns, preds, photos, sizes)
    result = figures(args, measures, anns, sizes, seconds)
    write_result(args, result)
    report(result)
    if args.sheet:
        draw_worst(args, measures, crops, anns, images)


def report(r: dict) -> None:
    print(f"{r['model']} (flip {'on' if r['flip'] else 'off'}): {r['persons']} val persons on {r['photos']} photos, "
          f"labelled boxes; posed right = OKS >= {RIGHT}; mean OKS {r['mean_oks']:.3f}")
    print(f"{'group':30s} {'n':>5s} {'right':>7s} {'SE':>7s}")
    for k, v in r["posed_right"].items():
        print(f"{k:30s} {v['n']:5d} {v['share']:7.3f} {v['se']:7.3f}")
    sf = r["photo_sides_found"]
    print(f"(photo right / bottom edge read on {sf['width']} / {sf['height']} of {sf['photos']} photos; the others: "
          "no crop reaches it)")
    for v, d in r["keypoints_wrong_by_flag"].items():
        print(f"labelled keypoints {v}: {d['labelled']}, wrong {d['wrong_share']:.3f}")
    for who, c in r["confusion"].items():
        print(f"\nwrong keypoints (OPKS < {RIGHT}), {who}: where they land")
        print(f"{'flag':14s} {'wrong':>6s} {'own joint':>10s} {'neighbour':>10s} {'elsewhere':>10s}")
        for k in ("all", "occluded_v1", "visible_v2"):
            d = c[k]
            print(f"{k:14s} {d['wrong']:6d} " + " ".join(
                f"{d[x]:4d} {d[x + '_share'] or 0:5.3f}" for x in ("own", "neighbour", "elsewhere")))
        print(f"own joint by kind: {c['own_by_kind']}; on a neighbour's same joint {c['neighbour_same_joint']}, "
              f"its mirror joint {c['neighbour_mirror_joint']}")
    print("\ntop pairs (all people): predicted joint -> the own joint it sits on")
    for p in r["confusion"]["all_people"]["own_pairs"][:20]:
        print(f"  {p['predicted']:15s} -> {p['sits_on']:15s} {p['kind']:22s} {p['n']:4d}")
    e = r["end_to_end"]
    if e:
        print(f"\nend to end (from {e['source']}): found with a pose of OKS >= 0.5 "
              f"{e['found_with_pose_oks_0.5']}, pooled {e['pooled']['share']:.3f} +- {e['pooled']['se']:.3f} "
              f"(n {e['pooled']['n']}); command: {e['command']}")


if __name__ == "__main__":
    main()
