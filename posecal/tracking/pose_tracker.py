"""posecal's tracker: poses with identities, frame after frame, as a stateful object.

`PoseTracker(model="accurate")(frame_bgr)` -> a Picture whose people carry a `track_id` (in the manner of
rtmlib's PoseTracker). Per frame: person boxes (the pipeline's detector every `detect_every` frames; in between,
boxes carried from each live track's last pose), poses for those boxes by the one estimator, the pipeline's
person rule (pose NMS, nobody there), then the tracker (association, births and deaths, smoothing); between
detector frames the tracks may instead be carried by optical flow, the person rule deciding on the carried poses.
`posecal track` (tracking/job.py) is file, stream and window I/O around this object, so the API and the command
give the same ids.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from scipy.optimize import linear_sum_assignment

from posecal.data.live import LiveConfig, LiveReader, LiveSource, live_source
from posecal.data.sources import Frame, Problem, is_video, iter_frames, unreadable_video, video_fps
from posecal.errors import PosecalInputError
from posecal.inference.fitted_box import fitted_box
from posecal.inference.image_input import describe, is_path, picture_bgr
from posecal.inference.picture import Picture
from posecal.inference.person_policy import CARRIED, DETECTED, VIDEO, WHOLE, PersonPolicy
from posecal.inference.predictor import Predictor, colour_order
from posecal.io import log_line
from posecal.metrics.boxes import box_iou
from posecal.tracking.cadence import BETWEEN, REPOSE_AFTER
from posecal.tracking.flow import FrameFlow, carried_and_held
from posecal.tracking.identity import ID_CONFIDENCE_FILE, load_id_confidence
from posecal.tracking.stages import StageClock
from posecal.tracking.tracker import Tracker, TrackerConfig


@dataclass
class TrackConfig:
    videos: list[str]
    out: str = "tracks.json"
    render: str | None = None            # OUT.mp4 (one video) or a folder (several)
    # a shipped model's name or a file; accurate gave the best ids (docs/tracking.md)
    model: str = "accurate"
    detector: str | None = None          # None: the shipped SSD; a YOLOX-style ONNX file otherwise
    detector_threshold: float | None = None  # None: the person policy's (inference/person_policy.py), as predict's
    verifier: str | None = "default"     # the person verifier (detect/verifier.py): "default", an ONNX file, None
    detect_every: int = 3                # the detector on every N-th frame; tracks' carried boxes in between
                                         # (docs/tracking.md)
    min_pose_quality: float | None = None   # the person policy's nobody test; None: the policy's own
    second_look: bool = False            # the detector also on square tiles of a wide frame (detect/tiles.py)
    adaptive: bool = True                # live sources: the detector's period and the frames that may wait
                                         # follow the time frames take here (tracking/cadence.py)
    between: str = "flow"                # between detector frames: "flow" carries each track's keypoints by
                                         # optical flow (no network); "pose" estimates its pose in its carried box
    repose_after: int = REPOSE_AFTER     # with flow: a track is posed again once this many frames have passed
                                         # since its last pose, and not before (confirmed_tracks, repose_due;
                                         # 0: every detection is posed on detector frames, none in between)
    missed_detections: int = 2           # detector frames in a row a track may go unseen by the detector and
                                         # still be looked for in boxes propagated from its pose (then: a ghost)
    drop_parts: bool = True              # a tracked box that is a part of another person's is not reported
                                         # (PersonPolicy.without_tracked_parts)
    backend: str = "onnx"
    device: str = "cpu"                  # where the networks run: "cuda" or "cpu" (as Predictor's device)
    precision: str = "auto"              # a shipped model's graphs on the CPU (devices.choose_precision)
    flip: bool = False                   # flip test: ~2x the pose time for a little accuracy
    threads: int | None = None          # None: the machine's cores (parallel.default_threads)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    policy: PersonPolicy = VIDEO         # who is a person; min_pose_quality above, where given, replaces its own
    progress: bool = True
    max_frames: int | None = None        # stop after this many frames (all sources together)
    duration: float | None = None        # stop this many seconds after the models are loaded
    live: LiveConfig = field(default_factory=LiveConfig)   # live sources: reconnects, stall timeout, real time
    show: bool = False                   # the overlay in a window as it is made (where a display exists)
    rerun: str | None = None             # a rerun recording (OUT.rrd) of the tracked frames (integrations/rerun.py)
    id_confidence: Path | None = ID_CONFIDENCE_FILE   # the identity-trust map; None or no file: no id_confidence


def boxes_from_pose(person) -> np.ndarray:
    """Where to look for a tracked person in this frame: the box of their last pose (a detector's box, carried
    along), already moved by the track's velocity. Not the box around their keypoints: it misses the head's top and
    the feet and shrinks with every doubtful keypoint, so crops drift off person boxes and ids are lost."""
    return np.asarray(person.box, float)


def detect_people(frame_bgr, detector) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (M, 4) and scores (M,) of a detector frame; no detector: the whole frame is the detection."""
    if detector is None:
        h, w = frame_bgr.shape[:2]
        return np.array([[0.0, 0.0, w, h]]), np.ones(1)
    return detector(frame_bgr)


def frame_boxes(frame_bgr, detections: tuple[np.ndarray, np.ndarray] | None, tracker: Tracker,
                detect_every: int = 1, missed_detections: int = 2,
                policy: PersonPolicy = VIDEO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (M, 4), scores (M,) and, per box, whether it was propagated from a track rather than detected.
    `detections`: detect_people's boxes and scores on a detector frame, None between detector frames.
    On detector frames, tracks the detector missed keep a propagated box, so a track does not blink out with a
    missed detection. `policy`: its carried_* fields say which carried boxes are looked in."""
    h, w = frame_bgr.shape[:2]
    det_boxes, det_scores = detections if detections is not None else (np.zeros((0, 4)), np.zeros(0))
    # Only tracks unmatched for fewer frames than the detector's period (a box that found nobody mostly finds nobody
    # again; the detector finds a lost person again), and held by a detection within the last missed_detections
    # detector frames (a carried box finds a pose almost anywhere, so a track that lost its person would live on)
    live = tracker.live_people(max_misses=detect_every - 1,
                               max_undetected=detect_every * (missed_detections + 1) - 1)
    prop = np.array([boxes_from_pose(p) for p in live]).reshape(-1, 4)
    carried = np.array([carried_score(p) for p in live])
    if len(prop):
        prop = np.array([clipped_box(b, w, h) for b in prop]).reshape(-1, 4)
        big = (prop[:, 2] >= policy.carried_min_px) & (prop[:, 3] >= policy.carried_min_px)
        prop, quality, carried = prop[big], np.array([p.pose_quality for p in live])[big], carried[big]
        place = one_box_per_place(prop, quality, policy.carried_apart_iou)
        prop, carried = prop[place], carried[place]
    if len(prop) and len(det_boxes):
        apart = box_iou(prop, det_boxes).max(1) < policy.carried_detected_iou
        prop, carried = prop[apart], carried[apart]
    boxes = np.concatenate([det_boxes, prop]).reshape(-1, 4)
    scores = np.concatenate([det_scores, carried]).reshape(-1)
    return boxes, scores, np.arange(len(boxes)) >= len(det_boxes)


def carried_score(pose) -> float:
    """The box_score of a box carried from a track's pose: the score of the detection the track was last held by,
    carried with its box, so that a track's box_score means one thing on every frame. The person policy never
    reads a carried box as sure (PersonPolicy.evidence)."""
    return float(pose.box_score)


# a carried pose whose present keypoints the flow held fewer of than this share is posed again when it can be
LOST_SHARE = 0.5
# a detection overlapping a track's carried box by this IoU confirms the track (the detector frame's matching bar)
CONFIRM_IOU = 0.5


def clipped_box(box, w: int, h: int) -> np.ndarray:
    """An x, y, w, h box cut to the frame's w x h."""
    box = np.asarray(box, float).reshape(4)
    lo, hi = np.clip(box[:2], 0, [w, h]), np.clip(box[:2] + box[2:], 0, [w, h])
    return np.r_[lo, hi - lo]


def inside_frame(box, w: int, h: int, min_px: float) -> bool:
    """Is at least min_px x min_px of the box inside the frame (a carried box worth looking in)?"""
    return bool(np.all(clipped_box(box, w, h)[2:] >= min_px))


def one_box_per_place(boxes: np.ndarray, quality: np.ndarray, max_iou: float = VIDEO.carried_apart_iou) -> np.ndarray:
    """Indices of the propagated boxes to keep: greedily by the track's pose quality, a box overlapping a kept
    one by IoU > max_iou is left out, so two tracks that drifted onto one person do not both live on there (a
    ghost). The track left without a box misses and ends, or is matched again by a detection."""
    keep: list[int] = []
    for i in np.argsort(-np.asarray(quality, float), kind="stable"):
        if not keep or box_iou(boxes[i:i + 1], boxes[keep]).max() <= max_iou:
            keep.append(int(i))
    return np.array(sorted(keep), dtype=int)


def _tracked_people(frame: Frame, detections, predictor: Predictor, tracker: Tracker, fps: float, cfg: TrackConfig,
                    mode: str, clock: StageClock | None = None, t: float | None = None,
                    flow: FrameFlow | None = None) -> list[tuple[int, object]]:
    """One frame through boxes -> poses -> pose NMS -> tracker; returns (track_id, smoothed pose) pairs.
    `detections`: the detector's (boxes, scores) on a detector frame, None between detector frames. `t`: the
    frame's time in seconds (default: frame index / fps). `flow` (with cfg.between "flow"): between detector
    frames the tracks seen are carried in by optical flow, no pose network (tracking/flow.py; carried_people)."""
    clock = clock or StageClock()
    t = frame.frame_index / fps if t is None else t
    seen, poses, held = [], [], np.zeros(0)
    if flow is not None:
        with clock("flow"):
            previous, now = flow.advance(frame.bgr)
            if previous is not None and (detections is None or cfg.repose_after):
                seen = tracker.seen()
                poses, held = carried_and_held([tr.person for tr in seen], previous, now,
                                               [tr.known_velocity for tr in seen])
        if detections is None and previous is not None:
            return _between_frame(frame, seen, poses, held, predictor, tracker, cfg, mode, clock, t)
    confirmed = confirmations(seen, poses, held, detections, cfg)
    with clock("boxes"):
        boxes, scores, carried = frame_boxes(frame.bgr, detections, tracker, cfg.detect_every,
                                             cfg.missed_detections, predictor.pipeline.policy)
        rows = np.ones(len(boxes), bool)
        rows[[d for _, d in confirmed]] = False          # confirmed detections: their track's carried pose stands
        boxes, scores, carried = boxes[rows], scores[rows], carried[rows]
        fresh = DETECTED if predictor.detector is not None else WHOLE
        origins = np.where(carried, CARRIED, fresh).astype(object)
    with clock("pose"):
        # the one pipeline decides who is a person among fresh and confirmed carried poses; the tracker who is who
        standing = [confirmed_pose(poses[i], detections, d) for i, d in confirmed]
        people = predictor.pipeline.people([(frame.bgr, boxes, scores, origins)], mode, [standing])[0] \
            if len(boxes) or standing else []
    with clock("track"):
        # a confirmed carried pose was held by a detection this frame
        return tracker.update(people, t, [p.box_origin != CARRIED or p.pose_source == "carried" for p in people],
                              image=frame.bgr)


def confirmations(seen: list, poses: list, held: np.ndarray, detections, cfg: TrackConfig) -> list[tuple[int, int]]:
    """(track, detection) pairs where a detection confirms a track not yet due a fresh pose (cfg.repose_after)
    whose carried keypoints the flow held (at least LOST_SHARE of them): the track's carried box and the detection
    overlap by IoU >= CONFIRM_IOU, one to one (the assignment of most overlap). The detection is then not posed:
    the track's carried pose stands for it (confirmed_pose)."""
    if not cfg.repose_after or detections is None or not seen or not len(detections[0]):
        return []
    waiting = [i for i, tr in enumerate(seen) if tr.since_pose + 1 < cfg.repose_after and held[i] >= LOST_SHARE]
    if not waiting:
        return []
    iou = box_iou(np.array([poses[i].box for i in waiting], float).reshape(-1, 4),
                  np.asarray(detections[0], float).reshape(-1, 4))
    rows, cols = linear_sum_assignment(-iou)
    return [(waiting[r], int(d)) for r, d in zip(rows, cols) if iou[r, d] >= CONFIRM_IOU]


def confirmed_pose(pose, detections, d: int):
    """A track's carried pose confirmed by detection d: its keypoints and numbers as carried, in the detection's box
    (fresher than the box carried from the track's last pose, which the reported box is fitted to)."""
    boxes, scores = detections
    return dataclasses.replace(pose, box=np.asarray(boxes[d], float).copy(), box_score=float(scores[d]),
                               box_origin=DETECTED)


def repose_due(seen: list, held: np.ndarray, cfg: TrackConfig) -> list[int]:
    """The tracks posed afresh on a frame between detector frames, most needed first: those whose carried keypoints
    the flow lost (less than LOST_SHARE held), then those whose last pose is at least a third of cfg.repose_after
    frames old, the longest waiting first. Taken early, the re-poses spread over the cheap frames between detector
    frames rather than all coming due on one; as many a frame as keep every track within repose_after frames of
    its last pose (at least one)."""
    if not cfg.repose_after:
        return []
    lost = [i for i in range(len(seen)) if held[i] < LOST_SHARE]
    old = [i for i, tr in enumerate(seen) if i not in lost and tr.since_pose + 1 >= max(1, cfg.repose_after // 3)]
    old.sort(key=lambda i: (-seen[i].since_pose, float(seen[i].person.pose_quality), i))
    between = max(cfg.detect_every - 1, 1) / max(cfg.detect_every, 1)
    budget = max(1, math.ceil(len(seen) / (cfg.repose_after * between)))
    return (lost + old)[:budget]


def _between_frame(frame: Frame, seen: list, poses: list, held: np.ndarray, predictor: Predictor, tracker: Tracker,
                   cfg: TrackConfig, mode: str, clock: StageClock, t: float) -> list[tuple[int, object]]:
    """A frame between detector frames: the seen tracks carried in by optical flow, those due a fresh pose
    (repose_due) posed in their carried box instead, and the person policy deciding on all of them together; a
    due track whose fresh pose the policy drops goes on with its carried pose where the policy keeps that."""
    h, w = frame.bgr.shape[:2]
    min_px = predictor.pipeline.policy.carried_min_px
    due = [i for i in repose_due(seen, held, cfg) if inside_frame(poses[i].box, w, h, min_px)]
    if not due:
        kept = {id(p) for p in carried_people(frame.bgr, poses, predictor, mode)}
        return tracker.follow([tr for tr, p in zip(seen, poses) if id(p) in kept], [p for p in poses if id(p) in kept],
                              t)
    boxes = np.array([clipped_box(poses[i].box, w, h) for i in due], float).reshape(-1, 4)
    standing = [p for i, p in enumerate(poses) if i not in due]
    with clock("pose"):
        scores = np.array([carried_score(poses[i]) for i in due])
        people = predictor.pipeline.people([(frame.bgr, boxes, scores, CARRIED)], mode, [standing])[0]
    owner = {id(p): tr for tr, p in zip(seen, poses)}
    tracks, kept = [], []
    for person in people:
        if id(person) in owner:
            tracks.append(owner[id(person)])
        else:        # a fresh pose: the due track whose box it was posed in
            j = int(np.argmin(np.abs(boxes - np.asarray(person.box, float)).sum(1)))
            tracks.append(seen[due[j]])
        kept.append(person)
    # a due track whose fresh pose the policy dropped goes on as the flow carried it, if the policy keeps that
    posed = {id(tr) for tr in tracks}
    fallback = [poses[i] for i in due if id(seen[i]) not in posed]
    if fallback:
        judged = {id(p) for p in carried_people(frame.bgr, kept + fallback, predictor, mode)}
        for p in fallback:
            if id(p) in judged:
                tracks.append(owner[id(p)])
                kept.append(p)
    return tracker.follow(tracks, kept, t)


def carried_people(frame_bgr: np.ndarray, poses: list, predictor: Predictor, mode: str) -> list:
    """The poses carried into a frame by optical flow that the person policy keeps, as it would keep them on a
    detector frame: each with its own box's origin and its last estimate's numbers (flow makes no new evidence),
    all of them together by the rules of place. A track whose pose the policy drops misses this frame."""
    origins = [p.box_origin for p in poses]
    pipeline = predictor.pipeline
    return pipeline.policy.keep(poses, origins, mode, pipeline.sure_factor(frame_bgr, origins)) if poses else []


def tracking_predictor(cfg: TrackConfig) -> Predictor:
    """The one pipeline (inference/pipeline.py) with tracking's settings and the VIDEO preset."""
    return Predictor(cfg.model, device=cfg.device, flip=cfg.flip, backend=cfg.backend, threads=cfg.threads,
                     precision=cfg.precision,
                     detector="default" if cfg.detector is None else cfg.detector,
                     detector_threshold=cfg.detector_threshold, min_pose_quality=cfg.min_pose_quality,
                     second_look=cfg.second_look, verifier=cfg.verifier, policy=cfg.policy)


class PoseTracker:
    """Poses with identities over the frames of one video or stream: `tracker(frame_bgr)` -> Picture, each
    person with its `track_id`. Settings are TrackConfig's fields by name (`PoseTracker(model="fast",
    detect_every=1)`) or a TrackConfig; `predictor` shares an already opened pipeline (posecal track opens one
    for all its videos). fps: the frames' rate, the tracker's clock when no time is given. reset() starts a
    new video (tracks are forgotten; ids go on from first_id)."""

    def __init__(self, config: TrackConfig | None = None, fps: float = 25.0, predictor: Predictor | None = None,
                 first_id: int = 1, **settings):
        self.cfg = dataclasses.replace(config or TrackConfig([]), **settings)
        check_tracking(self.cfg)
        self.predictor = predictor or tracking_predictor(self.cfg)
        self.fps = float(fps)
        self.mode = "oks" if self.predictor.config.quality_heads else "heatmap"
        calibration = getattr(self.predictor, "calibration", None)   # a stand-in predictor may have none
        self.video_calibration = None if calibration is None else calibration.video
        self.id_confidence = load_id_confidence(self.cfg.id_confidence)
        self.reset(first_id)

    def reset(self, first_id: int | None = None) -> None:
        """A new video: no tracks, frame count 0; ids go on from first_id (default: where they stopped)."""
        first_id = getattr(self, "tracker", None).next_id if first_id is None else first_id
        self.tracker = Tracker(self.cfg.tracker, first_id=first_id, policy=self.predictor.pipeline.policy,
                               id_confidence=self.id_confidence)
        self.flow = FrameFlow() if self.cfg.between == "flow" else None
        self.frames = 0

    @property
    def next_id(self) -> int:
        return self.tracker.next_id

    def __repr__(self) -> str:
        """One line: the model, who finds the people and how often, how tracks go between detector frames, and
        where the tracker stands (the default repr printed an address)."""
        cfg, detector = self.cfg, self.predictor.detector
        finds = "detector=none" if detector is None else \
            f"detector={type(detector).__name__} every {cfg.detect_every} frame(s)"
        return (f"PoseTracker(model={getattr(self.predictor, 'model_name', cfg.model)!r}, {finds}, "
                f"between={cfg.between}, frames={self.frames}, live tracks={len(self.tracker.tracks)}, "
                f"next_id={self.next_id}, fps={self.fps:g})")

    def state(self) -> dict:
        """What the frames still to come depend on, as plain picklable values: the tracks (poses, velocities,
        smoothing filters, colours, counts), the next id, the last frame's grey image (optical flow carries the
        tracks from it), the frames seen and the frame rate. `posecal track` keeps it with each chunk of a video
        (tracking/chunks.py) so that a stopped run goes on mid-video exactly as it would have. It holds the
        tracker's own objects, which the next frame changes: pickle it (as chunks.py does) before then."""
        tracker = self.tracker
        return {"tracks": tracker.tracks, "next_id": tracker.next_id, "evidence": tracker.evidence,
                "flow": None if self.flow is None else self.flow.previous, "frames": self.frames, "fps": self.fps}

    def restore(self, state: dict) -> None:
        """Where a state() left off: the frame after it is tracked as it would have been then."""
        self.tracker.tracks, self.tracker.next_id = list(state["tracks"]), int(state["next_id"])
        self.tracker.evidence = dict(state["evidence"])
        if self.flow is not None:
            self.flow.previous = state["flow"]
        self.frames, self.fps = int(state["frames"]), float(state["fps"])

    def detector_frame(self, k: int, every: int | None = None) -> bool:
        """Does the k-th frame taken get the detector (every `every`, default detect_every, frames)? Without a
        detector every frame does: the whole frame is its detection, which costs nothing."""
        return self.predictor.detector is None or k % (every or self.cfg.detect_every) == 0

    def detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A detector frame's person boxes (M, 4) and scores (M,)."""
        return detect_people(bgr, self.predictor.detector)

    def __call__(self, frame_bgr, t: float | None = None, name: str = "frame", rgb: bool | None = None,
                 bgr: bool | None = None) -> Picture:
        """The next frame -> its Picture, people with track ids. The frame is an image array, BGR by default
        (rgb=True for RGB), checked as Predictor checks its images (inference/image_input.py: one
        PosecalInputError line for a wrong shape, dtype or pixel range; float frames in [0, 1] are read as such;
        a path is refused: track(path) reads a video). t: its time in seconds (default: frame count / fps)."""
        frame_bgr = picture_bgr(frame_bgr, colour_order(rgb, bgr), "frame", paths=False)
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise PosecalInputError(f"t: the frame's time in seconds must be a finite number, got {describe(t)}")
        k = self.frames
        t0 = time.perf_counter()
        detections = self.detect(frame_bgr) if self.detector_frame(k) else None
        frame = Frame(f"{name}#{k}", None, frame_bgr, k)
        t1 = time.perf_counter()
        people = self.step(frame, detections, t)
        return _picture(frame, people, {"detect": (t1 - t0) * 1e3, "pose": (time.perf_counter() - t1) * 1e3})

    def track(self, source, stream: bool = False, rgb: bool | None = None) -> list[Picture] | Iterator[Picture]:
        """Every frame of a source, tracked -> Pictures with track ids (a list; stream=True: yielded as each frame
        is done). source: a video file, a camera index (0), a stream URL (rtsp://, http://), a pipe (pipe:PATH or a
        FIFO), or frames (a list or iterator of image arrays, BGR by default, rgb=True for RGB). The tracker starts
        afresh (reset()): the source is a new video; ids go on from where they stopped. A file or frames are
        tracked frame by frame as `posecal track` tracks them (the same ids); a live source is read in real time
        (the newest frame each time, TrackConfig.live). A source that cannot be read is one PosecalInputError
        line, raised here before any frame."""
        frames, fps, reader = self._frames_of(source, colour_order(rgb, None))
        self.reset()
        self.fps = fps or self.fps
        pictures = self._tracked(frames, reader)
        return pictures if stream else list(pictures)

    def _frames_of(self, source, rgb: bool):
        """(frames, fps or None, the LiveReader of a live source) of a track() source, checked: a path must be a
        readable video."""
        if isinstance(source, bool):
            raise PosecalInputError(f"source: expected a video file, a camera index, a stream URL or frames, got "
                                    f"{describe(source)}")
        if isinstance(source, (int, np.integer)):
            source = str(int(source))
        if is_path(source):
            text = os.fspath(source)
            live = live_source(text)
            if live is not None:
                return self._live_frames(live)
            path = Path(text)
            if path.is_dir():
                raise PosecalInputError(f"{path}: is a folder; track() reads one video (or a camera, a stream)")
            if not path.is_file():
                raise PosecalInputError(f"{path}: no such video file (nor a camera index or stream URL)")
            if not is_video(path):
                raise PosecalInputError(f"{path}: not a video (suffix '{path.suffix}'); Predictor.predict reads "
                                        f"images")
            problem = unreadable_video(path)
            if problem is not None:
                raise PosecalInputError(problem.message)
            return iter_frames([(path, path.name)]), video_fps(path), None
        if isinstance(source, np.ndarray) and source.ndim in (2, 3) and source.dtype.kind in "uif":
            raise PosecalInputError(f"source: one image ({describe(source)}); call the tracker on a frame "
                                    f"(tracker(frame)) or give track() a list of frames")
        try:
            items = iter(source)
        except TypeError:
            raise PosecalInputError(f"source: expected a video file, a camera index, a stream URL or frames, got "
                                    f"{describe(source)}") from None
        frames = (Frame(f"frame#{k}", None, picture_bgr(f, rgb, f"frames[{k}]", paths=False), k)
                  for k, f in enumerate(items))
        return frames, None, None

    def _live_frames(self, live: LiveSource):
        """A live source's frames, read in real time by posecal/data/live.py (its first open checked there)."""
        reader = LiveReader(live, self.cfg.live, log_line)
        return reader, reader.fps, reader

    def _tracked(self, frames, reader: LiveReader | None) -> Iterator[Picture]:
        """track()'s frames through the one frame loop (track_pairs), each frame's detector run as it is taken."""
        def detections(frame):
            if isinstance(frame, Problem) or not self.detector_frame(self.frames):
                return None
            return self.detect(frame.bgr)

        try:
            for _, picture in self.track_pairs(((f, detections(f)) for f in frames), live=reader is not None):
                yield picture
        finally:
            if reader is not None:
                reader.close()

    def track_pairs(self, pairs: Iterable, live: bool = False, clock: StageClock | None = None,
                    every: Callable[[], int | None] = lambda: None, stop: Callable[[], bool] = lambda: False,
                    on_problem: Callable[[Problem], None] | None = None) -> Iterator[tuple[Frame, Picture]]:
        """The one frame loop of track() and `posecal track` (tracking/job.py, which adds the detection one frame
        ahead, the live cadence, its writers and stops): (frame, detections) pairs -> (frame, Picture) pairs, people
        with track ids. detections: detect()'s boxes and scores on a detector frame (or a future of them, started
        ahead), None between detector frames. live: the tracker's clock is each frame's capture time since the
        first frame's (else frame index / fps). every(): the detector's period now (step's). stop(): checked as
        each frame is taken; True ends the loop before that frame. A Problem among the frames (a video that fails
        as it is read) is handed to on_problem(), or raised as one PosecalInputError line without one."""
        first = None
        for frame, detections in pairs:
            if isinstance(frame, Problem):
                if on_problem is None:
                    raise PosecalInputError(frame.message)
                on_problem(frame)
                continue
            if stop():
                return
            t = None
            if live:
                first = frame.capture_time if first is None else first
                t = frame.capture_time - first
            t0 = time.perf_counter()
            if hasattr(detections, "result"):   # started ahead (concurrent.futures.Future)
                detections = detections.result()
            t1 = time.perf_counter()
            people = self.step(frame, detections, t, clock, every())
            speed = {"detect": (t1 - t0) * 1e3, "pose": (time.perf_counter() - t1) * 1e3}
            yield frame, _picture(frame, people, speed)

    def step(self, frame: Frame, detections, t: float | None = None, clock: StageClock | None = None,
             every: int | None = None) -> list:
        """One frame with its detections (None between detector frames) -> its tracked people: each with its
        track_id and reported box, and the video calibration applied where the model has one. every: the
        detector's period now (a live source's adaptive cadence), default detect_every."""
        self.frames += 1
        cfg = self.cfg if every in (None, self.cfg.detect_every) else dataclasses.replace(self.cfg, detect_every=every)
        h, w = frame.bgr.shape[:2]
        people = []
        for track_id, p in _tracked_people(frame, detections, self.predictor, self.tracker, self.fps, cfg,
                                           self.mode, clock, t, self.flow):
            p = dataclasses.replace(p, box=fitted_box(p, w, h))
            if self.video_calibration is not None:
                p = self.video_calibration.apply(p)
            people.append(dataclasses.replace(p, track_id=int(track_id)))
        return self.predictor.pipeline.policy.without_tracked_parts(people) if self.cfg.drop_parts else people


def _picture(frame: Frame, people: list, speed: dict) -> Picture:
    """A tracked frame's Picture."""
    return Picture(frame.name, "" if frame.path is None else str(frame.path), people, frame.bgr, frame.frame_index,
                   tracked=True, speed=speed)


def check_tracking(cfg: TrackConfig) -> None:
    """The tracking settings a PoseTracker needs, each refused by name (posecal's CLI option names)."""
    if cfg.detect_every < 1:
        raise PosecalInputError(f"--detect-every must be >= 1, got {cfg.detect_every}")
    if cfg.repose_after < 0:
        raise PosecalInputError(f"--repose-after must be >= 0, got {cfg.repose_after}")
    if cfg.between not in BETWEEN:
        raise PosecalInputError(f"--between must be one of {', '.join(BETWEEN)}, got {cfg.between!r}")
