"""`posecal eval --detector`: the product end to end on labelled photos. Each image of a COCO keypoint file is
posed as `posecal predict` poses it (its detector, verifier, person policy and reported-pose quality: the very job,
predict/job.py, or its Ray runner), the results written to OUT/results.json, then scored as `posecal eval
--results` scores any results file: COCO AP, the trust metrics on the poses matched to labelled people, and every
pose one to one against its picture's people (evaluation/one_to_one.py). So the figures are those of what users
get, counted as COCO counts them, on a user's own labelled data.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from posecal.data.coco import image_file, read_coco
from posecal.data.images import check_image_folder
from posecal.errors import PosecalInputError
from posecal.evaluation.outcome import Evaluation
from posecal.evaluation.results import evaluate_results
from posecal.io import check_output_dir
from posecal.predict.job import PredictConfig
from posecal.predict.units import run_predict


def evaluate_predicted(cfg: PredictConfig, annotations: str, images: str, out: str, skip_invalid: bool = False,
                       run: Callable = run_predict, log=None) -> Evaluation:
    """Pose every image `annotations` names (in the folder `images`) with predict's settings `cfg` (its inputs,
    out and annotations are set here), then score OUT/results.json against the file. `run`: run_predict, in this
    process or on an engine (the same results file). A stopped run resumes (predict's parts)."""
    out_dir = check_output_dir(out, "--out")
    names = [im["file_name"] for im in read_coco(annotations)["images"] if im.get("file_name")]
    if not names:
        raise PosecalInputError(f"{annotations}: no image with a file_name to pose")
    check_image_folder(images, annotations)
    results = out_dir / "results.json"
    # each image where eval on labelled boxes finds it (image_file); one not there is a line of predict's, and
    # the others are posed
    inputs = list(dict.fromkeys(image_file(images, name) for name in names))
    cfg = replace(cfg, inputs=inputs, annotations=str(annotations), out=str(results))
    summary = run(cfg, log=log)
    about = {"boxes": f"detector {cfg.detector or 'default'}", "model": cfg.model or "accurate",
             "precision": summary.precision, "verifier": cfg.verifier, "fingerprint": summary.fingerprint}
    return evaluate_results(results, annotations, out_dir, images=images, skip_invalid=skip_invalid, about=about,
                            reported=True)
