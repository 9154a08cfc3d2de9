"""Multi-person pose tracking on video: association (associate.py), track life cycle (tracker.py), keypoint
smoothing (one_euro.py) and the `posecal track` job (job.py)."""
