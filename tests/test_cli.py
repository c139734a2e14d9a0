"""The command line: help is fast and complete; user errors are one line with exit code 2."""

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hw.cli import HOMEWORKS, app
from tests.invoking import one_line_error

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in [*HOMEWORKS, "report", "smoke"]:
        assert command in result.output


def test_homework_help_shows_shared_options_and_an_example() -> None:
    result = runner.invoke(app, ["yelp", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in (
        "--config",
        "--set",
        "--tiny",
        "--eval-only",
        "--checkpoint",
        "--output-dir",
        "--reports-dir",
        "--resume",
        "--max-train-samples",
        "--max-eval-samples",
        "--seed",
        "Example: hw yelp --tiny",
    ):
        assert option in result.output


def test_help_imports_no_machine_learning_library() -> None:
    code = "import sys; from hw.cli import app; assert not {'torch', 'transformers', 'datasets'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_local_model_path(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["yelp", "--tiny", "--set", "model.name_or_path=./no/such/model"])
    assert line == (
        "model.name_or_path: './no/such/model' does not exist; give a directory saved with save_pretrained"
    )


def test_unresolvable_hub_id_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["yelp", "--set", "model.name_or_path=nobody/no-such-model"])
    assert line.startswith("model 'nobody/no-such-model' could not be loaded from the Hugging Face Hub (")
    assert "hf download nobody/no-such-model --local-dir DIR" in line
    assert not (tmp_path / "reports").exists(), "a failed run writes no report"


def test_unresolvable_hub_dataset_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["yelp", "--tiny", "--set", "data.dataset=nobody/no-such-data"])
    assert line.startswith("dataset 'nobody/no-such-data' could not be loaded from the Hugging Face Hub (")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["yelp", "--variant", "nope"], "unknown variant 'nope' for hw yelp"),
        (
            ["yelp", "--max-train-samples", "lots"],
            "--max-train-samples must be a whole number or 'all', got 'lots'",
        ),
        (["yelp", "--config", "missing.yaml"], "config file not found: 'missing.yaml'"),
        (["yelp", "--tiny", "--checkpoint", "x"], "--checkpoint is only read with --eval-only"),
        (
            ["yelp", "--tiny", "--eval-only", "--checkpoint", "nowhere"],
            "--checkpoint 'nowhere' does not exist",
        ),
        (["yelp", "--resume"], "--resume: no earlier 'yelp' run under 'runs/yelp'"),
        (["yelp", "--set", "train.lerning_rate=1"], "did you mean train.learning_rate?"),
        (["smoke", "--homework", "cooking"], "--homework 'cooking' is not a homework"),
        (["report"], "no report fragments in 'reports/fragments'"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(args)


def test_finished_run_directory_is_never_overwritten(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    finished = tmp_path / "done"
    finished.mkdir()
    (finished / "metrics.json").write_text('{"final": {"accuracy": 0.9}}')
    line = one_line_error(["yelp", "--tiny", "--output-dir", str(finished)])
    assert "already holds a finished run" in line
    assert (finished / "metrics.json").read_text() == '{"final": {"accuracy": 0.9}}'


def _help_text(*command: str) -> str:
    """A command's help as plain words: rich's box and line wrapping removed."""
    output = runner.invoke(app, [*command, "--help"]).output
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def test_help_texts_show_the_run_directory_default_and_what_the_seed_seeds() -> None:
    assert "Run directory (default: runs/<homework>/<run>)." in _help_text("whisper")
    output = _help_text("whisper-dataset")
    assert "Seed of the train/test split of each medium." in output
    assert "model init" not in output


def test_max_train_samples_all_also_lifts_the_validation_cap() -> None:
    from hw import cli, config
    from hw.tasks.whisper import WhisperConfig

    overrides = cli._flag_overrides("all", "all", None, WhisperConfig)
    data = config.load(WhisperConfig, "whisper", "zh", overrides=overrides).data
    assert (data.max_train_samples, data.max_validation_samples, data.max_eval_samples) == (None, None, None)
    data = config.load(
        WhisperConfig, "whisper", "zh", overrides=cli._flag_overrides("64", None, None, WhisperConfig)
    ).data
    assert (data.max_train_samples, data.max_validation_samples, data.max_eval_samples) == (64, 320, 320)
    assert cli._flag_overrides("all", None, None, cli._schema("yelp")) == ["data.max_train_samples=null"]
