"""From person boxes to poses: batched crops through a model, flip and orientation passes, pose scores, and the Predictor API."""
