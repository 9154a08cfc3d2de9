"""posecal: 2D human pose estimation whose confidences can be trusted."""

from posecal.skeleton import COCO_KEYPOINTS as KEYPOINT_NAMES  # order of `keypoints` rows everywhere

__version__ = "0.1.0"
__all__ = ["KEYPOINT_NAMES", "PersonPose", "Predictor", "__version__"]


def __getattr__(name):
    # Lazy so that `import posecal` stays light (torch loads only when a model is needed).
    if name in ("Predictor", "PersonPose"):
        from posecal.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
