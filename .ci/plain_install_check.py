"""CI: posecal installed without extras (`pip install .`) imports and runs its API on a real photo.

Run from outside the checkout, so the installed package (not the source tree) is what is imported. The photo is
the first person crops of ../shared/data when CI has them; without them the check only imports and builds the
Predictor.
"""
import sys
from pathlib import Path

import cv2

from posecal import Predictor

import posecal  # noqa: E402

repo = Path(sys.argv[1]).resolve()
installed = Path(posecal.__file__).resolve()
assert "site-packages" in installed.parts and installed.parent != repo / "posecal", \
    f"imported the checkout, not the install: {posecal.__file__}"
predictor = Predictor()
Predictor("published")   # composed at load from the wheel's movenet_thunder_fp16.pt (weights stored once)
photos = sorted((repo.parent / "shared" / "data" / "coco-val2017-crops" / "images").glob("*.jpg"))[:3]
if not photos:
    print("plain install: posecal imports and its Predictor builds (no shared data here for a photo)")
    sys.exit(0)
found = 0
for photo in photos:
    people = predictor(cv2.imread(str(photo))[..., ::-1])   # the API takes RGB
    found += len(people)
    for p in people:
        assert p.keypoints.shape == (17, 2) and 0 <= p.pose_quality <= 1
print(f"plain install: {found} people on {len(photos)} real photos")
assert found > 0
