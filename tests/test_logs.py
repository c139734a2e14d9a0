"""What a user reads while `hw` runs: each line once, no library warning repeated, no terminal escapes in
run.log, load reports in one line, a running count while generating, and an unreachable Hub found at once."""

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hw.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
ESCAPE = "\x1b"
PROGRESS_BAR = re.compile(r"\d+%\||it/s|s/it|examples/s|\x1b\[A")  # tqdm, nested bars too
TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")


def _run(args: list[str]) -> tuple[list[str], str]:
    """Run `hw ARGS`; return the console's lines other than progress bars, and its run.log."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    output = args[args.index("--output-dir") + 1]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    return lines, (Path(output) / "run.log").read_text(encoding="utf-8")


def _assert_quiet(console: list[str], run_log: str) -> None:
    """No line shown more than twice, every log record shown once, no escape in run.log, no LOAD REPORT table."""
    shown = collections.Counter(TIMESTAMP.sub("", line) for line in console)
    assert max(shown.values()) <= 2, shown.most_common(3)
    records = [line for line in console if TIMESTAMP.match(line)]
    assert len(records) == len(set(records)), "a record went out through two handlers"
    assert ESCAPE not in run_log
    for noise in ("LOAD REPORT", "Warning", "warnings.warn", "Both `max_new_tokens`"):
        assert noise not in "\n".join(console) + run_log, noise


def test_a_lora_run_logs_its_new_head_in_one_line_and_no_library_warning(tmp_path: Path) -> None:
    console, run_log = _run(["yelp", "--tiny", "--variant", "imdb-lora", "--output-dir", str(tmp_path / "run"),
                             "--reports-dir", str(tmp_path / "reports"), "--max-train-samples", "64"])  # fmt: skip
    _assert_quiet(console, run_log)
    (report,) = [line for line in console if "DistilBertForSequenceClassification loaded from" in line]
    assert report.endswith(
        "MISSING (newly initialised): classifier.bias, classifier.weight, pre_classifier.bias, pre_classifier.weight"
    )
    assert report.split(" ", 1)[1] in run_log


@pytest.mark.slow
def test_transcribing_counts_its_batches_and_warns_nothing(tmp_path: Path) -> None:
    console, run_log = _run(["whisper", "--tiny", "--lang", "fr", "--eval-only", "--set", "eval.batch_size=16",
                             "--output-dir", str(tmp_path / "run"), "--reports-dir", str(tmp_path / "reports")])  # fmt: skip
    _assert_quiet(console, run_log)
    assert re.search(r"transcribed batch 4/4, 64/64 clips", run_log), run_log


def test_a_tiny_asset_build_says_what_it_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "HW_CACHE", str(tmp_path / "cache")
    )  # a cold cache: the yelp data is built in this run
    console, run_log = _run(["yelp", "--tiny", "--eval-only", "--output-dir", str(tmp_path / "run"),
                             "--reports-dir", str(tmp_path / "reports")])  # fmt: skip
    assert re.search(r"building the tiny asset yelp-v\d+ in .*\(once per machine\)", run_log), run_log
    assert re.search(r"built yelp-v\d+ in \d+ s", run_log)
    _assert_quiet(console, run_log)


def test_an_unreachable_hub_is_one_line_within_seconds(tmp_path: Path) -> None:
    """The Hub at a closed local port: the same whether or not this machine has a network."""
    script = (
        "import json, time, hw.tasks.yelp, hw.training\n"  # imported first: only the run itself is timed
        "from tests.invoking import app, runner\n"
        "started = time.perf_counter()\n"
        "result = runner.invoke(app, ['yelp', '--output-dir', 'run'])\n"
        "seconds = time.perf_counter() - started\n"
        "print(json.dumps({'code': result.exit_code, 'stderr': result.stderr, 'seconds': seconds}))\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stderr = result["stderr"]
    assert result["code"] == 2, stderr
    assert (
        stderr.rstrip()
        .splitlines()[-1]
        .startswith("hw: error: model 'bert-base-cased' could not be loaded from the Hugging Face Hub")
    ), stderr
    assert result["seconds"] < 15, f"{result['seconds']:.1f} s to fail"  # five retries with back-off took 30
    assert "Retrying" not in stderr + done.stderr
    assert stderr.count("working offline") == 1, stderr  # one handler, one line
