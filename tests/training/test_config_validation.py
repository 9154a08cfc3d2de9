"""Bad config fields and CLI numbers end in one line naming the file/option and the field, never a traceback."""

import pytest

pytest.importorskip("torch")

from posecal.cli.main import main
from posecal.training.config import load_train_config
from posecal.errors import PosecalInputError

def _load(tmp_path, text: str):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return load_train_config(path)


def _error(tmp_path, text: str) -> str:
    """The one-line error for a config made of `text`; it names the file."""
    with pytest.raises(PosecalInputError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'x.yaml'}: ") and "\n" not in msg
    return msg


def test_float_literal_string_is_the_number_meant(tmp_path):
    cfg = _load(tmp_path, "lr: 1e-3\nweight_decay: 5e-5\nmax_minutes: 9\n")   # YAML 1.1: 1e-3 is a string
    assert cfg.lr == pytest.approx(1e-3) and cfg.weight_decay == pytest.approx(5e-5)
    assert isinstance(cfg.max_minutes, float) and cfg.max_minutes == 9.0


def test_valid_values_keep_their_types(tmp_path):
    cfg = _load(tmp_path, "model: {input_wh: [96, 128], head_widths: [8, 8, 4]}\n"
                          "augment: {truncation_range: [0.1, 0.1], occluder_size: [0.2, 0.3]}\nmax_steps: null\n")
    assert cfg.model.input_wh == (96, 128) and cfg.model.head_widths == (8, 8, 4)
    assert cfg.augment.truncation_range == (0.1, 0.1) and cfg.max_steps is None


def test_empty_file_is_the_defaults(tmp_path):
    assert _load(tmp_path, "# nothing\n").epochs == 30


@pytest.mark.parametrize("text, expected", [
    ("epochz: 3", "epochz: unknown key, did you mean 'epochs'?"),
    ("model:\n  inputwh: [1, 2]", "model.inputwh: unknown key, did you mean 'input_wh'?"),
    ("augment: {flip_probability: 0.5}", "augment.flip_probability: unknown key, did you mean 'flip_prob'?"),
    ("zzzz: 1", "zzzz: unknown key"),
])
def test_unknown_keys_suggest_the_closest(tmp_path, text, expected):
    assert _error(tmp_path, text).endswith(expected)


@pytest.mark.parametrize("text, expected", [
    ("lr: fast", "lr: expected a number, got the string 'fast'"),
    ("lr: .nan", "lr: expected a finite number, got nan"),
    ("batch_size: true", "batch_size: expected an integer, got the boolean true"),
    ("epochs: 2.5", "epochs: expected an integer, got the number 2.5"),
    ("epochs: '3'", "epochs: expected an integer, got the string '3'"),
    ("epochs:", "epochs: expected an integer, got nothing (null)"),
    ("val_flip: 1", "val_flip: expected true or false, got the number 1"),
    ("out_dir: 3", "out_dir: expected a string, got the number 3"),
    ("model: 3", "model: expected a mapping of settings, got the number 3"),
    ("model: {input_wh: [144]}", "model.input_wh: expected a list of 2 values, got a list of 1"),
    ("model: {input_wh: 144}", "model.input_wh: expected a list of 2 values, got the number 144"),
    ("model: {head_widths: [1, 2]}", "model.head_widths: expected a list of 3 values, got a list of 2"),
    ("model: {input_wh: [144.5, 192]}", "model.input_wh[0]: expected an integer, got the number 144.5"),
    ("augment: {truncation_range: [0.2, x]}", "augment.truncation_range[1]: expected a number, got the string 'x'"),
])
def test_wrong_types_name_the_field(tmp_path, text, expected):
    assert _error(tmp_path, text).endswith(expected)


def test_a_top_level_list_is_refused(tmp_path):
    assert _error(tmp_path, "- 1\n").endswith("expected a mapping of settings, got a list of 1")


@pytest.mark.parametrize("text, expected", [
    ("batch_size: 0", "batch_size: must be > 0, got 0"),
    ("epochs: -1", "epochs: must be > 0, got -1"),
    ("threads: 0", "threads: must be in [1, 1024], got 0"),
    ("lr: 0", "lr: must be > 0, got 0"),
    ("lr: -1e-3", "lr: must be > 0, got -0.001"),
    ("max_minutes: 0", "max_minutes: must be > 0, got 0"),
    ("warmup_steps: -1", "warmup_steps: must be >= 0, got -1"),
    ("num_workers: -2", "num_workers: must be in [0, 64], got -2"),
    ("num_workers: 100000", "num_workers: must be in [0, 64], got 100000"),
    ("model: {input_wh: [0, 192]}", "model.input_wh: must be > 0, got 0"),
    ("model: {head_widths: [128, -1, 64]}", "model.head_widths: must be > 0, got -1"),
    ("model: {sigma: 0.0}", "model.sigma: must be > 0, got 0"),
])
def test_sizes_and_rates_must_be_positive(tmp_path, text, expected):
    assert _error(tmp_path, text).endswith(expected)


@pytest.mark.parametrize("text, expected", [
    ("augment: {flip_prob: 1.5}", "augment.flip_prob: must be in [0, 1], got 1.5"),
    ("augment: {occluder_prob: -0.1}", "augment.occluder_prob: must be in [0, 1], got -0.1"),
    ("min_lr_ratio: 2", "min_lr_ratio: must be in [0, 1], got 2"),
    ("augment: {scale_range: 1.0}", "augment.scale_range: must be in [0, 1), got 1"),
    ("augment: {truncation_range: [0.5, 0.2]}",
     "augment.truncation_range: must be a range [low, high] with low <= high, got [0.5, 0.2]"),
    ("augment: {occluder_size: [0.0, 0.4]}", "augment.occluder_size: must be in (0, 1], got 0"),
])
def test_probabilities_and_ranges(tmp_path, text, expected):
    assert _error(tmp_path, text).endswith(expected)


@pytest.mark.parametrize("text, expected", [
    ("strategy: s4", "strategy: must be one of s1, s2, s3, got 's4'"),
    ("amp_dtype: fp8", "amp_dtype: must be one of bf16, fp16, got 'fp8'"),
    ("model: {visibility_classes: 4}", "model.visibility_classes: must be one of 2, 3, got 4"),
])
def test_enum_like_fields(tmp_path, text, expected):
    assert _error(tmp_path, text).endswith(expected)


def test_cli_train_prints_a_bad_config_as_one_line(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text("batch_size: 0\n")
    assert main(["train", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"posecal: error: {tmp_path / 'x.yaml'}: batch_size: must be > 0, got 0"


@pytest.mark.parametrize("argv, option, problem", [
    (["predict", "x.jpg", "--threads", "0"], "--threads", "must be in [1, 1024], got 0"),
    (["predict", "x.jpg", "--threads", "two"], "--threads", "expected an integer, got 'two'"),
    (["predict", "x.jpg", "--batch-size", "-4"], "--batch-size", "must be > 0, got -4"),
    (["predict", "x.jpg", "--every", "1.5"], "--every", "expected an integer, got '1.5'"),
    (["predict", "x.jpg", "--detector-threshold", "1.2"], "--detector-threshold", "must be in [0, 1], got 1.2"),
    (["predict", "x.jpg", "--nms-threshold", "nan"], "--nms-threshold", "expected a number, got 'nan'"),
    (["eval", "--annotations", "a.json", "--images", ".", "--out", "o", "--batch-size", "0"], "--batch-size",
     "must be > 0, got 0"),
    (["eval", "--annotations", "a.json", "--images", ".", "--out", "o", "--threads", "-1"], "--threads",
     "must be in [1, 1024], got -1"),
    (["train", "c.yaml", "--max-minutes", "-5"], "--max-minutes", "must be >= 0, got -5"),
    (["train", "c.yaml", "--max-minutes", "inf"], "--max-minutes", "expected a number, got 'inf'"),
])
def test_cli_numbers_are_usage_errors_naming_the_option(argv, option, problem, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"posecal: error: {argv[0]}: argument {option}: {problem}"), err


def test_cli_numbers_accept_good_values(monkeypatch):
    """Good values parse to numbers (the commands themselves are replaced: nothing runs)."""
    seen = {}
    monkeypatch.setattr("posecal.cli.commands.cmd_train", lambda args: seen.update(vars(args)))
    monkeypatch.setattr("posecal.cli.commands.cmd_predict", lambda args: seen.update(vars(args)))
    assert main(["train", "c.yaml", "--max-minutes", "1e-9"]) == 0
    assert seen["max_minutes"] == pytest.approx(1e-9)
    assert main(["train", "c.yaml", "--max-minutes", "0"]) == 0 and seen["max_minutes"] == 0   # 0: no limit
    assert main(["predict", "x.jpg", "--threads", "3", "--every", "2", "--detector-threshold", "0",
                 "--nms-threshold", "1"]) == 0
    assert (seen["threads"], seen["every"], seen["detector_threshold"], seen["nms_threshold"]) == (3, 2, 0.0, 1.0)
