"""Synthetic multi-person videos of real people with exact truth: labelled COCO person crops pasted over a real
background, walking along crossing paths, for scoring identity keeping (`bench/track_ids.py`).

Each person is a *sprite*: one labelled COCO crop (its 17 keypoints, v = 0/1/2, and box) with a soft alpha mask.
In every frame a sprite is placed by a known affine map A = [[s, 0, tx], [0, s, ty]] (scale + translation), drawn
with `cv2.warpAffine` (pixel-centre convention, the one COCO keypoints use), so the truth is exact by
construction: keypoint' = A @ (x, y, 1); the box is the sprite's box mapped by A and clipped to the frame. A moving
camera (bench.lab.camera) is one more affine map V from the background (the world the people walk in) to the
frame: the background is drawn through V and every person through V after A, so the same rule holds.

The truth rule (`truth_of_frame`):

* draw order = depth: the person whose feet are lower in the frame is nearer and drawn later, on top;
* a keypoint labelled visible (v = 2) that a nearer person covers (that person's alpha >= 0.5 there) becomes
  occluded (v = 1); v = 1 stays 1; v = 0 stays 0 (x = y = 0, as COCO writes it);
* a labelled keypoint that lands outside the frame becomes v = 0 (x = y = 0);
* `visible_fraction`: the share of the person's alpha mass inside the frame and not covered by nearer people
  (1 = all seen, 0 = fully hidden or gone); scoring uses it to leave out people barely seen.

Why a soft rounded-rectangle (super-ellipse) alpha over the person's box grown by 10 %: it keeps the whole body
(limbs reach into the box's corners, which an inscribed ellipse would cut off), it carries only a thin rim of
the photo's own background instead of the whole crop (a crop rectangle, at twice the box, would paste a large
moving picture onto the scene that is neither person nor background), and its feathered edge leaves no hard
line for a detector to lock onto. Sprites are taken only from COCO's single-person images (annotation ids below
900000000 in the crops' files), so no unlabelled second person rides along inside the mask.

The background is real: the temporal median of a static-camera video's frames (`median_background`: the median
over vtest_pedestrians_20s.avi's 200 frames removes its walking people). Everything is deterministic by seed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.lab.camera import then
from posecal.io import write_json_atomic

SINGLE_PERSON_MAX_ID = 900000000      # crops' annotation ids from here on are multi-person images (README)
OCCLUDING_ALPHA = 0.5                 # a nearer person's alpha from which a keypoint under it is occluded


@dataclass
class Sprite:
    image: np.ndarray                 # (H, W, 3) uint8 BGR
    alpha: np.ndarray                 # (H, W) float32 in [0, 1]
    keypoints: np.ndarray             # (17, 3) x, y, v in sprite pixels
    bbox: np.ndarray                  # (4,) x, y, w, h in sprite pixels
    source: str                       # where it came from (the crop's file name and annotation id)


def soft_box_alpha(size_wh: tuple[int, int], bbox, grow: float = 0.10, power: float = 4.0,
                   feather: float = 0.03) -> np.ndarray:
    """(H, W) alpha: 1 inside the super-ellipse |u|^power + |v|^power <= 1 over `bbox` grown by `grow` on every
    side, 0 outside, with a Gaussian edge of sigma = feather x the box height."""
    w, h = size_wh
    x, y, bw, bh = (float(v) for v in bbox)
    cx, cy = x + bw / 2, y + bh / 2
    a, b = bw * (0.5 + grow), bh * (0.5 + grow)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    inside = (np.abs((xs - cx) / a) ** power + np.abs((ys - cy) / b) ** power) <= 1.0
    return np.clip(cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(feather * bh, 0.5)), 0, 1)


def load_sprites(annotations: str | Path, images: str | Path, min_keypoints: int = 12, min_height: float = 150,
                 min_aspect: float = 1.5, single_person: bool = True) -> list[Sprite]:
    """Sprites of the labelled persons of a COCO crops file (`coco-val2017-crops` layout) that look like someone
    standing or walking, fully enough: >= min_keypoints labelled, box height >= min_height px and height/width
    >= min_aspect; with single_person, only persons alone in their photograph. In annotation-file order."""
    data = json.loads(Path(annotations).read_text())
    files = {im["id"]: im["file_name"] for im in data["images"]}
    out = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        if ann.get("num_keypoints", 0) < min_keypoints or h < min_height or h < min_aspect * w:
            continue
        if single_person and ann["id"] >= SINGLE_PERSON_MAX_ID:
            continue
        image = cv2.imread(str(Path(images) / files[ann["image_id"]]), cv2.IMREAD_COLOR)
        if image is None:
            continue
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        out.append(Sprite(image, soft_box_alpha(image.shape[1::-1], ann["bbox"]), kp,
                          np.asarray(ann["bbox"], float), f"{files[ann['image_id']]}#{ann['id']}"))
    return out


def median_background(video: str | Path, max_frames: int = 200, step: int = 1) -> np.ndarray:
    """The per-pixel temporal median of a static-camera video's frames: walkers, who stand on no pixel for long,
    are gone; what stays is the empty scene (uint8 BGR)."""
    cap = cv2.VideoCapture(str(video))
    frames, n = [], 0
    while len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        if n % step == 0:
            frames.append(frame)
        n += 1
    cap.release()
    if not frames:
        raise ValueError(f"{video}: no frame could be read")
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


@dataclass
class Walk:
    """One person's path: feet (bottom centre of the box) from p0 at frame t0 to p1 at frame t1 along a quadratic
    curve bent sideways by `bend` px; absent outside [t0, t1]. Height in px = height_at_feet(foot y), times a bob."""
    sprite: int
    t0: int
    t1: int
    p0: tuple[float, float]
    p1: tuple[float, float]
    bend: float = 0.0
    bob: float = 2.0                  # vertical bob amplitude (px) ...
    bob_period: float = 10.0          # ... and period (frames), a walker's step

    def feet(self, t: float) -> np.ndarray:
        """Where the feet are drawn at frame t: the ground point plus the bob."""
        return self.ground(t) + [0.0, self.bob * np.sin(2 * np.pi * (t - self.t0) / self.bob_period)]

    def ground(self, t: float) -> np.ndarray:
        """The feet's point on the path at frame t (no bob): sets the person's height."""
        u = (t - self.t0) / max(self.t1 - self.t0, 1)
        p0, p1 = np.asarray(self.p0, float), np.asarray(self.p1, float)
        d = p1 - p0
        normal = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9)
        mid = (p0 + p1) / 2 + self.bend * normal
        return (1 - u) ** 2 * p0 + 2 * u * (1 - u) * mid + u ** 2 * p1


def height_at_feet(foot_y: float, frame_h: int) -> float:
    """Person height (px) where their feet are: a simple ground-plane perspective, ~0.2 x the frame height at
    the top of the walking band (foot y = 0.55 H) growing to ~0.41 x at the bottom."""
    return frame_h * (0.2 + 0.47 * (foot_y / frame_h - 0.55))


def person_transform(sprite: Sprite, walk: Walk, t: int, frame_h: int) -> np.ndarray:
    """The 2x3 affine map from sprite pixels to frame pixels at frame t: the box's bottom centre onto the feet,
    the box height onto height_at_feet."""
    feet = walk.feet(t)
    s = height_at_feet(walk.ground(t)[1], frame_h) / sprite.bbox[3]
    x, y, w, h = sprite.bbox
    anchor = np.array([x + w / 2, y + h])
    return np.array([[s, 0.0, feet[0] - s * anchor[0]], [0.0, s, feet[1] - s * anchor[1]]])


def apply_affine(A: np.ndarray, xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, float).reshape(-1, 2)
    return xy @ np.asarray(A, float)[:, :2].T + np.asarray(A, float)[:, 2]


def plan_walks(n_people: int, n_frames: int, size_wh: tuple[int, int], n_sprites: int,
               rng: np.random.Generator) -> list[Walk]:
    """Crossing paths: people alternate direction (left to right, right to left), each enters at one side edge
    and leaves at the other within the clip, at a random foot height in the lower part of the frame (the
    ground), bent by up to 10 % of the frame width; so everyone meets everyone walking the other way."""
    w, h = size_wh
    sprites = rng.choice(n_sprites, size=n_people, replace=n_sprites < n_people)
    walks = []
    for i in range(n_people):
        span = int(rng.uniform(0.55, 0.9) * n_frames)
        t0 = int(rng.integers(-span // 4, max(n_frames - span, 0) + 1))
        t0 = max(t0, 0) if i < 2 else t0            # the first two are there from frame 0
        y0, y1 = rng.uniform(0.64 * h, 0.92 * h, size=2)
        margin = 0.08 * w
        x0, x1 = -margin, w + margin
        if i % 2:
            x0, x1 = x1, x0
        walks.append(Walk(int(sprites[i]), t0, t0 + span, (x0, y0), (x1, y1),
                          bend=float(rng.uniform(-0.1, 0.1) * w), bob=float(rng.uniform(1.0, 3.0)),
                          bob_period=float(rng.uniform(8, 12))))
    return walks


def present(walk: Walk, t: int) -> bool:
    return walk.t0 <= t <= walk.t1


def compose_frame(background: np.ndarray, sprites: list[Sprite], walks: list[Walk], t: int,
                  view: np.ndarray | None = None, size_wh: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, list[dict]]:
    """Frame t (uint8 BGR) and its truth: one dict per person present (track_id = walk index + 1, bbox,
    keypoints (17, 3), visible_fraction, depth = draw rank, 0 farthest); see the module's truth rule.
    `view`: a moving camera (bench.lab.camera), the 2x3 map from the background's (world) pixels to the frame's,
    a frame of size_wh; the background and every person are drawn through it, the walks stay in the world."""
    world_h = background.shape[0]
    if view is None:
        h, w = background.shape[:2]
    else:
        (w, h), view = size_wh, np.asarray(view, float)
        background = cv2.warpAffine(background, view, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    here = [i for i, wk in enumerate(walks) if present(wk, t)]
    here.sort(key=lambda i: (walks[i].ground(t)[1], i))               # far (feet high) first: drawn first
    canvas = background.astype(np.float32)
    layers = []
    for i in here:
        sp = sprites[walks[i].sprite]
        A = person_transform(sp, walks[i], t, world_h)
        if view is not None:
            A = then(view, A)
        alpha = cv2.warpAffine(sp.alpha, A, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        image = cv2.warpAffine(sp.image, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        canvas = canvas * (1 - alpha[..., None]) + image.astype(np.float32) * alpha[..., None]
        layers.append((i, A, alpha))
    frame = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    truth = []
    for rank, (i, A, alpha) in enumerate(layers):
        sp = sprites[walks[i].sprite]
        nearer = [a for _, _, a in layers[rank + 1:]]
        cover = np.maximum.reduce(nearer) if nearer else np.zeros((h, w), np.float32)
        total = float(person_alpha_mass(sp, A))
        seen = float((alpha * (1 - cover)).sum())
        kp = sp.keypoints.copy()
        kp[:, :2] = apply_affine(A, kp[:, :2])
        for k in range(len(kp)):
            if kp[k, 2] == 0:
                kp[k] = 0
                continue
            xi, yi = int(round(kp[k, 0])), int(round(kp[k, 1]))
            if not (0 <= kp[k, 0] <= w - 1 and 0 <= kp[k, 1] <= h - 1):
                kp[k] = 0
            elif kp[k, 2] == 2 and cover[yi, xi] >= OCCLUDING_ALPHA:
                kp[k, 2] = 1
        x, y, bw, bh = sp.bbox
        lo = apply_affine(A, [[x, y]])[0]
        hi = apply_affine(A, [[x + bw, y + bh]])[0]
        lo, hi = np.clip(lo, 0, [w, h]), np.clip(hi, 0, [w, h])
        truth.append({"track_id": i + 1, "bbox": [float(v) for v in (*lo, *(hi - lo))], "keypoints": kp,
                      "visible_fraction": seen / total if total > 0 else 0.0, "depth": rank,
                      "scale": float(A[0, 0]), "source": sp.source})
    return frame, truth


def person_alpha_mass(sprite: Sprite, A: np.ndarray) -> float:
    """The alpha mass the whole person would have in the frame (in or out of it): sum of the sprite's alpha x s^2."""
    return float(sprite.alpha.sum()) * float(A[0, 0]) ** 2


@dataclass
class SceneSpec:
    seed: int
    n_people: int = 5
    n_frames: int = 150
    fps: float = 15.0


def compose_scene(background: np.ndarray, sprites: list[Sprite], spec: SceneSpec, camera=None):
    """Yields (frame index, frame, truth) for a scene planned from spec.seed; `camera` (e.g. bench.lab.camera's
    PanZoom: its size_wh and view(t)) films it moving, the people walking across the whole background."""
    rng = np.random.default_rng(spec.seed)
    h, w = background.shape[:2]
    walks = plan_walks(spec.n_people, spec.n_frames, (w, h), len(sprites), rng)
    for t in range(spec.n_frames):
        view = None if camera is None else camera.view(t)
        frame, truth = compose_frame(background, sprites, walks, t, view, None if camera is None else camera.size_wh)
        yield t, frame, truth


def truth_json(name: str, size_wh: tuple[int, int], per_frame: list[list[dict]], info: dict) -> dict:
    """COCO-style truth: images = frames (id = frame index, file_name = "NAME#t", as `posecal track` writes),
    annotations = one person in one frame with its track_id, keypoints, bbox, area, visible_fraction."""
    w, h = size_wh
    images, anns = [], []
    for t, truth in enumerate(per_frame):
        images.append({"id": t, "file_name": f"{name}#{t}", "width": w, "height": h})
        for p in truth:
            kp = np.asarray(p["keypoints"], float)
            anns.append({"id": len(anns) + 1, "image_id": t, "category_id": 1, "iscrowd": 0,
                         "track_id": int(p["track_id"]), "bbox": [round(v, 3) for v in p["bbox"]],
                         "area": round(0.5 * p["bbox"][2] * p["bbox"][3], 3),
                         "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                         "num_keypoints": int((kp[:, 2] > 0).sum()),
                         "visible_fraction": round(float(p["visible_fraction"]), 4), "depth": int(p["depth"]),
                         "source": p["source"]})
    return {"info": info, "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}]}


def write_scene(out_dir: str | Path, name: str, background: np.ndarray, sprites: list[Sprite],
                spec: SceneSpec, camera=None) -> tuple[Path, Path]:
    """Writes OUT/NAME.avi (MJPG, quality ~95) and OUT/NAME.json (truth_json); returns their paths. `camera`:
    as compose_scene's (its plan goes into the truth's info)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = background.shape[1::-1] if camera is None else camera.size_wh
    video = out_dir / f"{name}.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), spec.fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"{video}: OpenCV cannot write an MJPG avi here")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    per_frame = []
    for _, frame, truth in compose_scene(background, sprites, spec, camera):
        writer.write(frame)
        per_frame.append(truth)
    writer.release()
    info = {"seed": spec.seed, "n_people": spec.n_people, "n_frames": spec.n_frames, "fps": spec.fps,
            "video": video.name, "truth_rule": "bench.lab.moving_people"}
    if camera is not None:
        info["camera"] = camera.describe()
    truth = out_dir / f"{name}.json"
    write_json_atomic(truth_json(video.name, (w, h), per_frame, info), truth, indent=None)
    return video, truth
