"""The CLI declared once: every option of predict, track, eval and audit sets a field of the config its job takes
(or is one of the few listed below, each with the reason it sets none), every config field is set by an option
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

# option dest -> the config field it sets, where the names differ; "field.sub" where it sets `sub` of the nested
# config in `field` (that nested field must exist); address and workers set fields of the RayConfig in `engine`,
# which is None by default
RENAMED = {"no_progress": "progress", "engine": "engine", "address": "engine", "workers": "engine",
           "no_calibration": "calibrated", "top": "report_top", "keep_parts": "drop_parts",
           "max_misses": "tracker.max_misses", "no_smooth": "tracker.smooth",
           "min_birth_quality": "policy.birth_quality", "reconnect": "live.reconnects", "stall": "live.stall_seconds",
           "no_drop": "live.realtime"}
# options that set no field of the config, and why
RUNNER = "the runner's RayConfig (--engine ray), not the job's config: predict and track choose the runner"
OPTION_ONLY = {
    "predict": {"engine": RUNNER, "address": RUNNER, "workers": RUNNER},
    "eval": {"results": "evaluates a results file (evaluation.results.evaluate_results) instead of the config's job",
             "detector": "poses with predict's job and scores its results file (predict.scored.evaluate_predicted)"},
    "audit": {"action": "the `audit apply` sub-command"},
    "track": {"timing": "prints where the time went; the job reports it either way", "engine": RUNNER,
              "address": RUNNER, "workers": RUNNER},
}
# config fields that have no option, and why
FIELD_ONLY = {
    "eval": {"plots": "the API may skip drawing; the CLI always draws"},
    "audit": {"thresholds": "the findings' thresholds, chosen on planted errors (bench/audit_planted.py)"},
    "track": {"id_confidence": "the shipped identity-trust map (tracking/identity.py); the API may give another"},
}
COMMANDS = {"predict": PredictConfig, "track": TrackConfig, "eval": EvalConfig, "audit": AuditConfig}


def field_set(config, dest: str) -> str | None:
    """The top-level field of `config` (a dataclass) that option `dest` sets; None where it names none, or names
    a nested field its nested config does not have."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    top, _, sub = RENAMED.get(dest, dest).partition(".")
    if top not in fields:
        return None
    if sub:
        f = fields[top]
        nested = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if not dataclasses.is_dataclass(nested) or sub not in {g.name for g in dataclasses.fields(nested)}:
            return None
    return top


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
    unmatched = sorted(d for d in dests - set(only) if field_set(COMMANDS[name], d) is None)
    assert not unmatched, f"posecal {name}: options with no {COMMANDS[name].__name__} field: {unmatched}"
    covered = {field_set(COMMANDS[name], d) for d in dests - set(only)}
    missing = sorted(fields - covered - set(FIELD_ONLY.get(name, {})))
    assert not missing, f"{COMMANDS[name].__name__}: fields with no `posecal {name}` option: {missing}"
    # the lists above hold no stale entries
    assert set(only) <= dests
    assert set(FIELD_ONLY.get(name, {})) <= fields and not set(FIELD_ONLY.get(name, {})) & covered


# `posecal track` options whose dest names another field, given a value other than their default
TRACK_ARGV = {"no_progress": ["--no-progress"], "keep_parts": ["--keep-parts"], "no_drop": ["--no-drop"],
              "max_misses": ["--max-misses", "7"], "no_smooth": ["--no-smooth"],
              "min_birth_quality": ["--min-birth-quality", "0.99"], "reconnect": ["--reconnect", "9"],
              "stall": ["--stall", "2.5"]}


class _Captured(Exception):
    pass


def _track_config(monkeypatch, argv: list[str]) -> dict:
    """The TrackConfig `posecal track` builds from argv, as nested paths ("live.realtime") -> values."""
    import posecal.tracking.units

    def capture(cfg):
        raise _Captured(cfg)
    monkeypatch.setattr(posecal.tracking.units, "run_track", capture)
    args = build_parser().parse_args(["track", "video.mp4", "--threads", "1", *argv])
    with pytest.raises(_Captured) as caught:
        args.func(args)

    def flat(value, prefix=""):
        if dataclasses.is_dataclass(value):
            return {k: v for f in dataclasses.fields(value) for k, v in flat(getattr(value, f.name),
                                                                                 f"{prefix}{f.name}.").items()}
        return {prefix[:-1]: value}
    return flat(caught.value.args[0])


def test_track_options_set_the_field_renamed_names(monkeypatch):
    dests = {d for d in options("track") if d in RENAMED and d not in OPTION_ONLY["track"]}
    assert set(TRACK_ARGV) == dests
    default = _track_config(monkeypatch, [])
    for dest, argv in TRACK_ARGV.items():
        changed = _track_config(monkeypatch, argv)
        assert {k for k in default if changed[k] != default[k]} == {RENAMED[dest]}, (dest, argv)


def test_renamed_holds_no_stale_entries():
    dests = set().union(*(options(name) for name in COMMANDS))
    assert set(RENAMED) <= dests, sorted(set(RENAMED) - dests)


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
