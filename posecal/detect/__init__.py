"""Person detection before pose: the shipped SSD and YOLOX-style detectors, person-box files, and pose NMS."""
