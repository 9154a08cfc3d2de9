"""Data in: COCO keypoint and LSPET files, images and video frames, crops and their geometry, augmentation, heatmap-target datasets, packed training shards."""
