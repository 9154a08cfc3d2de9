"""posecal's trust model: a network with its own eyes on the crop that rates a base estimator's keypoints."""
from posecal.models.trust.network import TRUST_INPUT, TrustNet, TrustOutput

__all__ = ["TRUST_INPUT", "TrustNet", "TrustOutput"]
