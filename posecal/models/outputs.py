"""What a posecal network gives inference, by name: the outputs of posecal.models.estimator.runtime_outputs and
of the exported ONNX graph alike, so the PyTorch and the onnxruntime backend hand the estimator the same arrays
(posecal.inference.topdown.infer_crops). Plain names, importable without PyTorch."""

HEATMAP_OUTPUT = "heatmaps"                           # (N, K, H/4, W/4) flip-merged heatmaps
HEAD_OUTPUTS = ("oks", "opks_logits", "vis_logits")   # the trust or quality heads': (N,), (N, K), (N, K, classes)
# a MoveNet model's keypoints (N, K, 2) in crop pixels and scores (N, K) by its centre-guided decode, merged over
# the flip test
MOVENET_OUTPUTS = ("movenet_xy", "movenet_scores")
# A staged crop (posecal.models.estimator.look_outputs / refine_outputs): the look's outputs are the no-flip graph's
# plus what the refinement reuses, the trust model's own look at the crop (TrustLook's tensors); the refinement takes
# the crops, the look's heatmaps and keypoints and that cache, and gives the flip graph's outputs.
LOOK_CACHE = ("trust_feature", "trust_heatmaps", "trust_peak", "trust_peak_xy", "trust_context")
REFINE_INPUTS = ("images", HEATMAP_OUTPUT, *MOVENET_OUTPUTS, *LOOK_CACHE)
# the refine graph's input names (a graph's input cannot share a name with an output: the look's heatmaps and
# keypoints go in as look_*)
REFINE_GRAPH_INPUTS = ("images", *("look_" + name for name in REFINE_INPUTS[1:]))
