"""COCO keypoint AP/AR through pycocotools (the reference implementation, not a re-implementation)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def load_coco_gt(annotation) -> COCO:
    """pycocotools' ground truth from a COCO file, or from its dict already read (and checked: posecal's readers
    give pycocotools only entries whose fields it can use, posecal.data.coco.read_coco)."""
    with contextlib.redirect_stdout(io.StringIO()):
        if not isinstance(annotation, dict):
            return COCO(str(annotation))
        gt = COCO()
        gt.dataset = annotation
        gt.createIndex()
        return gt


def coco_keypoint_results(image_ids, keypoints: np.ndarray, keypoint_scores: np.ndarray, scores) -> list[dict]:
    """COCO results entries: keypoints as flat [x, y, confidence] * K."""
    out = []
    for img_id, kp, ks, sc in zip(image_ids, keypoints, keypoint_scores, scores):
        flat = np.concatenate([kp, ks[:, None]], 1).reshape(-1)
        out.append({"image_id": int(img_id), "category_id": 1,
                    "keypoints": [round(float(v), 3) for v in flat], "score": float(sc)})
    return out


def coco_keypoint_ap(gt: COCO, results: list[dict], image_ids=None) -> dict:
    """AP, AP50, AP75 and AR (percent) of keypoint results against the GT, as COCOeval reports them.

    All GT images count unless `image_ids` narrows them (a person with no prediction is a miss).
    """
    if not results:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        if image_ids is not None:
            ev.params.imgIds = sorted(set(int(i) for i in image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"ap": 100 * s[0], "ap50": 100 * s[1], "ap75": 100 * s[2], "ar": 100 * s[5]}
