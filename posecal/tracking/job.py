"""`posecal track`: poses with identities over videos -> COCO keypoint results with a track_id, and a video.

Per frame: person boxes (the detector every `detect_every` frames; in between, boxes propagated from each live
track's last pose), poses for those boxes, pose NMS, then the tracker (association, births and deaths,
smoothing). Output contract, which checks rely on: one COCO keypoint result per tracked person and frame
with `image_id` = frame index (0-based), `file_name` = "VIDEO#FRAME", an integer `track_id`, and every field
of `posecal predict` (keypoints as x, y, keypoint quality triples; pose_quality, keypoint_quality,
visibility, visibility_probs, box_score, bbox, score).

Live sources (a camera, rtsp/http streams, a pipe; posecal/data/live.py) run in real time: the newest frame is
taken when the pipeline is ready for one, the others are dropped and counted (with `adaptive`, frames that
arrive during a detector frame wait while the pipeline can catch up, and the detector runs less often when it
cannot: tracking/cadence.py), and the tracker's clock is the capture time. With `--out -` or `.jsonl` each
frame's record is written when the frame is done (posecal/records.py); Ctrl-C, --max-frames, --duration or the
stream's end stop the run with what was made kept.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from posecal.detect.detector import MIN_POSE_QUALITY, load_detector
from posecal.detect.tiles import SecondLook
from posecal.errors import PosecalInputError
from posecal.io import write_json_atomic
from posecal.outputs import check_output_dir, check_output_file
from posecal.parallel import current, rank_job
from posecal.predict.job import result_entries
from posecal.inference.pipeline import DETECTOR, detection_setup
from posecal.inference.predictor import Predictor
from posecal.data.live import LiveConfig, LiveReader, LiveSource, live_source
from posecal.data.sources import Frame, Problem, collect, is_video, iter_frames
from posecal.records import STDOUT, RecordStream, frame_record, is_stream
from posecal.metrics.boxes import box_iou
from posecal.tracking.cadence import LiveCadence
from posecal.tracking.flow import FrameFlow, carried_poses
from posecal.tracking.nobody import NobodyPlaces
from posecal.tracking.pipeline import InOrder, Prefetch, StageClock, StopRequest
from posecal.tracking.shards import merged_tracks
from posecal.tracking.tracker import Tracker, TrackerConfig


@dataclass
class TrackConfig:
    videos: list[str]
    out: str = "tracks.json"
    render: str | None = None            # OUT.mp4 (one video) or a folder (several)
    # a shipped model's name or a file; accurate gave the best ids on the tracking bench's tuning scenes (and
    # held-out ones: docs/tracking.md), and carries the video calibration
    model: str = "accurate"
    detector: str | None = None          # None: the shipped SSD; a YOLOX-style ONNX file otherwise
    detector_threshold: float | None = 0.3   # None: trust-guided (inference/pipeline.py), as predict's default
    detect_every: int = 3                # the detector on every N-th frame; tracks' carried boxes in between
                                         # (bench/track_ids.py: 3 keeps ids best, and video at 12 fps on 2 cores)
    min_pose_quality: float = MIN_POSE_QUALITY   # the person rule's nobody test (inference/pipeline.py)
    second_look: bool = False            # the detector also on square tiles of a wide frame (detect/tiles.py): fewer
                                         # people missed, more false tracks; off (bench/track_ids.py, docs/tracking.md)
    adaptive: bool = True                # live sources: the detector's period and the frames that may wait
                                         # follow the time frames take here (tracking/cadence.py)
    between: str = "flow"                # between detector frames: "flow" carries each track's keypoints by
                                         # optical flow (no network); "pose" estimates its pose in its carried box
    skip_nobody: bool = True             # no pose for low-score detections where the detector keeps firing on
                                         # nothing the tracker takes (a tripod, a post: tracking/nobody.py)
    keep_quality: float = 0.15           # a pose from a propagated box below this pose quality: the person left
    missed_detections: int = 2           # detector frames in a row a track may go unseen by the detector and
                                         # still be looked for in boxes propagated from its pose (then: a ghost)
    backend: str = "onnx"
    flip: bool = False                   # flip test: ~2x the pose time for a little accuracy
    threads: int | None = None          # None: the machine's cores (parallel.default_threads)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    progress: bool = True
    max_frames: int | None = None        # stop after this many frames (all sources together)
    duration: float | None = None        # stop this many seconds after the models are loaded
    live: LiveConfig = field(default_factory=LiveConfig)   # live sources: reconnects, stall timeout, real time
    show: bool = False                   # the overlay in a window as it is made (where a display exists)


@dataclass
class TrackSummary:
    frames: int
    results: int
    tracks: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)   # busy seconds per stage (pipeline.StageClock)
    captured: int = 0                    # live sources: frames that arrived (processed + dropped)
    dropped: int = 0                     # live sources: frames the pipeline could not take (real time)
    stopped: str | None = None           # why the run ended before its sources did: "interrupted (Ctrl-C)",
                                         # "--max-frames", "--duration", "the reader of the records left"


PROPAGATED_MAX_IOU = 0.5   # one_box_per_place
BETWEEN = ("pose", "flow")  # TrackConfig.between


def boxes_from_pose(person) -> np.ndarray:
    """Where to look for a tracked person in this frame: the box of their last pose (a detector's box, carried
    along), already moved by the track's velocity (Tracker.live_people). Why not the box around their keypoints:
    that box misses the head's top and the feet and shrinks with every doubtful keypoint, so crops drifted off
    what the network was trained on (person boxes) and the reported boxes off the person; carrying the detector's
    box took bench/track_ids.py (detector every 3rd frame) from IDF1 0.729, 5.5 switches per 100 frames and
    MOTA 0.583 to 0.788, 1.6 and 0.726, and vtest_pedestrians_20s.avi from 28 to 24 distinct ids."""
    return np.asarray(person.box, float)


def detect_people(frame_bgr, detector) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (M, 4) and scores (M,) of a detector frame; no detector: the whole frame is the detection."""
    if detector is None:
        h, w = frame_bgr.shape[:2]
        return np.array([[0.0, 0.0, w, h]]), np.ones(1)
    return detector(frame_bgr)


def frame_boxes(frame_bgr, detections: tuple[np.ndarray, np.ndarray] | None, tracker: Tracker,
                detect_every: int = 1, missed_detections: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (M, 4), scores (M,) and, per box, whether it was propagated from a track rather than detected.
    `detections`: detect_people's boxes and scores on a detector frame, None between detector frames.
    On detector frames, tracks the detector missed keep a propagated box (a frame-wise detector finds ~75%
    of people; a track should not blink out with it)."""
    h, w = frame_bgr.shape[:2]
    det_boxes, det_scores = detections if detections is not None else (np.zeros((0, 4)), np.zeros(0))
    # Only tracks unmatched for fewer frames than the detector's period: a box that found nobody there (or drifted)
    # would mostly find nobody again, a wasted crop a frame for max_misses frames; a person lost for longer is
    # found again by the detector and matched back to their track (looked for where their velocity says they went).
    # And only tracks a detection held within the last missed_detections detector frames: a box propagated from a
    # pose finds a pose almost anywhere (a bag, the grass, the neighbour), so without the detector's word now and
    # then a track that lost its person would live on as a ghost.
    live = tracker.live_people(max_misses=detect_every - 1,
                               max_undetected=detect_every * (missed_detections + 1) - 1)
    prop = np.array([boxes_from_pose(p) for p in live]).reshape(-1, 4)
    if len(prop):
        lo = np.clip(prop[:, :2], 0, [w, h])
        hi = np.clip(prop[:, :2] + prop[:, 2:], 0, [w, h])
        prop = np.concatenate([lo, hi - lo], 1)
        big = (prop[:, 2] >= 4) & (prop[:, 3] >= 4)
        prop, quality = prop[big], np.array([p.pose_quality for p in live])[big]
        prop = prop[one_box_per_place(prop, quality)]
    if len(prop) and len(det_boxes):
        prop = prop[box_iou(prop, det_boxes).max(1) < 0.3]
    boxes = np.concatenate([det_boxes, prop]).reshape(-1, 4)
    scores = np.concatenate([det_scores, np.full(len(prop), 1.0)])
    return boxes, scores, np.arange(len(boxes)) >= len(det_boxes)


BOX_PAD = (0.08, 0.12, 0.06)   # reported_box: sides, above the top keypoint, below the lowest, x the keypoints' height


def reported_box(person, width: int, height: int) -> np.ndarray:
    """The box a tracked person is reported with: the mean of the box their pose was estimated in (a detector's,
    or one carried from it) and the box around the keypoints the model sees (visibility > 0; all of them when
    fewer than 3), padded by BOX_PAD for the head's top above the eyes and the soles below the ankles, both
    clipped to the frame. Why: the carried box keeps the detector's size and place from up to detect_every - 1
    frames before, and a detector box is loose around a partly hidden person, while the keypoints follow the
    person but miss the head's top and the feet; on bench/track_ids.py the mean fits the true box better than
    either (mean IoU 0.784 against 0.747 and 0.737; matches below IoU 0.5: 77 against 118 and 125)."""
    xy = np.asarray(person.keypoints, float)
    seen = np.ones(len(xy), bool) if person.visibility is None else np.asarray(person.visibility) > 0
    xy = xy[seen] if seen.sum() >= 3 else xy
    lo, hi = xy.min(0), xy.max(0)
    tall = hi[1] - lo[1]
    lo, hi = lo - [BOX_PAD[0] * tall, BOX_PAD[1] * tall], hi + [BOX_PAD[0] * tall, BOX_PAD[2] * tall]
    box = np.asarray(person.box, float)
    lo, hi = 0.5 * (lo + box[:2]), 0.5 * (hi + box[:2] + box[2:])
    lo, hi = np.clip(lo, 0, [width, height]), np.clip(hi, 0, [width, height])
    return np.r_[lo, np.maximum(hi - lo, 1.0)]


def one_box_per_place(boxes: np.ndarray, quality: np.ndarray, max_iou: float = PROPAGATED_MAX_IOU) -> np.ndarray:
    """Indices of the propagated boxes to keep: greedily by the track's pose quality, a box overlapping a kept
    one by IoU > max_iou is left out. Two tracks that drifted onto one person would otherwise each get a box,
    each find the same person there and each live on: a ghost that never ends, and one more crop every frame.
    The track left without a box misses and ends after max_misses frames, or is matched again by a detection."""
    keep: list[int] = []
    for i in np.argsort(-np.asarray(quality, float), kind="stable"):
        if not keep or box_iou(boxes[i:i + 1], boxes[keep]).max() <= max_iou:
            keep.append(int(i))
    return np.array(sorted(keep), dtype=int)


def still_there(person, keep_quality: float, detector_frame: bool = False) -> bool:
    """Does a pose from a propagated box (no detection behind it) still hold the tracked person? Its pose quality
    must reach keep_quality, and some keypoint must be visible: between detector frames, called visible by the
    `visibility` field; on a detector frame, where a propagated box means the detector did not find the person
    there, most likely visible (the argmax of visibility_probs; the last class, "labelled", for binary models).
    Why two rules: the argmax leans to occluded for small people, and between detector frames it dropped half
    their poses (vtest_pedestrians_20s.avi, detector every 3rd frame: 276 tracked poses in 60 frames against
    521); on detector frames the stricter rule keeps ids better (bench/track_ids.py: IDF1 0.74 against 0.68 with
    the field's rule on every frame). Boxes that drifted off their person (ghosts) are also ended by the
    detector's word (TrackConfig.missed_detections)."""
    if person.pose_quality < keep_quality:
        return False
    if detector_frame:
        probs = person.visibility_probs
        return probs is None or bool((np.asarray(probs).argmax(-1) == np.asarray(probs).shape[-1] - 1).any())
    return person.visibility is None or bool((np.asarray(person.visibility) == 2).any())


def video_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0


class VideoOut:
    """An overlay video written to a temp file and renamed into place when complete (as write_atomic does)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}", suffix=".tmp.mp4")
        os.close(fd)
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            os.remove(self.tmp)
            raise PosecalInputError(f"{self.path}: OpenCV cannot write an mp4 video here")

    def write(self, bgr: np.ndarray) -> None:
        self.writer.write(bgr)

    def close(self, keep: bool = True) -> None:
        self.writer.release()
        if keep:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def render_paths(cfg: TrackConfig, videos: list[tuple[Path, str]]) -> dict[Path, Path]:
    if not cfg.render:
        return {}
    if len(videos) == 1 and Path(cfg.render).suffix.lower() == ".mp4":
        return {videos[0][0]: check_output_file(cfg.render, "--render")}
    folder = check_output_dir(cfg.render, "--render")
    return {path: folder / f"{Path(name).stem}.mp4" for path, name in videos}


def track_sources(args: list[str]) -> tuple[list[tuple[Path | LiveSource, str]], list[Problem]]:
    """The sources of `posecal track` in the order given: (video file, name) or (live source, its name)."""
    sources, problems = [], []
    for arg in args:
        if arg == "-":
            problems.append(Problem("-: posecal track does not read stdin; for a pipe give a FIFO path (mkfifo) or "
                                    "pipe:PATH"))
            continue
        live = live_source(arg)
        if live is not None:
            sources.append((live, live.name))
            continue
        files, found_problems = collect([arg])
        sources += files
        problems += found_problems
    return sources, problems


def _check(cfg: TrackConfig) -> None:
    if cfg.detect_every < 1:
        raise PosecalInputError(f"--detect-every must be >= 1, got {cfg.detect_every}")
    if cfg.between not in BETWEEN:
        raise PosecalInputError(f"--between must be one of {', '.join(BETWEEN)}, got {cfg.between!r}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise PosecalInputError(f"--max-frames must be >= 1, got {cfg.max_frames}")
    if cfg.duration is not None and not cfg.duration > 0:
        raise PosecalInputError(f"--duration must be > 0, got {cfg.duration}")
    cfg.live.check()
    if str(cfg.out) != STDOUT:
        check_output_file(cfg.out, "--out")


@rank_job()
def run_track(cfg: TrackConfig, log=None, keep=None) -> TrackSummary:
    """Track every video and live source of cfg.videos; `keep(frame, tracked)` (optional) sees each frame's (id, pose)
    list. Stages overlap (posecal/tracking/pipeline.py): the next frame is decoded and, on detector frames, its
    people detected while this frame's poses are estimated, and the overlay video is drawn and encoded behind (a
    live source takes its newest frame when the pipeline is ready instead: no frame waits for the next one).
    Under torchrun each rank tracks its share of the videos (a video's frames all on one rank) and rank 0 writes
    the results with track ids renumbered as one process numbers them (tracking/shards.py)."""
    from posecal.overlay import render_people
    from posecal.viz.window import LiveWindow

    ranks = current()
    log = log or (lambda msg: tqdm.write(f"posecal: {msg}", file=sys.stderr))
    say = ranks.main_only(log)           # what every rank would say alike
    _check(cfg)
    sources, problems = track_sources(cfg.videos)
    for p in problems:
        say(p.message)
    for path, _ in [f for f in sources if not isinstance(f[0], LiveSource) and not is_video(f[0])]:
        say(f"{path}: not a video; posecal track reads videos (use posecal predict for images)")
    sources = [f for f in sources if isinstance(f[0], LiveSource) or is_video(f[0])]
    if not sources:
        raise PosecalInputError("nothing to do: no video among " + ", ".join(cfg.videos))
    streaming = is_stream(cfg.out)
    if ranks.distributed and (streaming or any(isinstance(f[0], LiveSource) for f in sources)):
        raise PosecalInputError("live sources and --out -/.jsonl run in one process, not under torchrun")
    renders = render_paths(cfg, sources)
    t0, clock = time.time(), StageClock()
    # the one pipeline (posecal/inference/pipeline.py): its detector finds people on detector frames, its
    # estimator poses them and the boxes the tracker carries, its person rule merges duplicates
    predictor = Predictor(cfg.model, flip=cfg.flip, backend=cfg.backend, threads=cfg.threads, detector=None,
                          min_pose_quality=cfg.min_pose_quality)
    # detector_threshold None: trust-guided detection, as predict and the API do with the shipped detector
    threshold, predictor.pipeline.rule = detection_setup(cfg.detector, cfg.detector_threshold,
                                                         bool(predictor.config.quality_heads), predictor.pipeline.rule)
    detector = load_detector(cfg.detector, threshold, threads=predictor.threads)
    if cfg.second_look and detector is not None:
        detector = SecondLook(detector)
    predictor.pipeline.detector = detector
    clock.add("start", time.time() - t0)
    mode = "oks" if predictor.config.quality_heads else "heatmap"
    # the reported trust values of tracked poses, per pose source (calibration/video.py), where the model has it
    calibration = getattr(predictor, "calibration", None)   # a stand-in predictor (bench caches) may have none
    video_calibration = None if calibration is None else calibration.video
    detect = clock.timed("detect", detect_people)
    lookahead = ThreadPoolExecutor(max_workers=1)   # the detector on the next frame
    ctrl_c, stream, window = StopRequest(), None, None
    deadline = None if cfg.duration is None else time.time() + cfg.duration
    n_frames, n_results, captured, dropped = 0, 0, 0, 0

    def stopped() -> str | None:
        """Why the run stops now, if it does: checked between frames (and by a live reader while it waits)."""
        if ctrl_c.requested:
            return "interrupted (Ctrl-C)"
        if cfg.max_frames is not None and n_frames >= cfg.max_frames:
            return "--max-frames"
        if deadline is not None and time.time() >= deadline:
            return "--duration"
        if stream is not None and stream.reader_gone:
            return "the reader of the records left"
        if window is not None and window.closed_by_user:
            return "the window was closed"
        return None

    def draw(video: VideoOut, bgr: np.ndarray, tracked: list) -> None:
        video.write(render_people(bgr, [p for _, p in tracked], tags=[f"#{i}" for i, _ in tracked]))

    results, next_id, videos = [], 1, []
    try:
        ctrl_c.__enter__()
        if streaming:
            stream = RecordStream(cfg.out)
        if cfg.show:
            window = LiveWindow.open("posecal track", log)
        for index in ranks.shard_indices(len(sources)):
            if stopped():
                break
            (source, name), first_result, first_id = sources[index], len(results), next_id
            tracker, out_video, reader = Tracker(cfg.tracker, first_id=next_id), None, None
            flow = FrameFlow() if cfg.between == "flow" else None
            nobody = NobodyPlaces() if cfg.skip_nobody and detector is not None else None
            place = itertools.count()   # the frame's place among those taken from this source
            cadence = None              # live, adaptive: the detector's period and the frames that may wait

            def detection_of(frame):   # no detector: the whole frame, on every frame (it costs nothing)
                if isinstance(frame, Problem):
                    return None
                if cadence is not None:
                    if not cadence.detector_frame():
                        return None
                elif detector is not None:
                    k = next(place) if reader is not None else frame.frame_index   # live: the frames taken
                    if k % cfg.detect_every:
                        return None
                return lookahead.submit(detect, frame.bgr, detector)

            if isinstance(source, LiveSource):
                reader = LiveReader(source, cfg.live, log, should_stop=lambda: stopped() is not None)
                frames, fps = reader, reader.fps or 25.0
                if cfg.adaptive and detector is not None and cfg.live.realtime:
                    cadence = LiveCadence(cfg.detect_every, fps)
                pairs = ((frame, detection_of(frame)) for frame in reader)   # the newest frame, now: no lookahead
            else:
                frames, fps = Prefetch(iter_frames([(source, name)]), clock=clock), video_fps(source)
                pairs = one_ahead(frames, detection_of)
            behind, first_capture = InOrder(), None
            try:
                for frame, detection in tqdm(pairs, desc=name, unit="frame",
                                             disable=not cfg.progress or not ranks.is_main):
                    if isinstance(frame, Problem):
                        log(frame.message)
                        continue
                    if stopped():
                        break
                    n_frames += 1
                    t, taken_at = None, time.perf_counter()
                    if reader is not None:   # a live source's clock: the capture time
                        first_capture = frame.capture_time if first_capture is None else first_capture
                        t = frame.capture_time - first_capture
                    detections = None if detection is None else detection.result()
                    now_cfg = cfg if cadence is None or cadence.every == cfg.detect_every else \
                        dataclasses.replace(cfg, detect_every=cadence.every)
                    tracked = track_frame(frame, detections, predictor, tracker, fps, now_cfg, mode, clock, t=t,
                                          flow=flow, nobody=nobody)
                    with clock("results"):
                        entries = []
                        for track_id, person in tracked:
                            if video_calibration is not None:
                                person = video_calibration.apply(person)
                            entry = result_entries(frame, [person], frame.frame_index, mode)[0]
                            entry["track_id"] = int(track_id)
                            entries.append(entry)
                        if stream is not None:
                            stream.write(frame_record(frame.frame_index, frame.name, frame.capture_time, entries))
                            n_results += len(entries)
                        else:
                            results.extend(entries)
                    if keep is not None:
                        keep(frame, tracked)
                    if source in renders:
                        if out_video is None:
                            h, w = frame.bgr.shape[:2]
                            out_video = VideoOut(renders[source], fps, (w, h))
                        behind.submit(clock.timed("render", draw), out_video, frame.bgr, tracked)
                    if window is not None:
                        window.show(render_people(frame.bgr, [p for _, p in tracked],
                                                  tags=[f"#{i}" for i, _ in tracked]))
                    if cadence is not None:
                        cadence.fps = reader.arrival_fps or cadence.fps
                        cadence.record(detection is not None, time.perf_counter() - taken_at)
                        reader.depth = cadence.depth
                behind.finish()
            except BaseException:
                behind.abandon()
                lookahead.shutdown(wait=False, cancel_futures=True)
                if out_video is not None:
                    out_video.close(keep=False)
                raise
            finally:
                frames.close()
            if out_video is not None:
                out_video.close()
            if reader is not None:
                captured, dropped = captured + reader.captured, dropped + reader.dropped
                log(reader.report(stopped()))
                if cadence is not None and cadence.detect_s is not None:
                    log(f"{name}: {cadence.describe()}")
            next_id = tracker.next_id
            videos.append((index, first_id, next_id, first_result, len(results)))
        lookahead.shutdown(wait=True, cancel_futures=True)
    finally:
        ctrl_c.__exit__()
        if stream is not None:
            stream.close()
        if window is not None:
            window.close()
    why = stopped()
    shares = ranks.gather((videos, results, n_frames))
    if not ranks.is_main:
        return TrackSummary(n_frames, len(results), next_id - 1, time.time() - t0, dict(clock.seconds))
    if stream is not None:
        return TrackSummary(n_frames, n_results, next_id - 1, time.time() - t0, dict(clock.seconds),
                            captured, dropped, why)
    results, next_id = merged_tracks(shares)
    with clock("write"):
        write_json_atomic(results, cfg.out, indent=None)
    return TrackSummary(sum(share[2] for share in shares), len(results), next_id - 1, time.time() - t0,
                        dict(clock.seconds), captured, dropped, why)


def one_ahead(items: Iterable, start: Callable) -> Iterator[tuple[object, object]]:
    """(item, start(item)) pairs, with start() already called on the next item when one is yielded: work started
    for the next frame (its detection) runs while the caller works on this one."""
    it = iter(items)
    this = next(it, None)
    if this is None:
        return
    started = start(this)
    for following in it:
        started_next = start(following)
        yield this, started
        this, started = following, started_next
    yield this, started


def track_frame(frame: Frame, detections, predictor: Predictor, tracker: Tracker, fps: float, cfg: TrackConfig,
                mode: str, clock: StageClock | None = None, t: float | None = None,
                flow: FrameFlow | None = None, nobody: NobodyPlaces | None = None) -> list[tuple[int, object]]:
    """_tracked_people, each with its reported_box."""
    h, w = frame.bgr.shape[:2]
    return [(i, dataclasses.replace(p, box=reported_box(p, w, h)))
            for i, p in _tracked_people(frame, detections, predictor, tracker, fps, cfg, mode, clock, t, flow, nobody)]


def _tracked_people(frame: Frame, detections, predictor: Predictor, tracker: Tracker, fps: float, cfg: TrackConfig,
                    mode: str, clock: StageClock | None = None, t: float | None = None,
                    flow: FrameFlow | None = None, nobody: NobodyPlaces | None = None) -> list[tuple[int, object]]:
    """One frame through boxes -> poses -> pose NMS -> tracker; returns (track_id, smoothed pose) pairs.
    `detections`: the detector's (boxes, scores) on a detector frame, None between detector frames. `t`: the
    frame's time in seconds (default: frame index / fps; a live source's: its capture time). `flow` (the
    source's FrameFlow, with cfg.between "flow"): between detector frames the tracks seen in the last frame are
    carried into this one by optical flow, with no pose network and no association (tracking/flow.py).
    `nobody` (the source's NobodyPlaces): detections at places where the detector keeps firing on nothing the
    tracker takes get no pose (tracking/nobody.py)."""
    clock = clock or StageClock()
    t = frame.frame_index / fps if t is None else t
    if flow is not None:
        with clock("flow"):
            previous, now = flow.advance(frame.bgr)
            if detections is None and previous is not None:
                seen = tracker.seen()
                return tracker.follow(seen, carried_poses([tr.person for tr in seen], previous, now), t)
    all_detections, skip = detections, None
    if nobody is not None and detections is not None and len(detections[0]):
        held = np.array([p.box for p in tracker.live_people()]).reshape(-1, 4)
        skip = nobody.skipped(detections[0], detections[1], held)
        detections = (detections[0][~skip], detections[1][~skip])
    with clock("boxes"):
        boxes, scores, propagated = frame_boxes(frame.bgr, detections, tracker, cfg.detect_every,
                                                cfg.missed_detections)
    with clock("pose"):
        people = predictor.predict_many([(frame.bgr, boxes, scores)], bgr=True)[0] if len(boxes) else []
    with clock("track"):
        # a propagated box that no longer holds a person (they left, or the track drifted) is let go
        kept = [(p, not prop) for p, prop in zip(people, propagated)
                if not prop or still_there(p, cfg.keep_quality, detector_frame=detections is not None)]
        estimated = people
        people = [p for p, _ in kept]
        people = predictor.pipeline.rule.keep(people, DETECTOR, mode,
                                              predictor.pipeline.sure_factor(frame.bgr, DETECTOR))
        detected = {id(p) for p, from_detector in kept if from_detector}
        tracked = tracker.update(people, t, [id(p) in detected for p in people], image=frame.bgr)
        if skip is not None:
            taken = {id(tr.person) for tr in tracker.tracks}
            used = np.zeros(len(skip), bool)
            used[np.flatnonzero(~skip)] = [id(p) in taken for p in estimated[:int((~skip).sum())]]
            nobody.learn(all_detections[0], used)
        return tracked
