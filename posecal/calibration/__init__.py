"""Post-hoc calibration: monotone maps from raw confidences to the truth they claim, and conformal radii."""
