"""An audited COCO keypoint file in FiftyOne: each image a sample with its labels as `ground_truth` and the
findings' scores on them (`posecal_mistakenness`, `posecal_<kind>`, per point), so that a FiftyOne view sorts the
labels by posecal's findings as by FiftyOne Brain's mistakenness. `posecal audit --fiftyone DIR` writes the
folder after findings.json; `audit_samples` gives the samples of any COCO file and findings.json.

This module reads the files (the COCO file through posecal.data.coco's checked reader); building the samples
and writing the folder is posecal/integrations/fiftyone.py's. No model runs here, and no FiftyOne database is
opened: the user loads the folder into their own with
`fo.Dataset.from_dir(DIR, dataset_type=fo.types.LegacyFiftyOneDataset)`.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from posecal.data.coco import image_file, read_coco, read_json
from posecal.data.images import stored_size
from posecal.errors import PosecalInputError
from posecal.integrations.fiftyone import image_sample, import_fiftyone, write_fiftyone_dir
from posecal.io import check_output_dir

OPTION = "--fiftyone"


def check_fiftyone_output(folder, images) -> Path:
    """Before the audit runs (an hour of inference must not end in a missing package or an unwritable folder):
    the images folder the samples point at, fiftyone itself, and a writable output folder."""
    if not images:
        raise PosecalInputError(f"{OPTION} needs --images: FiftyOne's samples are the image files")
    import_fiftyone(OPTION)
    return check_output_dir(folder, OPTION)


def audit_samples(annotations_json, images_dir, findings_json) -> list:
    """fo.Samples of a COCO keypoint file's images (in `images_dir`) with the annotations as `ground_truth` and
    the findings of `posecal audit`'s findings.json on them; ready for `dataset.add_samples(...)`."""
    findings = read_json(findings_json)
    if not isinstance(findings, list):
        raise PosecalInputError(f"{findings_json}: not a findings file (a JSON list, as `posecal audit` writes)")
    return coco_samples(annotations_json, images_dir, findings)


def write_audit_fiftyone(annotations_json, images_dir, findings: list[dict], out_dir) -> Path:
    """The folder of audit_samples (findings given as findings.json's list), for `posecal audit --fiftyone`."""
    return write_fiftyone_dir(coco_samples(annotations_json, images_dir, findings), out_dir, OPTION)


def coco_samples(annotations_json, images_dir, findings: list[dict]) -> list:
    """One sample per image of the COCO file, in its order, each with that image's annotations and findings."""
    data = read_coco(annotations_json)
    by_image = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    samples = []
    for img in data["images"]:
        path = Path(image_file(images_dir, img["file_name"]))
        width, height = _image_size(img, path, annotations_json)
        samples.append(image_sample(path, width, height, by_image.get(img["id"], []), findings))
    return samples


def _image_size(img: dict, path: Path, source) -> tuple[int, int]:
    """The image's (width, height): the COCO file's, else the file's header (FiftyOne's points are fractions
    of it)."""
    if img.get("width") and img.get("height"):
        return int(img["width"]), int(img["height"])
    size = stored_size(path)
    if size is None:
        raise PosecalInputError(f"{source}: image {img['id']} ({img['file_name']}) gives no width and height, and "
                                f"{path} cannot be read for them")
    return size
