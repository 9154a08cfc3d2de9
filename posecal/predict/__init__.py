"""`posecal predict` and `posecal demo`: images, folders and videos in, COCO keypoint results and overlays out."""
