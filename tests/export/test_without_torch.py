"""Inference needs no PyTorch: with torch, onnx and onnxscript made unimportable, the API, the tracker API,
`predict` and `eval` run the shipped models on their packaged graphs; a .pt file says in one line what it needs."""
import json
import re
import subprocess
import sys
import textwrap

from conftest import ROOT

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "onnx", "onnxscript"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoTorch())
""")


def run_without_torch(code: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "no_torch.py"
    script.write_text(BLOCK + textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "POSECAL_CACHE_DIR": str(tmp_path / "cache"),
                               "HOME": str(tmp_path)})


def test_api_tracker_predict_and_eval_run_without_torch(tmp_path, tiny_coco):
    ann, img_dir = tiny_coco
    done = run_without_torch(f"""
        import json, sys
        import cv2, numpy as np
        from posecal import PoseTracker, Predictor
        from posecal.cli.main import main
        from posecal.data.coco import read_json
        first = read_json({str(ann)!r})["images"][0]
        image = cv2.imread({str(img_dir)!r} + "/" + first["file_name"])
        people = Predictor("fast", threads=1)(image, [[10, 10, 100, 140]])
        assert len(people) == 1 and people[0].keypoints.shape == (17, 2) and people[0].visibility is not None
        tracker = PoseTracker()
        assert tracker(np.zeros((120, 160, 3), np.uint8)).people == []
        assert main(["predict", {str(img_dir)!r}, "--out", {str(tmp_path / "p.json")!r}, "--model", "fast",
                     "--no-progress"]) in (0, None)
        assert main(["eval", "--annotations", {str(ann)!r}, "--images", {str(img_dir)!r}, "--model", "fast",
                     "--out", {str(tmp_path / "ev")!r}, "--no-progress"]) in (0, None)
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript")]
        # the bench-only condition builders stay out of the runtime
        assert "posecal.evaluation.conditions" not in sys.modules
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["backend"] == "onnx"
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.onnx"))


def test_a_pt_model_without_torch_is_one_line(tmp_path, tiny_model):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.full((64, 48, 3), 90, np.uint8))   # predict checks its inputs first
    done = run_without_torch(f"""
        from posecal.cli.main import main
        raise SystemExit(main(["predict", {str(tmp_path / "a.png")!r}, "--model", {str(tiny_model)!r},
                               "--out", {str(tmp_path / "p.json")!r}]))
    """, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"posecal: error: {tiny_model}: a PyTorch model file, which needs PyTorch: pip install 'posecal[train]' "
        "(or run its ONNX export, `posecal export`, made where PyTorch is)")


def test_a_command_that_needs_pytorch_says_so_in_one_line(tmp_path):
    done = run_without_torch(f"""
        from posecal.cli.main import main
        raise SystemExit(main(["export", "--model", "fast", "--out", {str(tmp_path / "m.onnx")!r}]))
    """, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("posecal: error: posecal export needs PyTorch (")
    assert done.stderr.strip().endswith("pip install 'posecal[train]'") and not (tmp_path / "m.onnx").exists()



def test_every_test_module_collects_without_torch_and_the_torch_only_ones_skip(tmp_path):
    """`.[dev]` without the train extra: no collection error; a module that needs PyTorch (or onnx) is skipped."""
    done = run_without_torch(f"""
        import sys
        import pytest
        sys.exit(pytest.main(["--collect-only", "-q", "-rs", "-p", "no:cacheprovider", {str(ROOT / "tests")!r}]))
    """, tmp_path)
    assert done.returncode == 0 and "\nERROR " not in done.stdout, done.stdout[-3000:]
    assert "error" not in done.stdout.strip().splitlines()[-1]          # "N tests collected in ...s"
    skipped = dict(re.findall(r"SKIPPED \[1\] tests/\w+/(test_\w+)\.py:\d+: could not import '(\w+)'", done.stdout))
    assert skipped["test_codec"] == "torch" and skipped["test_shipped_graphs"] == "onnx"
    assert "tests/export/test_without_torch.py::" in done.stdout                 # the rest is collected


def test_calibrate_runs_without_torch_with_and_without_images(tmp_path):
    """pyproject's claim, checked: `calibrate fit|apply` imports no PyTorch, on an estimator's scores alone and
    with --images (posecal's trust model rating the estimator's keypoints, as the shipped trust graph)."""
    done = run_without_torch(f"""
        import json, sys
        from pathlib import Path
        import numpy as np
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from conftest import make_coco
        from posecal.cli.main import main
        ann, images = make_coco(Path({str(tmp_path)!r}) / "d", n_images=12)
        rng = np.random.default_rng(0)
        results = []
        for a in json.loads(ann.read_text())["annotations"]:   # a noisy estimator with scores of its own
            k = np.array(a["keypoints"]).reshape(17, 3)
            k[:, :2] += rng.normal(0, 3, (17, 2))
            k[:, 2] = rng.uniform(0.2, 0.9, 17)
            results.append({{"image_id": a["image_id"], "category_id": 1, "keypoints": k.ravel().tolist(),
                             "score": 0.8, "bbox": a["bbox"]}})
        res, cal = Path({str(tmp_path)!r}) / "res.json", Path({str(tmp_path)!r}) / "cal.json"
        res.write_text(json.dumps(results))
        assert main(["calibrate", "fit", "--results", str(res), "--annotations", str(ann), "--out", str(cal)]) == 0
        assert main(["calibrate", "apply", "--calibrator", str(cal), "--results", str(res), "--out",
                     str(res.with_name("out.json"))]) == 0
        assert main(["calibrate", "fit", "--results", str(res), "--annotations", str(ann), "--out",
                     str(res.with_name("cal2.json")), "--images", str(images)]) == 0
        assert main(["calibrate", "apply", "--calibrator", str(res.with_name("cal2.json")), "--results", str(res),
                     "--out", str(res.with_name("out2.json")), "--images", str(images), "--annotations", str(ann)]) == 0
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript")]
    """, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(json.loads((tmp_path / "out.json").read_text())) == 12
    cal2 = json.loads((tmp_path / "cal2.json").read_text())
    assert "trust keypoint quality" in cal2["meta"]["inputs"]
    assert cal2["meta"]["evidence_model"]["model"] == "posecal_accurate.pt"
    with_images = json.loads((tmp_path / "out2.json").read_text())
    assert len(with_images) == 12 and {"keypoint_quality", "visibility_probs"} <= set(with_images[0])
