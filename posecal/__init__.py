"""posecal: 2D human pose estimation whose confidences can be trusted."""

from posecal._version import __version__
from posecal.skeleton import COCO_KEYPOINTS as KEYPOINT_NAMES  # order of `keypoints` rows everywhere

__all__ = ["KEYPOINT_NAMES", "PersonPose", "Picture", "PoseTracker", "Predictor", "__version__"]


def __getattr__(name):
    # Lazy so that `import posecal` stays light (torch loads only when a model is needed).
    if name in ("Predictor", "PersonPose", "Picture"):
        from posecal.inference import predictor

        return getattr(predictor, name)
    if name == "PoseTracker":
        from posecal.tracking.pose_tracker import PoseTracker

        return PoseTracker
    raise AttributeError(name)
