"""What a posecal network gives inference, by name: the outputs of posecal.models.estimator.runtime_outputs and
of the exported ONNX graph alike, so the PyTorch and the onnxruntime backend hand the estimator the same arrays
(posecal.inference.topdown.infer_crops). Plain names, importable without PyTorch."""

HEATMAP_OUTPUT = "heatmaps"                           # (N, K, H/4, W/4) flip-merged heatmaps
HEAD_OUTPUTS = ("oks", "opks_logits", "vis_logits")   # the trust or quality heads': (N,), (N, K), (N, K, classes)
# a MoveNet model's keypoints (N, K, 2) in crop pixels and scores (N, K) by its centre-guided decode, merged over
# the flip test
MOVENET_OUTPUTS = ("movenet_xy", "movenet_scores")
