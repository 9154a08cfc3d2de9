"""Plots for the evaluation report (matplotlib, headless)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from posecal.io import write_atomic  # noqa: E402
from posecal.metrics.calibration import ece, ece_floor, pearson, reliability_bins  # noqa: E402


def _save(fig, path) -> None:
    """Written atomically like every other output (one error line, no half file)."""
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def reliability_diagram(confidences: dict[str, np.ndarray], truth: np.ndarray, path, n_bins: int = 15) -> None:
    """Mean true OPKS per confidence bin, one line per confidence source, with the diagonal; each ECE beside its
    floor (ece_floor: what a calibrated predictor shows on this many keypoints)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, conf in confidences.items():
        _, count, mc, mt = reliability_bins(conf, truth, n_bins)
        ok = count > 0
        floor = ece_floor(conf, truth, n_bins)[0]
        ax.plot(mc[ok], mt[ok], "o-", label=f"{name} (ECE {ece(conf, truth, n_bins):.3f}, floor {floor:.3f})")
    ax.set_xlabel("keypoint confidence")
    ax.set_ylabel("mean true OPKS")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Keypoint reliability (labelled keypoints)")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def score_scatter(scores: dict[str, np.ndarray], gt_oks: np.ndarray, path) -> None:
    """Pose score vs GT OKS, one panel per mode."""
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 3.3), squeeze=False)
    for ax, (name, s) in zip(axes[0], scores.items()):
        ax.scatter(gt_oks, s, s=4, alpha=0.4)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        r = pearson(s, gt_oks)
        ax.set_title(f"{name}  r={r:.3f}", fontsize=9)
        ax.set_xlabel("GT OKS")
        ax.set_xlim(0, 1)
    axes[0][0].set_ylabel("pose score")
    _save(fig, path)


def confusion_plot(cm: np.ndarray, labels, path) -> None:
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Keypoint visibility (row-normalised)")
    _save(fig, path)


def risk_coverage_plot(rc: dict, path) -> None:
    """Mean true OKS / OPKS of the kept items vs the share kept, with the oracle's curve's area for scale."""
    fig, axes = plt.subplots(1, len(rc), figsize=(4.6 * len(rc), 4.0), squeeze=False)
    for ax, (name, curve) in zip(axes[0], rc.items()):
        ax.plot(curve["coverage"], curve["mean_oks"], "o-",
                label=f"by {curve.get('score', 'score')} (area {curve['aurc']}, oracle {curve['oracle_aurc']})")
        ax.set_xlabel(f"share of {'persons' if name == 'pose' else 'labelled keypoints'} kept")
        ax.set_ylabel("mean true OKS" if name == "pose" else "mean true OPKS")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1)
        ax.set_title(f"Risk-coverage ({name})")
        ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)
