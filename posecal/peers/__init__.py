"""Other estimators run the way posecal's evaluation expects (GT or given boxes -> COCO keypoint results)."""
