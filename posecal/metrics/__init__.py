"""Metrics that know no model: OKS/OPKS, COCO AP (pycocotools), calibration (ECE, correlations), visibility, keypoint errors, risk-coverage."""
