"""posecal: 2D human pose estimation whose confidences can be trusted."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy so that `import posecal` stays light (torch loads only when a model is needed).
    if name in ("Predictor", "PersonPose"):
        from posecal import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
