"""`posecal audit apply`: the findings a person accepted, applied to the COCO file they were found in.

A finding is named by its `id` ("ANNOTATION_ID:KIND:KEYPOINT", as findings.json and report.html show it).
Per kind: position -> the estimate's x, y (v kept); swap -> the pair's two x, y, v triples exchanged;
visibility -> the estimate's v (a keypoint made absent becomes 0, 0, 0, COCO's form of "not labelled");
missing -> the estimate's x, y and v; person -> nothing (a flag to look at, not a fix). An annotation whose
count of labelled keypoints changes gets its `num_keypoints` updated; nothing else in the file changes.
Each accepted finding's `label` must still be what the file holds, so findings of another version of the
file are refused rather than applied to the wrong keypoints.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from posecal.audit.job import read_annotations
from posecal.data.coco import read_json
from posecal.errors import PosecalInputError
from posecal.io import check_output_file, write_json_atomic

ORDER = ("swap", "position", "visibility", "missing", "person")   # v set to 0 last: it clears x, y


def read_accepted(accept: str) -> list[str]:
    """`--accept`: a file of ids (one a line, or a JSON list), or the ids themselves, comma-separated."""
    path = Path(accept)
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if text.startswith("["):
            ids = read_json(path)
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise PosecalInputError(f"{path}: expected a JSON list of finding ids (strings)")
            return ids
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if ":" not in accept:
        raise PosecalInputError(f"--accept {accept}: neither a file nor finding ids (ANNOTATION_ID:KIND:KEYPOINT)")
    return [i.strip() for i in accept.split(",") if i.strip()]


def _triple(source, f: dict, field: str) -> list[float]:
    t = f.get(field)
    if not (isinstance(t, list) and len(t) == 3 and all(isinstance(v, (int, float)) for v in t)):
        raise PosecalInputError(f"{source}: finding {f.get('id')}: '{field}' must be [x, y, v]")
    return [float(t[0]), float(t[1]), int(t[2])]


def _same(a, b) -> bool:
    return bool(np.allclose(np.asarray(a[:2], float), np.asarray(b[:2], float), atol=0.01) and int(a[2]) == int(b[2]))


def apply_findings(data: dict, findings: list[dict], accepted: list[str], source="findings") -> tuple[dict, dict]:
    """A copy of the COCO dict with the accepted findings applied, and counts per kind."""
    by_id = {f.get("id"): f for f in findings if isinstance(f, dict)}
    unknown = [i for i in accepted if i not in by_id]
    if unknown:
        raise PosecalInputError(f"{source}: no finding with id {unknown[0]}"
                                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    out = copy.deepcopy(data)
    anns = {a.get("id"): a for a in out["annotations"]}
    original = {a.get("id"): a["keypoints"] for a in data["annotations"]}   # what the labels are checked on
    todo = sorted(dict.fromkeys(accepted), key=lambda i: ORDER.index(by_id[i].get("kind")) if
                  by_id[i].get("kind") in ORDER else len(ORDER))
    counts = {k: 0 for k in ORDER}
    for fid in todo:
        f = by_id[fid]
        kind, k, ann = f.get("kind"), f.get("keypoint"), anns.get(f.get("annotation_id"))
        if kind not in ORDER:
            raise PosecalInputError(f"{source}: finding {fid}: unknown kind {kind!r}")
        if ann is None:
            raise PosecalInputError(f"{source}: finding {fid}: annotation {f.get('annotation_id')} is not in the file")
        counts[kind] += 1
        if kind == "person":
            continue
        flat = ann["keypoints"]   # edited in place, triple by triple: untouched values keep their form
        n = len(flat) // 3
        if not isinstance(k, int) or not 0 <= k < n:
            raise PosecalInputError(f"{source}: finding {fid}: bad 'keypoint' {k!r}")
        label, est = _triple(source, f, "label"), _triple(source, f, "estimate")
        held = original[f["annotation_id"]][3 * k:3 * k + 3]
        if not _same(held, label):
            raise PosecalInputError(f"{source}: finding {fid}: the file holds {held} there, the "
                                    f"finding's label is {label} (findings of another version of the file?)")
        if kind == "swap":
            a, b = f["pair"]
            flat[3 * a:3 * a + 3], flat[3 * b:3 * b + 3] = flat[3 * b:3 * b + 3], flat[3 * a:3 * a + 3]
        elif kind == "position":
            flat[3 * k:3 * k + 2] = est[:2]
        elif kind == "visibility":
            flat[3 * k:3 * k + 3] = [0, 0, 0] if est[2] == 0 else flat[3 * k:3 * k + 2] + [est[2]]
        else:   # missing
            flat[3 * k:3 * k + 3] = est
        if "num_keypoints" in ann:
            ann["num_keypoints"] = int(sum(float(v) > 0 for v in flat[2::3]))
    return out, counts


def audit_apply(annotations, findings_file, accept: str, out) -> dict:
    """The job: OUT, a COCO file with the accepted findings applied; returns counts per kind."""
    check_output_file(out, "--out")
    data = read_annotations(annotations)
    findings = read_json(findings_file)
    if not isinstance(findings, list):
        raise PosecalInputError(f"{findings_file}: expected the JSON list `posecal audit` writes")
    fixed, counts = apply_findings(data, findings, read_accepted(accept), str(findings_file))
    write_json_atomic(fixed, out)
    return counts
