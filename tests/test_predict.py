"""`hw predict` on finished tiny runs: the answers are the ones the run's own scoring gives, the run is only read,
and wrong input ends in one line."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from hw import runs
from hw.cli import app
from tests.invoking import invoke, one_line_error, runner


def _run(root: Path, homework: str, *options: str) -> Path:
    invoke(
        [
            homework,
            "--tiny",
            *options,
            "--output-dir",
            str(root / homework),
            "--reports-dir",
            str(root / "reports"),
        ]
    )
    return root / homework


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _predict(args: list[str]) -> str:
    """The standard output of a `hw predict` that succeeded (progress bars go to stderr)."""
    result = runner.invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def _json_lines(args: list[str]) -> list[dict]:
    return [json.loads(line) for line in _predict([*args, "--json"]).splitlines()]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predict")


@pytest.fixture(scope="module")
def yelp_run(root: Path) -> Path:
    return _run(root, "yelp", "--max-train-samples", "64", "--max-eval-samples", "16")


@pytest.fixture(scope="module")
def qa_run(root: Path) -> Path:
    return _run(root, "qa", "--max-train-samples", "200", "--max-eval-samples", "8")


@pytest.fixture(scope="module")
def tang_run(root: Path) -> Path:
    return _run(root, "tang")


@pytest.fixture(scope="module")
def whisper_run(root: Path) -> Path:
    return _run(root, "whisper", "--lang", "fr", "--max-train-samples", "16", "--max-eval-samples", "4")


@pytest.mark.slow
def test_yelp_classifies_as_the_run_scored_and_reads_a_file(yelp_run: Path, tmp_path: Path) -> None:
    before = _snapshot(yelp_run)
    samples = runs.read_jsonl(yelp_run / "samples.jsonl")[:3]
    lines = tmp_path / "reviews.txt"
    lines.write_text("\n".join(sample["text"] for sample in samples[1:]) + "\n\n", encoding="utf-8")
    results = _json_lines([str(yelp_run), samples[0]["text"], "--file", str(lines)])
    assert [result["input"] for result in results] == [sample["text"] for sample in samples]
    assert [result["label"] for result in results] == [sample["prediction"] for sample in samples]
    assert all(0 < result["score"] <= 1 for result in results)
    text = _predict([str(yelp_run), samples[0]["text"]])
    assert (
        text.splitlines()[-1]
        == f"{samples[0]['prediction']}\t{results[0]['score']:.3f}\t{samples[0]['text']}"
    )
    assert _snapshot(yelp_run) == before  # the run is only read


@pytest.mark.slow
def test_qa_answers_as_the_run_answered_its_validation_questions(qa_run: Path, tmp_path: Path) -> None:
    from hw.tiny.qa import questions

    answered = json.loads((qa_run / "eval_predictions.json").read_text())
    rows = [row for row in questions(400, "validation", seed=2) if row["id"] in answered][:2]
    for row in rows:
        result = _json_lines([str(qa_run), "--question", row["question"], "--context", row["context"]])
        assert [(item["question"], item["answer"]) for item in result] == [
            (row["question"], answered[row["id"]])
        ]
        assert 0 < result[0]["score"] <= 1
    context = tmp_path / "paragraph.txt"
    context.write_text(rows[0]["context"], encoding="utf-8")
    output = _predict([str(qa_run), "--question", rows[0]["question"], "--file", str(context)])
    assert output.splitlines()[-1].startswith(f"{rows[0]['question']}\t{answered[rows[0]['id']]}\t")


@pytest.mark.slow
def test_tang_continues_first_lines_with_the_run_decoding_or_the_flags(tang_run: Path) -> None:
    first = runs.read_jsonl(tang_run / "samples.jsonl")[0]["input"]
    [sampled] = _json_lines([str(tang_run), first])
    assert sampled["input"] == first and sampled["prediction"]
    # The run samples up to 128 new tokens; --greedy with 3 new tokens (a character or a space each) overrides it.
    [short] = _json_lines([str(tang_run), first, "--greedy", "--max-new-tokens", "3"])
    assert len(short["raw_output"]) <= 3 < len(sampled["raw_output"])
    assert _predict([str(tang_run), first]).splitlines()[-1] == first + sampled["prediction"]


@pytest.mark.slow
def test_whisper_transcribes_a_clip_as_the_run_did_and_long_media_in_windows(
    whisper_run: Path, tmp_path: Path
) -> None:
    import os

    from hw import audio

    sample = runs.read_jsonl(whisper_run / "samples.jsonl")[0]
    [clip] = Path(os.environ["HW_CACHE"]).rglob(sample["file"])
    [result] = _json_lines([str(whisper_run), str(clip)])
    assert result["text"] == sample["hypothesis"]  # one window: the run's own transcription
    # Three clips one after another (longer than the tiny model's 3 s window), as a video file.
    samples = np.concatenate([audio.load_16k_mono(clip)] * 3)
    long = tmp_path / "long.wav"
    soundfile.write(long, samples, audio.TARGET_RATE)
    [result] = _json_lines([str(whisper_run), str(long)])
    assert result["seconds"] == pytest.approx(len(samples) / audio.TARGET_RATE, abs=1e-3)
    assert len(result["text"]) > len(sample["hypothesis"])  # every window is transcribed, not only the first
    # The tiny model was never taught Whisper's timestamp tokens.
    assert one_line_error(["predict", str(whisper_run), str(long), "--timestamps"]) == (
        "this model predicts no timestamp tokens (it was fine-tuned without them); drop --timestamps"
    )


@pytest.mark.slow
def test_bad_input_is_one_line(yelp_run: Path, tmp_path: Path) -> None:
    assert "is not a run directory (no run.json)" in one_line_error(["predict", str(tmp_path), "hi"])
    assert one_line_error(["predict", str(yelp_run), "--question", "Who?"]).startswith(
        "a hw yelp run does not take --question; it takes sentences to classify"
    )
    assert "does not take --temperature" in one_line_error(
        ["predict", str(yelp_run), "hi", "--temperature", "0.5"]
    )
    assert one_line_error(["predict", str(yelp_run)]).startswith("nothing to predict: a hw yelp run takes")
    assert "cannot read --file" in one_line_error(
        ["predict", str(yelp_run), "--file", str(tmp_path / "none.txt")]
    )
    assert "media file not found" not in one_line_error(["predict", str(yelp_run), "--timestamps", "hi"])
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    manifest = json.loads((yelp_run / "run.json").read_text()) | {"status": "running"}
    (unfinished / "run.json").write_text(json.dumps(manifest))
    assert one_line_error(["predict", str(unfinished), "hi"]).startswith(
        f"run {str(unfinished)!r} is running"
    )
