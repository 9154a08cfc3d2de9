"""The CLI declared once (issue 65 item 4): every option of predict, track, eval and audit is a field of the config
its job takes (or one of the few listed below, each with the reason it is not), every config field is an option
(or listed), and every option's choices are the ones the code accepts. A field added to a config without an
option, or an option without a field, fails here."""
import dataclasses

import pytest

from posecal.audit.job import AuditConfig
from posecal.cli.parser import build_parser
from posecal.codec.heatmap import DECODE_METHODS
from posecal.devices import DEVICES
from posecal.evaluation.evaluate import EvalConfig
from posecal.devices import BACKENDS
from posecal.inference.scoring import SCORE_MODES
from posecal.detect.nms import NMS_MODES
from posecal.predict.job import PredictConfig
from posecal.tracking.cadence import BETWEEN
from posecal.tracking.pose_tracker import TrackConfig

# option dest -> the config field it sets, where the names differ
RENAMED = {"no_progress": "progress", "engine": "engine", "address": "engine", "workers": "engine",
           "no_calibration": "calibrated", "top": "report_top", "no_drop": "drop_parts",
           "max_misses": "tracker", "no_smooth": "tracker", "min_birth_quality": "policy",
           "reconnect": "live", "stall": "live"}
# options that set no field of the config, and why
RUNNER = "the runner's RayConfig (--engine ray), not the job's config: predict and track choose the runner"
OPTION_ONLY = {
    "predict": {"engine": RUNNER, "address": RUNNER, "workers": RUNNER},
    "eval": {"results": "evaluates a results file (evaluation.results.evaluate_results) instead of the config's job"},
    "audit": {"action": "the `audit apply` sub-command"},
    "track": {"timing": "prints where the time went; the job reports it either way", "engine": RUNNER,
              "address": RUNNER, "workers": RUNNER},
}
# config fields that have no option, and why
FIELD_ONLY = {
    "eval": {"plots": "the API may skip drawing; the CLI always draws"},
    "audit": {"thresholds": "the findings' thresholds, chosen on planted errors (bench/audit_planted.py)"},
    "track": {},
}
COMMANDS = {"predict": PredictConfig, "track": TrackConfig, "eval": EvalConfig, "audit": AuditConfig}


def sub_parser(name: str):
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    return subs.choices[name]


def options(name: str) -> dict:
    return {a.dest: a for a in sub_parser(name)._actions if a.dest != "help"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_options_and_config_fields_are_one_list(name):
    dests = set(options(name))
    fields = {f.name for f in dataclasses.fields(COMMANDS[name])}
    only = OPTION_ONLY.get(name, {})
    unmatched = sorted(d for d in dests - set(only) if RENAMED.get(d, d) not in fields)
    assert not unmatched, f"posecal {name}: options with no {COMMANDS[name].__name__} field: {unmatched}"
    covered = {RENAMED.get(d, d) for d in dests}
    missing = sorted(fields - covered - set(FIELD_ONLY.get(name, {})))
    assert not missing, f"{COMMANDS[name].__name__}: fields with no `posecal {name}` option: {missing}"
    # the lists above hold no stale entries
    assert set(only) <= dests
    assert set(FIELD_ONLY.get(name, {})) <= fields and not set(FIELD_ONLY.get(name, {})) & covered


def test_choices_are_the_ones_the_code_accepts():
    expected = {"nms": NMS_MODES, "score_mode": SCORE_MODES, "backend": BACKENDS, "device": DEVICES,
                "between": BETWEEN, "decode": DECODE_METHODS + ("movenet",)}
    seen = set()
    for name in COMMANDS:
        for dest, action in options(name).items():
            if dest in expected and action.choices is not None:
                assert set(action.choices) == set(expected[dest]), (name, dest, action.choices)
                seen.add(dest)
    assert seen == set(expected)
