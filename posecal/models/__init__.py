"""Pose networks: backbones, heads, the top-down estimator that composes them, model files and configs, published-checkpoint import."""
