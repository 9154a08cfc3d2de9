"""tools/weight_soup.py: the weighted mean of model files' pose networks, as a model file posecal opens."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from weight_soup import soup  # noqa: E402

from posecal.errors import PosecalInputError  # noqa: E402

TOOL = Path(__file__).resolve().parents[2] / "tools" / "weight_soup.py"


def checkpoint(value: float, extra: dict | None = None) -> dict:
    state = {"backbone.w": torch.full((2, 3), value), "head.bn.num_batches_tracked": torch.tensor(int(value * 10)),
             "head.half": torch.full((4,), value, dtype=torch.float16)}
    return {"model_config": {"backbone": "tiny"}, "state_dict": state | (extra or {}), "meta": {"epoch": 3}}


def test_the_soup_is_the_weighted_mean_of_floating_tensors_in_the_first_files_dtype():
    mixed = soup([checkpoint(1.0), checkpoint(3.0, {"trust.w": torch.ones(1)})], [0.25, 0.75])
    assert set(mixed["state_dict"]) == {"backbone.w", "head.bn.num_batches_tracked", "head.half"}   # no trust
    assert torch.equal(mixed["state_dict"]["backbone.w"], torch.full((2, 3), 2.5))
    assert mixed["state_dict"]["head.half"].dtype == torch.float16
    assert torch.equal(mixed["state_dict"]["head.half"], torch.full((4,), 2.5, dtype=torch.float16))
    assert int(mixed["state_dict"]["head.bn.num_batches_tracked"]) == 10   # integers: the first file's
    assert mixed["model_config"] == {"backbone": "tiny"} and mixed["meta"]["soup_weights"] == [0.25, 0.75]


def test_networks_of_another_shape_or_bad_weights_are_one_line():
    other = checkpoint(1.0)
    other["state_dict"]["backbone.w"] = torch.zeros(3, 2)
    with pytest.raises(PosecalInputError, match=r"backbone.w: not in every file with the shape \(2, 3\)"):
        soup([checkpoint(1.0), other], [0.5, 0.5])
    with pytest.raises(PosecalInputError, match="together 1"):
        soup([checkpoint(1.0), checkpoint(2.0)], [0.5, 0.6])
    with pytest.raises(PosecalInputError, match="two files or more"):
        soup([checkpoint(1.0)], [1.0])


def test_the_tool_writes_a_file_that_loads_back(tmp_path):
    a, b, out = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "soup.pt"
    torch.save(checkpoint(0.0), a)
    torch.save(checkpoint(2.0), b)
    run = subprocess.run([sys.executable, str(TOOL), str(out), str(a), str(b)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    back = torch.load(out, weights_only=False)
    assert torch.equal(back["state_dict"]["backbone.w"], torch.ones(2, 3))
    assert back["meta"]["soup_of"] == ["a.pt", "b.pt"]
    missing = subprocess.run([sys.executable, str(TOOL), str(out), str(a), str(tmp_path / "none.pt")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "none.pt" in missing.stderr and "Traceback" not in missing.stderr
