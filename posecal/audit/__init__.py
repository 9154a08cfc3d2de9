"""`posecal audit`: label errors in a keypoint dataset, found where the calibrated model contradicts them."""
