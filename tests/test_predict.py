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


@pytest.fixture(scope="module")
def atc_run(root: Path) -> Path:
    """A tiny hw atc run, smaller than the preset: both fine-tunings, RAG, 8 clips per evaluation set."""
    sizes = ["data.max_train_samples=64", "data.max_validation_samples=8", "asr.validation_generate_samples=4",
             "data.max_eval_samples=8", "train.max_steps=16", "train.eval_steps=8",
             "corrector.train.num_train_epochs=1"]  # fmt: skip
    return _run(root, "atc", *(option for size in sizes for option in ("--set", size)))


def _atc_corrections(run_dir: Path, row: dict, system: str) -> dict[str, str]:
    """The answers the run's `correct` stage gave for one clip's transcript by the ASR `system`, per corrector."""
    return {
        correction["corrector"]: correction["answer"]
        for correction in runs.read_jsonl(run_dir / "stages" / "correct" / "corrections.jsonl")
        if (correction["set"], correction["index"], correction["asr"]) == (row["set"], row["index"], system)
    }


def _atc_clip(row: dict, folder: Path) -> Path:
    """The audio of a transcript row of a tiny atc run, as a wav file in `folder`."""
    import datasets

    from hw import tiny

    [clip] = [
        example["audio"]
        for example in datasets.load_from_disk(tiny.resolve(f"tiny:{row['set']}"))["test"]
        if example["audio"]["path"] == row["audio_id"]
    ]
    wav = folder / row["audio_id"]
    wav.write_bytes(clip["bytes"])
    return wav


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


@pytest.mark.slow
def test_atc_transcribes_and_corrects_audio_as_the_run_did(atc_run: Path, tmp_path: Path) -> None:
    before = _snapshot(atc_run)
    row = runs.read_jsonl(atc_run / "stages" / "transcribe" / "transcripts.jsonl")[0]
    wav = _atc_clip(row, tmp_path)
    [result] = _json_lines([str(atc_run), str(wav)])
    assert result["text"] == row["fine_tuned"]  # the run's fine-tuned ASR, not the base
    corrected = _atc_corrections(atc_run, row, "fine_tuned")
    assert set(corrected) == {"base", "rag", "fine_tuned"}
    assert result["corrected"] == corrected
    assert _predict([str(atc_run), str(wav)]).splitlines()[-4:] == [
        f"{wav}: {row['fine_tuned']}",
        *(f"  {name}: {text}" for name, text in corrected.items()),
    ]
    assert _snapshot(atc_run) == before  # the run is only read


@pytest.mark.slow
def test_atc_corrects_given_transcripts_as_the_run_did(atc_run: Path, tmp_path: Path) -> None:
    before = _snapshot(atc_run)
    transcripts = runs.read_jsonl(atc_run / "stages" / "transcribe" / "transcripts.jsonl")
    # Two that a text file keeps as they are (its lines are stripped, empty ones dropped).
    kept = [row for row in transcripts if row["zero_shot"] and row["zero_shot"].strip() == row["zero_shot"]]
    rows = kept[:2]
    lines = tmp_path / "transcripts.txt"
    lines.write_text(rows[1]["zero_shot"] + "\n", encoding="utf-8")
    results = _json_lines([str(atc_run), "--text", rows[0]["zero_shot"], "--file", str(lines)])
    assert [result["input"] for result in results] == [row["zero_shot"] for row in rows]
    assert [result["corrected"] for result in results] == [
        _atc_corrections(atc_run, row, "zero_shot") for row in rows
    ]
    assert "text" not in results[0]  # nothing was transcribed
    assert one_line_error(["predict", str(atc_run)]).startswith("nothing to predict: a hw atc run takes")
    assert one_line_error(["predict", str(atc_run), "--text", "x", "--timestamps"]).startswith(
        "a hw atc run does not take --timestamps"
    )
    assert one_line_error(["predict", str(atc_run), str(tmp_path / "none.wav")]).startswith(
        "media file not found"
    )
    assert _snapshot(atc_run) == before


@pytest.mark.slow
def test_atc_eval_only_run_without_corrector_transcribes_with_the_base(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    invoke(["atc", "--tiny", "--eval-only", "--set", "corrector=null", "--set", "data.max_eval_samples=4",
            "--output-dir", str(run_dir), "--reports-dir", str(tmp_path / "reports")])  # fmt: skip
    row = runs.read_jsonl(run_dir / "stages" / "transcribe" / "transcripts.jsonl")[0]
    [result] = _json_lines([str(run_dir), str(_atc_clip(row, tmp_path))])
    assert result["text"] == row["zero_shot"] and "corrected" not in result
    assert one_line_error(["predict", str(run_dir), "--text", "x"]).startswith(
        f"run {str(run_dir)!r} has no corrector (corrector: null)"
    )
