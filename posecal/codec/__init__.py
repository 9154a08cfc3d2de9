"""Keypoint codecs: how keypoints become network targets (Gaussian heatmaps) and network outputs become keypoints (argmax, DARK, soft-argmax, flip-back; MoveNet's centre-guided decode)."""
