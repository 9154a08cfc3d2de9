"""posecal's one estimator: person boxes in pictures -> calibrated people.

Every path that turns boxes into poses calls it: the Python API, `predict`/`track`/live, `eval` and `audit`
through the pipeline (posecal/inference/pipeline.py; eval's and audit's labelled boxes as boxes given:
inference/record_posing.py), and `pack`, calibration, trust sampling and training through `estimate_records`
(persons given as records: a file and a box). So the keypoints, qualities,
visibility, radius and `in_frame` that `eval` judges are the ones `predict` gives a user, computed by the same
code: crop (person_crop_matrix), network (flip-merged), the model's own decode, the optional orientation search,
the stored calibration, then p(in frame) and p(person) where the model's calibration holds them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from posecal.data.coco import PersonRecord
from posecal.data.images import read_image
from posecal.codec.heatmap import second_peak
from posecal.data.crops import crops_to_batch, input_to_heatmap
from posecal.data.transforms import apply_affine, invert_affine, person_crop_matrix, warp
from posecal.errors import PosecalInputError
from posecal.io import progress_shown
from posecal.inference.orientation import keep_best_turn, orientations_for, persons_to_turn, visibility_turns
from posecal.inference.scoring import OCCLUDED_OVER_VISIBLE, pose_scores_of, present_and_right, visibility_classes
from posecal.inference.topdown import REFINE_KEY, Predictions, infer_crops, look_crops, refine_crops
from posecal.models.outputs import HEATMAP_OUTPUT
from posecal.skeleton import NUM_KEYPOINTS

TURNED_VISIBILITY = "turned_visibility_probs"   # res: the visibility of persons upside down or lying, stood up


@dataclass
class PersonPose:
    """One person. Coordinates are image pixels (integer = pixel centre, as COCO)."""

    box: np.ndarray                    # (4,) x, y, w, h
    keypoints: np.ndarray              # (K, 2)
    keypoint_quality: np.ndarray       # (K,) predicted OPKS in [0, 1] (heatmap peak for models without heads)
    heatmap_scores: np.ndarray         # (K,) heatmap peak values (the classic "confidence")
    pose_quality: float                # predicted OKS of the pose, by the OKS head (mean heatmap peak without heads)
    visibility: np.ndarray | None = None        # (K,) 0 not labelled / 1 occluded / 2 visible (visibility_classes)
    visibility_probs: np.ndarray | None = None  # (K, 3)
    box_score: float = 1.0
    scores: dict[str, float] = field(default_factory=dict)  # every pose-score mode (scoring.SCORE_MODES)
    keypoint_radius: np.ndarray | None = None   # (K,) pixels holding the true keypoint with prob. 0.9 (calibrated)
    # How the pose was obtained (video): "detected" by the pose network on this frame, "carried" from the last
    # estimate by optical flow (tracking/flow.py), "held" where a hidden track is predicted to be (its last pose,
    # moved by its velocity). Only a detected pose's trust fields were judged on this frame.
    pose_source: str = "detected"
    # (K,) calibrated probability that each keypoint lies inside the picture (posecal/calibration/in_frame.py); a
    # keypoint's position may lie outside it, as crops are padded past the picture's edge
    in_frame: np.ndarray | None = None
    # calibrated probability that the box frames a person, by the person verifier (posecal/detect/verifier.py)
    # from the picture itself; None where no verifier judged the box (the caller's boxes, no verifier)
    person_probability: float | None = None
    # where the box came from (inference/person_policy.py: given, detected, carried from a track, whole picture)
    box_origin: str = "given"
    # the person's track in a video (posecal.tracking.PoseTracker, `posecal track`); None for a picture
    track_id: int | None = None
    # calibrated probability that this tracked pose is the same person as its track's previous pose (posecal/
    # tracking/identity.py); None for a picture, for the pose that starts a track, and without the fitted map
    id_confidence: float | None = None
    # the pose quality its crop alone gives, where pose_quality was rated among the picture's other poses
    # (posecal/calibration/reported.py: a detected or carried box); None where the two are one
    crop_quality: float | None = None
    # what pose_quality is: "crop" (its crop's, the trust model's calibrated quality), "picture" (rated among the
    # picture's poses by the model's reported-pose map, where the run is one it was fitted on), "video" (mapped by
    # the model's video calibration, tracking/pose_tracker.py)
    quality_from: str = "crop"
    # how strongly its look's heatmaps show a second body beside this pose (Estimator.second_person): evidence that
    # the box holds two people, which the person policy reads (PersonPolicy.decided_parts); None where it was not
    # asked (only a box holding two waiting boxes is) or there is no look. Not written to results: not calibrated
    second_person: float | None = None
    # a staged crop's look (Estimator.look): what its refinement reads, until Estimator.refine replaces the look
    # with the refined pose; None for a final pose
    look: object = field(default=None, repr=False, compare=False)

    def refined_from(self, fresh: "PersonPose") -> None:
        """This look's pose fields replaced by its refinement's (`fresh`, the same box); where the box came from,
        p(person) and the track stay."""
        for name in ("keypoints", "keypoint_quality", "heatmap_scores", "pose_quality", "visibility",
                     "visibility_probs", "scores", "keypoint_radius", "in_frame"):
            setattr(self, name, getattr(fresh, name))

    def __repr__(self) -> str:
        """One line a person can read in a REPL or a log (the dataclass's own printed every 17 x 3 array): box,
        pose quality, p(person), keypoints called visible, pose source, and the track id where there is one."""
        x, y, w, h = (float(v) for v in np.asarray(self.box, float).reshape(4))
        fields = [f"box=[{x:.0f}, {y:.0f}, {w:.0f}, {h:.0f}]", f"pose_quality={float(self.pose_quality):.2f}"]
        if self.person_probability is not None:
            fields.append(f"person_probability={float(self.person_probability):.2f}")
        if self.visibility is not None:
            fields.append(f"visible={int((np.asarray(self.visibility) == 2).sum())}/{len(self.visibility)}")
        fields.append(f"source={self.pose_source!r}")
        if self.track_id is not None:
            fields.append(f"track_id={self.track_id}")
        if self.id_confidence is not None:
            fields.append(f"id_confidence={float(self.id_confidence):.2f}")
        return f"PersonPose({', '.join(fields)})"

    def to_dict(self, score_mode: str | None = None) -> dict:
        """The person as plain JSON types, in the fields of `posecal predict`'s results (COCO's `keypoints` as
        x, y, c triples, c = scoring.present_and_right: the keypoint quality where the keypoint is there, else 0; `score` by
        `score_mode`, default the pose quality)."""
        r = lambda a: np.round(np.asarray(a, float), 4).tolist()  # noqa: E731 - keeps the JSON small
        c = present_and_right(self.keypoint_quality, self.visibility_probs, self.in_frame)
        kp = np.concatenate([self.keypoints, c[:, None]], 1)
        score = self.pose_quality if score_mode is None else self.scores[score_mode]
        out = {"keypoints": r(kp.reshape(-1)), "score": round(float(score), 4), "bbox": r(self.box),
               "box_score": round(float(self.box_score), 4), "pose_quality": round(float(self.pose_quality), 4),
               "keypoint_quality": r(self.keypoint_quality), "pose_source": self.pose_source,
               "quality_from": self.quality_from}
        if self.visibility is not None:
            out["visibility"] = [int(v) for v in self.visibility]
            out["visibility_probs"] = r(self.visibility_probs)
        if self.in_frame is not None:
            out["in_frame"] = r(self.in_frame)
        if self.person_probability is not None:
            out["person_probability"] = round(float(self.person_probability), 4)
        if self.crop_quality is not None:
            out["crop_quality"] = round(float(self.crop_quality), 4)
        if self.keypoint_radius is not None:
            out["keypoint_radius"] = np.round(np.asarray(self.keypoint_radius, float), 2).tolist()
        if self.track_id is not None:   # a tracked record always says its identity trust, null where it has none
            out["track_id"] = int(self.track_id)
            out["id_confidence"] = None if self.id_confidence is None else round(float(self.id_confidence), 4)
        return out


class Estimator:
    """A pose network (PyTorch module or onnxruntime runner) with its input size and stored calibration.

    model: an onnxruntime graph or a PyTorch module (run by posecal/inference/torch_runner.py); input_wh: its crop
    size; calibration: a QualityCalibration or None (raw head outputs); flip: the flip test (an ONNX graph has it
    built in); orientations: 1, 4 or "auto" (test-time orientation search, posecal/inference/orientation.py);
    device and threads: a PyTorch module's (threads None: the process's); decode_method: None for the model's own
    decode."""

    def __init__(self, model, input_wh, calibration=None, flip: bool = True, batch_size: int = 32,
                 orientations: int | str = 1, device: str = "cpu", threads: int | None = None,
                 decode_method: str | None = None):
        self.device, self.threads, self.decode_method = device, threads, decode_method
        self.model, self.input_wh, self.calibration = model, tuple(input_wh), calibration
        self.flip, self.batch_size, self.orientations = flip, batch_size, orientations

    @property
    def model(self):
        return self._model

    @model.setter
    def model(self, model) -> None:
        """The network, and the runner that infer_crops calls for it."""
        self._model = model
        self.runner = runner_of(model, self.device, self.threads)

    @property
    def occluded_over_visible(self) -> float:
        """The visibility rule's ratio: the calibration's, or the default for raw outputs."""
        return OCCLUDED_OVER_VISIBLE if self.calibration is None else self.calibration.occluded_over_visible

    @property
    def staged(self) -> bool:
        """Crops posed in two stages (`look`, then `refine` for the people kept): the flip test on, with a runner
        that has the two stages (a MoveNet network judged by a trust model)."""
        return bool(self.flip) and bool(getattr(self.runner, "staged", False))

    def estimate(self, prepared) -> list[list[PersonPose]]:
        """[(BGR image, (N, 4) boxes, (N,) box scores), ...] -> a PersonPose per box, per image (no person rule:
        that is the pipeline's step after this one)."""
        return self._estimate(prepared)[0]

    def look(self, prepared) -> list[list[PersonPose]]:
        """As `estimate`, but where the estimator is staged each person is its crop's look (one pose pass, no
        mirror), carrying what `refine` needs (PersonPose.look): the person policy decides on looks, and only the
        people it keeps pay for the refinement. Not staged: `estimate`'s people, final."""
        if not self.staged:
            return self.estimate(prepared)
        people, res = self._estimate(prepared, look=True)
        looks = _Looks(res, owners_of(prepared))
        for j, person in enumerate(p for ps in people for p in ps):
            person.look = (looks, j)
        return people

    def refine(self, people) -> None:
        """The looks among `people` refined in place (the mirror pass merged, judged again from the look's cached
        trust look, calibrated): each then holds what `estimate` gives for its box, and no longer its look. Other
        people (final already, carried by a tracker) are left as they are."""
        groups: dict[int, tuple] = {}
        for person in people:
            if getattr(person, "look", None) is not None:
                looks, j = person.look
                groups.setdefault(id(looks), (looks, {}))[1].setdefault(j, person)
        for looks, chosen in groups.values():
            rows = np.array(sorted(chosen), np.intp)
            sub = {key: values[rows] for key, values in looks.res.items()}
            parts = [refine_crops(self.runner, {k: v[start:start + self.batch_size] for k, v in sub.items()},
                                  self.decode_method)
                     for start in range(0, len(rows), self.batch_size)]
            refined = sub | {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
            owners = [looks.owners[j] for j in rows]
            for j, fresh in zip(rows, self._people(refined, owners)[0]):
                chosen[j].refined_from(fresh)
        for person in people:
            person.look = None

    @staticmethod
    def second_person(people) -> None:
        """Each look among `people` given `second_person`, from the look's own heatmaps (codec.heatmap.second_peak
        at the keypoints it decoded), in place; final poses and others are left as they are. Asked only of the few
        poses whose box holds two waiting boxes (inference/pipeline.py), so no other crop pays for it."""
        for person in people:
            if getattr(person, "look", None) is None or person.second_person is not None:
                continue
            looks, j = person.look
            heatmaps = looks.res[REFINE_KEY + HEATMAP_OUTPUT][j:j + 1]
            cells = np.rint(input_to_heatmap(np.asarray(looks.res["xy"][j:j + 1], np.float64)))
            person.second_person = float(second_peak(heatmaps, cells)[0])

    def _estimate(self, prepared, look: bool = False) -> tuple[list[list[PersonPose]], dict]:
        """The people, and the per-person arrays they were made from (look: the looks', with what refine reads)."""
        owners = owners_of(prepared)
        people: list[list[PersonPose]] = [[] for _ in prepared]
        if not owners:
            return people, {}
        turns = orientations_for(self.orientations)
        res = self._infer(prepared, owners, turns[0], look)
        redo = persons_to_turn(self.orientations, res)
        if len(redo):
            subset = [owners[i] for i in redo]
            res = keep_best_turn(res, [self._infer(prepared, subset, rotation, look)
                                       for rotation in turns[1:]], redo)
        elif len(turns) == 1:   # no search: poses upside down or lying have their visibility judged stood up
            res = self._turned_visibility(prepared, owners, res, look)
        made, final = self._people(res, owners)
        for (n, *_), person in zip(owners, made):
            people[n].append(person)
        return people, (res if look else final)

    def _turned_visibility(self, prepared, owners, res: dict, look: bool) -> dict:
        """`res` with, for each person found upside down or lying (orientation.visibility_turns), the visibility
        their crop turned to stand them up gives (TURNED_VISIBILITY, NaN for the others), which `_people` puts in
        place of the upright crop's (through a refinement too): the pose, keypoint and pose quality stay the
        upright crop's."""
        turns = visibility_turns(res)
        if not turns.any() or "visibility_probs" not in res:
            return res
        judged = np.full(res["visibility_probs"].shape, np.nan, res["visibility_probs"].dtype)
        for rotation in np.unique(turns[turns > 0]):
            rows = np.flatnonzero(turns == rotation)
            judged[rows] = self._infer(prepared, [owners[i] for i in rows], float(rotation), look)["visibility_probs"]
        return res | {TURNED_VISIBILITY: judged}

    def _people(self, res: dict, owners: list) -> tuple[list[PersonPose], dict]:
        """The network's arrays of crops (rows aligned with `owners`: (picture, box, box score, picture size))
        -> their people (keypoints in the picture, then the stored calibration, p(in frame), the visibility rule),
        and the arrays they were made from."""
        res = dict(res)
        turned = res.pop(TURNED_VISIBILITY, None)
        if turned is not None:   # upside-down poses: visibility as their crop turned upright shows them
            res["visibility_probs"] = np.where(np.isfinite(turned), turned, res["visibility_probs"])
        res["keypoints"] = np.stack([apply_affine(xy, invert_affine(m)) for xy, m in zip(res["xy"], res["matrices"])])
        wh = np.array([o[3] for o in owners], np.float64)
        if self.calibration is not None and "opks" in res:
            boxes = np.array([o[1] for o in owners])
            res |= self.calibration.apply(res["oks"], res["opks"], res["visibility_probs"], boxes, image_wh=wh,
                                          keypoints=res["keypoints"])
            if self.calibration.in_frame is not None:
                res["in_frame"] = self.calibration.in_frame(res["visibility_probs"], res["keypoints"], boxes, wh)
        return [self._person(res, j, box, box_score, self.occluded_over_visible)
                for j, (_, box, box_score, _) in enumerate(owners)], res

    def _infer(self, prepared, owners, rotation: float, look: bool = False) -> dict[str, np.ndarray]:
        """Every person's crop turned by `rotation`, through the network in batches: the outputs of
        `infer_crops` (look: `look_crops`) for all of them, and each crop's image->input matrix ("matrices",
        (N, 2, 3))."""
        crops, matrices = [], []
        for n, box, *_ in owners:
            crop, matrix = self._crop(prepared[n][0], box, rotation)
            crops.append(crop)
            matrices.append(matrix)
        batches = [crops_to_batch(crops[start:start + self.batch_size]) for start in range(0, len(crops),
                                                                                            self.batch_size)]
        parts = [look_crops(self.runner, b, self.decode_method) if look else
                 infer_crops(self.runner, b, self.flip, self.decode_method) for b in batches]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} | {"matrices": np.stack(matrices)}

    def _crop(self, bgr: np.ndarray, box: np.ndarray, rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The person's BGR uint8 crop and its image->input matrix (crops_to_batch normalises a batch of them)."""
        try:
            m = person_crop_matrix(box, self.input_wh, rotation)
        except ValueError as e:
            raise PosecalInputError(f"box {box.tolist()}: {e}") from None
        return warp(bgr, m, self.input_wh), m

    @staticmethod
    def _person(res: dict, j: int, box, box_score: float,
                occluded_over_visible: float = OCCLUDED_OVER_VISIBLE) -> PersonPose:
        xy = res["keypoints"][j]
        hs = res["heatmap_scores"][j]
        if "opks" not in res:
            scores = {k: float(v) for k, v in pose_scores_of(hs).items()}
            return PersonPose(box, xy, hs, hs, scores["heatmap"], box_score=box_score, scores=scores)
        probs = res["visibility_probs"][j]
        radius = res["keypoint_radius"][j] if "keypoint_radius" in res else None
        in_frame = res["in_frame"][j] if "in_frame" in res else None
        scores = {k: float(v) for k, v in pose_scores_of(hs, res["oks"][j], res["opks"][j], probs, in_frame).items()}
        return PersonPose(box, xy, res["opks"][j], hs, scores["oks"],
                          visibility_classes(probs, occluded_over_visible, res["opks"][j], in_frame),
                          probs, box_score, scores, radius, in_frame=in_frame)

    def estimate_records(self, records: list[PersonRecord], progress: bool = False) -> Predictions:
        """Persons given as records (an image file and a box each) -> Predictions aligned with the records kept.
        Each picture is read once (its stored pixel grid, which annotations refer to); one that cannot be read
        is a warning and its persons are dropped, the others go on."""
        people, kept, arrays = [], [], {"oks": []}
        chunks = [records[i:i + self.batch_size] for i in range(0, len(records), self.batch_size)]
        for chunk in tqdm(chunks, desc="estimating poses", unit="batch", disable=not progress_shown(progress),
                          leave=False):
            prepared, owners = [], []
            for path, group in runs_of_one_picture(chunk):
                try:
                    bgr = read_image(path)
                except PosecalInputError as e:
                    warnings.warn(f"skipping: {e}", stacklevel=2)
                    continue
                prepared.append((bgr, np.array([r.bbox for r in group], np.float64).reshape(-1, 4),
                                 np.array([r.score for r in group], np.float64)))
                owners.append(group)
            found, res = self._estimate(prepared)
            for group, ps in zip(owners, found):
                kept += group
                people += ps
            if "oks" in res:   # the OKS head's own output (the pose quality reported is it clipped to [0, 1])
                arrays["oks"].append(res["oks"])
        return predictions_of(kept, people, self.calibration, {k: np.concatenate(v) for k, v in arrays.items() if v})


def predict_records(model, records: list[PersonRecord], input_wh, flip: bool = True, batch_size: int = 32,
                    decode_method: str | None = None, progress: bool = True, device: str = "cpu", calibration=None,
                    orientations: int | str = 1,
                    threads: int | None = None) -> Predictions:
    """Persons given as records through the one estimator, with a model already opened (a PyTorch module runs in
    eval mode): what `eval`, `audit`, calibration fitting, trust sampling and training's validation run.
    threads: a PyTorch module's intra-op threads for these calls only (None: the process's setting)."""
    return Estimator(model, input_wh, calibration, flip, batch_size, orientations, device, threads,
                     decode_method=decode_method).estimate_records(records, progress)


def owners_of(prepared) -> list[tuple]:
    """Each box of [(BGR image, boxes, box scores), ...] as (picture index, box, box score, picture (w, h)), in
    order: the rows of the estimator's arrays."""
    return [(n, np.asarray(box, np.float64), float(box_score), prepared[n][0].shape[1::-1])
            for n, (_, boxes, box_scores, *_) in enumerate(prepared) for box, box_score in zip(boxes, box_scores)]


@dataclass
class _Looks:
    """A batch of looks (Estimator.look): the arrays they were made from (with what the refinement reads) and the
    owners of their rows, held by each look person until it is refined or let go (and freed with the last of
    them: it holds no person, so no reference cycle keeps its crops alive until a garbage collection)."""

    res: dict
    owners: list


def runs_of_one_picture(records: list[PersonRecord]):
    """Consecutive records of one picture as (path, [records]), in their order."""
    start = 0
    for i in range(1, len(records) + 1):
        if i == len(records) or records[i].image_path != records[start].image_path:
            yield records[start].image_path, records[start:i]
            start = i


def predictions_of(records: list[PersonRecord], people: list[PersonPose], calibration=None,
                   extra: dict | None = None) -> Predictions:
    """People estimated for records, as the per-person arrays eval, audit and calibration read; `extra` adds
    arrays kept from the network's pass (the OKS head's own output "oks")."""
    k = NUM_KEYPOINTS
    if not people:
        return Predictions([], np.zeros((0, k, 2)), np.zeros((0, k)), people=[])
    heads = people[0].visibility_probs is not None
    stack = lambda name: np.stack([getattr(p, name) for p in people])  # noqa: E731
    fields = {"opks": stack("keypoint_quality"), "visibility_probs": stack("visibility_probs")} if heads else {}
    if heads and people[0].keypoint_radius is not None:
        fields["keypoint_radius"] = stack("keypoint_radius")
    if heads and people[0].in_frame is not None:
        fields["in_frame"] = stack("in_frame")
    if calibration is not None and heads:
        fields |= {"calibrated": True, "occluded_over_visible": calibration.occluded_over_visible}
    return Predictions(records, stack("keypoints"), stack("heatmap_scores"), **(fields | (extra or {})),
                       people=people)


def runner_of(model, device: str = "cpu", threads: int | None = None):
    """What infer_crops runs: a runner as it is (an onnxruntime graph), a PyTorch module wrapped in the PyTorch
    runner (imported only then: inference on onnxruntime needs no PyTorch)."""
    if hasattr(model, "outputs"):
        return model
    from posecal.inference.torch_runner import TorchRunner

    return TorchRunner(model, device, threads)
