"""First-run polish: every CLI option says what it does and, when it has one, its default; --version works."""
import argparse
import re

import pytest

import posecal
from posecal.cli import main as cli


def _subparsers(monkeypatch) -> dict[str, argparse.ArgumentParser]:
    seen = {}

    def grab(self, *args, **kwargs):
        seen["parser"] = self
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    with pytest.raises(SystemExit):
        cli.main([])
    sub = next(a for a in seen["parser"]._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_has_help_and_its_default(monkeypatch):
    subs = _subparsers(monkeypatch)
    assert {"demo", "predict", "track", "export", "eval", "train", "pack", "audit"} <= set(subs)
    missing = []
    for name, parser in subs.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help or ""
            shows_default = action.default in (None, False) or not action.option_strings or "default" in text
            if not text or not shows_default:
                missing.append(f"{name} {action.option_strings or action.dest}")
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"posecal {posecal.__version__}"


def test_keypoint_names_are_exported():
    assert posecal.KEYPOINT_NAMES[0] == "nose" and posecal.KEYPOINT_NAMES[-1] == "right_ankle"
    assert len(posecal.KEYPOINT_NAMES) == 17


# A measured figure: a speed, a time, a share, a ratio of speeds, or an approximate number ("~13").
MEASUREMENT = re.compile(r"\d\s*(fps|ms\b|%)|~\s*\d|\d(\.\d+)?\s*x\s+(faster|slower)|IDF1|MOTA|\bAP\s*\d")


def test_help_texts_carry_no_benchmark_numbers(monkeypatch):
    """Help says what an option does and its default; how fast or how accurate it was on one machine or one
    bench belongs to the docs that show the bench's output, not to text that outlives the measurement."""
    subs = _subparsers(monkeypatch)
    pages = {name: parser.format_help() for name, parser in subs.items()}
    for name, parser in subs.items():   # sub-commands' own sub-commands (calibrate fit/apply, audit apply)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pages |= {f"{name} {n}": p.format_help() for n, p in action.choices.items()}
    found = {name: [m.group(0) for m in MEASUREMENT.finditer(" ".join(page.split()))] for name, page in pages.items()}
    assert {name: f for name, f in found.items() if f} == {}


@pytest.mark.parametrize("argv,line", [
    (["predict", "x.jpg", "--nms", "bogus"], "posecal: error: predict: argument --nms: invalid choice: 'bogus' "
                                             "(choose from 'oks', 'soft', 'none') (see 'posecal predict --help')"),
    (["track"], "posecal: error: track: the following arguments are required: SOURCE (see 'posecal track --help')"),
    (["trak"], "posecal: error: argument command: invalid choice: 'trak'"),
    (["calibrate", "fit"], "posecal: error: calibrate fit: the following arguments are required: --results"),
])
def test_a_bad_option_is_one_line_without_the_usage_block(argv, line, capsys):
    """The README's promise for every user mistake, argparse's refusals included: one line, exit 2."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith(line), err
