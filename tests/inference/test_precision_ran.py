"""A run's precision says what runs, not what this CPU would pick for a shipped model: a model file (.pt) runs float
and an exported .onnx as it was exported, on every CPU, so neither their results nor their resume key may say
int8 because a VNNI CPU would have run a shipped model's int8 graphs."""
from __future__ import annotations

import pytest

from posecal.inference.opener import decide_precision
from posecal.models.shipped import WEIGHTS_DIR, is_installed


def test_a_model_file_runs_float_whatever_the_cpu_would_pick(tiny_model):
    for asked in ("int8", "float", "auto"):
        assert decide_precision(str(tiny_model), asked)[0] == "float", asked


def test_an_exported_graph_runs_as_it_was_exported():
    float_graph, int8_graph = WEIGHTS_DIR / "posecal_accurate.onnx", WEIGHTS_DIR / "posecal_accurate.int8.onnx"
    if not (float_graph.is_file() and int8_graph.is_file()):
        pytest.skip("accurate's graphs are not in this installation")
    for asked in ("int8", "float"):
        assert decide_precision(str(float_graph), asked) == ("float", None), asked
        assert decide_precision(str(int8_graph), asked) == ("int8", None), asked


def test_a_shipped_name_runs_the_graphs_asked_for():
    if not is_installed("accurate"):
        pytest.skip("accurate is not in this installation")
    assert decide_precision("accurate", "int8")[0] == "int8"
    assert decide_precision("accurate", "float")[0] == "float"
    assert decide_precision("accurate-float", "int8")[0] == "float"   # the name asks for its float graphs
