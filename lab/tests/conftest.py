"""The lab's tier (python -m pytest -q lab/tests): the lab's scripts import as they run, from the repository's
root, beside the product's tools and benches they build on. The product's suite (tests/) never reads this."""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")   # small tensors; as tests/conftest.py, for a 2-core machine

REPO = Path(__file__).resolve().parents[2]
for folder in (REPO, REPO / "tools", REPO / "lab" / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
# ONNX exports go to the product suite's test cache (tests/conftest.py's onnx_cache_folder; POSECAL_TEST_CACHE moves
# it), never the user's: a graph either tier exported is the other's too
CACHE = Path(os.environ.get("POSECAL_TEST_CACHE") or REPO / ".pytest_cache" / "posecal-onnx")
CACHE.mkdir(parents=True, exist_ok=True)
os.environ["POSECAL_CACHE_DIR"] = str(CACHE)
