"""What an evaluation hands to the layer above: the numbers of metrics.json and the arrays its pictures are drawn
from. Evaluation computes; posecal.viz.report draws (plots and report.html) from these, so no job here draws."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Pictures:
    """The inputs of each picture of the trust report; a picture whose inputs are None is not drawn."""
    reliability: dict[str, np.ndarray] | None = None      # confidence name -> per-keypoint confidences (labelled)
    reliability_truth: np.ndarray | None = None           # their true OPKS
    pose_scores: dict[str, np.ndarray] | None = None      # pose-score name -> per-person score
    pose_truth: np.ndarray | None = None                  # their true OKS
    confusion: np.ndarray | None = None                   # visibility confusion matrix (truth x predicted)
    confusion_labels: tuple = ()
    risk_coverage: dict | None = None                     # metrics.json's risk_coverage
    people: list | None = None                            # PersonPose per matched person, for the galleries
    image_paths: list | None = None                       # aligned with people; None where the image is unknown
    gt: np.ndarray | None = None                          # (N, K, 3) ground truth aligned with people
    gt_oks: np.ndarray | None = None                      # (N,)
    one_to_one: bool = False                              # the pose plot and galleries are of poses scored one
                                                          # to one (eval --detector): the report leads with them


@dataclass
class Evaluation:
    metrics: dict                                         # exactly what metrics.json holds
    out_dir: Path
    pictures: Pictures | None = field(default=None)       # None: no pictures asked for
