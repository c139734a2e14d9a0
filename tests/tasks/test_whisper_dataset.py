"""`hw whisper-dataset`: media → overlapping clips → pseudo-labels → audiofolder, re-runnable, failures logged."""

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from hw import runs, speech_sources
from hw.cli import app
from hw.errors import HwError
from hw.tasks.whisper import dataset as whisper_dataset
from hw.tasks.whisper import safeguards
from hw.tiny import assets
from tests.test_audio import _write_video

runner = CliRunner()
# 2 s clips every 1.5 s: windows fit the tiny model's 3 s encoder window.
OPTIONS = ["--model", "tiny:whisper", "--lang", "fr", "--segment-seconds", "2", "--overlap-seconds", "0.5",
           "--test-ratio", "0.34", "--seed", "1"]  # fmt: skip


def _build(media: list[Path], out: Path, *extra: str) -> str:
    result = runner.invoke(app, ["whisper-dataset", *map(str, media), "--out", str(out), *OPTIONS, *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def _metadata(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _log(out: Path) -> list[dict]:
    return runs.read_jsonl(out / "log.jsonl")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A 5 s video with a stereo PCM track and a 4 s wav of a pure tone, made into one audiofolder.

    The tiny Whisper's labels of the tone stay unlikely at every temperature: its clips go to rejected/.
    """
    media = tmp_path_factory.mktemp("media")
    _write_video(media / "talk.mkv", "pcm_s16le", seconds=5.0)
    time = np.arange(4 * 16000) / 16000
    soundfile.write(media / "voice.wav", (0.3 * np.sin(2 * np.pi * 300 * time)).astype(np.float32), 16000)
    out = tmp_path_factory.mktemp("dataset") / "mine"
    stdout = _build([media / "talk.mkv", media / "voice.wav"], out)
    return media, out, stdout


@pytest.mark.slow
def test_clips_are_cut_named_and_timed_as_specified(built: tuple[Path, Path, str]) -> None:
    _, out, stdout = built
    # 5 s → 0-2, 1.5-3.5, 3-5; 4 s → 0-2, 1.5-3.5, 3-4 (a window ends at the end of the signal).
    expected = {
        "talk_0_2.wav": 2.0, "talk_1.5_3.5.wav": 2.0, "talk_3_5.wav": 2.0,
        "voice_0_2.wav": 2.0, "voice_1.5_3.5.wav": 2.0, "voice_3_4.wav": 1.0,
    }  # fmt: skip
    written = {path.name: soundfile.info(path) for path in out.glob("*/*.wav")}
    assert set(written) == set(expected)
    assert {name: info.frames / info.samplerate for name, info in written.items()} == expected
    assert {(info.samplerate, info.channels) for info in written.values()} == {(16000, 1)}
    # round(3 × 0.34) = 1 clip of the video goes to test/; the tone's clips are rejected.
    train, test = _metadata(out / "train" / "metadata.csv"), _metadata(out / "test" / "metadata.csv")
    rejected = _metadata(out / "rejected" / "metadata.csv")
    assert (len(train), len(test)) == (2, 1)
    assert {row["file_name"] for row in rejected} == {name for name in expected if name.startswith("voice")}
    assert {row["file_name"] for row in train + test + rejected} == set(expected)
    assert all(
        (out / split / row["file_name"]).is_file()
        for split, rows in (("train", train), ("test", test), ("rejected", rejected))
        for row in rows
    )
    assert stdout.startswith(
        f"{out}: 2 media labelled (3 clips: 2 train, 1 test), 0 already done, 0 failed, "
        "3 clips rejected by Whisper's safeguards (rejected/)"
    )


@pytest.mark.slow
def test_the_log_records_each_medium_and_the_settings(built: tuple[Path, Path, str]) -> None:
    media, out, _ = built
    entries = _log(out)[:2]
    assert [entry["media"] for entry in entries] == [str(media / "talk.mkv"), str(media / "voice.wav")]
    assert [(entry["status"], entry["segments"], entry["seconds"]) for entry in entries] == [
        ("done", 3, 5.0),
        ("done", 0, 4.0),
    ]
    assert [sum(entry["rejected"].values()) for entry in entries] == [0, 3]
    assert entries[0]["model"] == "tiny:whisper" and entries[0]["segment_seconds"] == 2.0


@pytest.mark.slow
def test_hw_whisper_trains_on_the_result(built: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, out, _ = built
    splits = speech_sources.load_speech_splits(str(out))
    assert {name: len(split) for name, split in splits.items()} == {"train": 2, "test": 1}
    args = ["whisper", "--lang", "fr", "--tiny", "--set", f"data.dataset={out}", "--set", "train.num_train_epochs=1",
            "--output-dir", str(tmp_path / "run"), "--reports-dir", str(tmp_path / "reports")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["data"] == {"train": 2, "validation": 1, "eval": 1}


@pytest.mark.slow
def test_rerun_skips_done_media_and_logs_a_file_without_audio(built: tuple[Path, Path, str]) -> None:
    media, out, _ = built
    _write_video(media / "silent.mp4", None)
    before = (out / "train" / "metadata.csv").read_text(encoding="utf-8")
    stdout = _build([media / "talk.mkv", media / "silent.mp4", media / "voice.wav"], out)
    assert stdout.startswith(f"{out}: 0 media labelled (0 clips: 0 train, 0 test), 2 already done, 1 failed")
    assert (out / "train" / "metadata.csv").read_text(encoding="utf-8") == before
    failed = _log(out)[-1]
    assert (failed["media"], failed["status"]) == (str(media / "silent.mp4"), "failed")
    assert failed["error"].startswith("no audio track in ")


def test_rerun_skips_a_done_medium_whose_name_holds_a_unicode_line_break(tmp_path: Path) -> None:
    # The log keeps U+2028 raw (ensure_ascii=False); splitting it there broke the entry in two.
    medium = tmp_path / "interview\u2028part 2.wav"
    soundfile.write(medium, np.zeros(16000, np.float32), 16000)
    (tmp_path / "out").mkdir()
    whisper_dataset._append_log(
        tmp_path / "out" / "log.jsonl", {"media": str(medium.resolve()), "status": "done"}
    )
    counts = whisper_dataset.build([medium], tmp_path / "out", whisper_dataset.DatasetOptions())
    assert (counts["already_done"], counts["processed"]) == (1, 0)


@pytest.mark.slow
def test_labels_convert_with_opencc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    soundfile.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    label = safeguards.Label("们说这个国", 0.0, 1.0, -0.1, 0.0)
    monkeypatch.setattr(whisper_dataset, "_labels", lambda model, processor, waveforms, options: [label])
    _build([tmp_path / "a.wav"], tmp_path / "out", "--test-ratio", "0", "--opencc", "s2twp")
    assert _metadata(tmp_path / "out" / "train" / "metadata.csv") == [
        {"file_name": "a_0_1.wav", "transcription": "們說這個國"}
    ]


def test_metadata_quotes_commas_quotes_and_newlines(tmp_path: Path) -> None:
    metadata = tmp_path / "train" / "metadata.csv"
    rows = [("a_0_10.wav", 'il dit : "oui, non"'), ("a_8_18.wav", "deux\nlignes")]
    whisper_dataset._append_metadata(metadata, rows)
    whisper_dataset._append_metadata(metadata, rows[1:])  # already listed: not written twice
    assert [(row["file_name"], row["transcription"]) for row in _metadata(metadata)] == rows


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test-ratio", "1.5"], "--test-ratio 1.5 is outside [0, 1); e.g. 0.33 puts a third in test/"),
        pytest.param(
            ["--segment-seconds", "5"],
            "--segment-seconds 5 is longer than the 3 s window of tiny:whisper; use at most 3",
            marks=pytest.mark.slow,  # reads the window from the tiny Whisper, which is pretrained first
        ),
        (["--opencc", "x2y"], "--opencc 'x2y' is not an OpenCC conversion; allowed: t2s, s2t, s2tw, s2twp"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    soundfile.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    result = runner.invoke(
        app, ["whisper-dataset", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o"), *OPTIONS, *extra]
    )
    assert result.exit_code == 2 and result.stderr.startswith(f"hw: error: {message}"), result.stderr


def test_two_media_with_one_name_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        soundfile.write(tmp_path / folder / "talk.wav", np.zeros(16000, np.float32), 16000)
    result = runner.invoke(app, ["whisper-dataset", str(tmp_path / "a" / "talk.wav"),
                                 str(tmp_path / "b" / "talk.wav"), "--out", str(tmp_path / "o"), *OPTIONS])  # fmt: skip
    assert result.exit_code == 2 and result.stderr == (
        f"hw: error: {tmp_path / 'b' / 'talk.wav'} and {tmp_path / 'a' / 'talk.wav'} share the name 'talk', and "
        "clips are named after it (talk_START_END.wav): rename one of them, or build into another --out\n"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_medium_named_like_one_already_built_is_refused(
    built: tuple[Path, Path, str], tmp_path: Path
) -> None:
    media, out, _ = built
    soundfile.write(tmp_path / "voice.wav", np.zeros(16000, np.float32), 16000)
    before = (out / "log.jsonl").read_text(encoding="utf-8")
    result = runner.invoke(app, ["whisper-dataset", str(tmp_path / "voice.wav"), "--out", str(out), *OPTIONS])
    assert result.exit_code == 2 and f"and {media / 'voice.wav'} share the name 'voice'" in result.stderr
    assert (out / "log.jsonl").read_text(encoding="utf-8") == before


def test_whisper_s_thresholds_decide_fallback_and_rejection() -> None:
    def label(ratio: float, logprob: float, no_speech: float) -> safeguards.Label:
        return safeguards.Label("x", 0.0, ratio, logprob, no_speech)

    assert safeguards.compression_ratio("de la même chose. " * 12) > safeguards.COMPRESSION_RATIO_THRESHOLD
    assert safeguards.compression_ratio("La parole est à Madame Valérie Rabault.") < 1.5
    assert (label(1.2, -0.5, 0.1).needs_fallback, label(1.2, -0.5, 0.1).rejection) == (False, None)
    assert (label(3.0, -0.5, 0.1).needs_fallback, label(3.0, -0.5, 0.1).rejection) == (True, "repetitive")
    assert (label(1.2, -1.5, 0.1).needs_fallback, label(1.2, -1.5, 0.1).rejection) == (True, "unlikely")
    # Unlikely because silent: no fallback, and the window is marked as no speech.
    assert (label(1.2, -1.5, 0.9).needs_fallback, label(1.2, -1.5, 0.9).rejection) == (False, "no speech")
    # A confident transcript is kept whatever the no-speech probability says (openai-whisper's rule).
    assert label(1.2, -0.5, 0.9).rejection is None


@pytest.fixture(scope="module")
def looping_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Whisper with its decoder's last layer norm fixed to one token's embedding: it repeats that token."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    base = assets.materialize("tiny:whisper")
    model = WhisperForConditionalGeneration.from_pretrained(base)
    embeddings = model.get_output_embeddings().weight.detach()
    token = WhisperProcessor.from_pretrained(base).tokenizer.convert_tokens_to_ids("a")
    assert int((embeddings @ embeddings[token]).argmax()) == token  # the fixed output's best token is itself
    with torch.no_grad():
        model.model.decoder.layer_norm.weight.zero_()
        model.model.decoder.layer_norm.bias.copy_(50 * embeddings[token])
    target = tmp_path_factory.mktemp("looping") / "whisper"
    model.save_pretrained(target)
    WhisperProcessor.from_pretrained(base).save_pretrained(target)
    return target


@pytest.mark.slow
def test_a_looping_label_falls_back_through_every_temperature_then_is_rejected(
    looping_whisper: Path, tmp_path: Path
) -> None:
    time = np.arange(4 * 16000) / 16000
    soundfile.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 300 * time)).astype(np.float32), 16000)
    out = tmp_path / "out"
    options = [option if option != "tiny:whisper" else str(looping_whisper) for option in OPTIONS]
    result = runner.invoke(app, ["whisper-dataset", str(tmp_path / "a.wav"), "--out", str(out), *options])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (
        "0 media labelled" not in result.stdout
        and "3 clips rejected by Whisper's safeguards" in result.stdout
    )
    entry = _log(out)[-1]
    assert (entry["segments"], entry["rejected"], entry["fallbacks"]) == (
        0,
        {"no speech": 0, "repetitive": 3, "unlikely": 0},
        3,
    )
    rejected = _metadata(out / "rejected" / "metadata.csv")
    assert [row["rejection"] for row in rejected] == ["repetitive"] * 3
    # The last try, sampled at temperature 1.0, is kept for inspection: still mostly the one token.
    assert all(row["transcription"].count("a") > len(row["transcription"]) / 2 for row in rejected)
    assert not (out / "train").exists() and not (out / "test").exists()


def test_a_medium_labelled_with_other_settings_is_one_line_not_a_silent_skip(tmp_path: Path) -> None:
    medium = tmp_path / "talk.wav"
    soundfile.write(medium, np.zeros(16000, np.float32), 16000)
    (tmp_path / "out").mkdir()
    earlier = {**asdict(whisper_dataset.DatasetOptions(language="fr")), "media": str(medium.resolve())}
    whisper_dataset._append_log(tmp_path / "out" / "log.jsonl", {**earlier, "status": "done"})
    with pytest.raises(HwError) as error:
        whisper_dataset.build([medium], tmp_path / "out", whisper_dataset.DatasetOptions(language="zh"))
    assert str(error.value) == (
        f"{medium} was already labelled in {tmp_path / 'out'} with other settings: language 'fr' (now 'zh'); "
        "build into another --out, or remove its entry from log.jsonl to label it again"
    )
    same = whisper_dataset.build([medium], tmp_path / "out", whisper_dataset.DatasetOptions(language="fr"))
    assert (same["already_done"], same["processed"]) == (1, 0)
