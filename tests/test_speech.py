"""Whisper plumbing: speech datasets from every source, clips to features, the collator, sorted transcription."""

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from hw import ctranslate2, models, speech, speech_sources
from hw.config import ModelConfig
from hw.errors import HwError
from hw.tiny import assets

CV_HEADER = [
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accent",
    "locale",
    "segment",
]


def _tone(seconds: float, rate: int) -> np.ndarray:
    time = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)


def write_commonvoice(folder: Path, splits: dict[str, list[tuple[str, str, float]]]) -> None:
    """A Common Voice-style folder: 48 kHz mp3 clips and unquoted TSVs with the release's columns."""
    (folder / "clips").mkdir(parents=True)
    for tsv, rows in splits.items():
        with (folder / tsv).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None)
            writer.writerow(CV_HEADER)
            for name, sentence, seconds in rows:
                clip = folder / "clips" / name
                soundfile.write(clip, _tone(seconds, 48000), 48000, format="MP3", subtype="MPEG_LAYER_III")
                writer.writerow(["speaker", name, sentence, 2, 0, "", "", "", "fr", ""])


# The files of `legacy-datasets/common_voice` at revision `refs/convert/parquet` (Common Voice 6.1): one folder
# per locale, the splits' shards named `common_voice-<split>[-NNNNN-of-NNNNN].parquet`, and besides train,
# validation and test the `other`, `invalidated` and `validated` splits a run must not read.
CV_EXPORT_SPLITS = ("train", "validation", "test", "other", "invalidated", "validated")


def write_commonvoice_parquet(
    root: Path, locale: str, shards: dict[str, list[tuple[str, np.ndarray]]]
) -> None:
    """The Hub's parquet export of Common Voice: `root/<locale>/common_voice-<shard>.parquet`, columns as the
    loading script declared them, `audio` a `{bytes, path}` struct of 48 kHz mp3 bytes.

    Args:
        shards: file name part (`train-00000-of-00002`, `test`) → (sentence, 16 kHz waveform) rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soxr

    (root / locale).mkdir(parents=True, exist_ok=True)
    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for shard, rows in shards.items():
        paths, clips = [], []
        for index, (_, waveform) in enumerate(rows):
            buffer = io.BytesIO()
            soundfile.write(buffer, soxr.resample(waveform, 16000, 48000), 48000, format="MP3")
            paths.append(f"common_voice_{locale}_{shard}_{index}.mp3")
            clips.append({"bytes": buffer.getvalue(), "path": paths[-1]})
        count = len(rows)
        table = {
            "client_id": ["speaker"] * count,
            "path": paths,
            "audio": pa.array(clips, audio_type),
            "sentence": [sentence for sentence, _ in rows],
            "up_votes": pa.array([2] * count, pa.int64()),
            "down_votes": pa.array([0] * count, pa.int64()),
            **{column: [""] * count for column in ("age", "gender", "accent")},
            "locale": [locale] * count,
            "segment": [""] * count,
        }
        pq.write_table(pa.table(table), root / locale / f"common_voice-{shard}.parquet")


def write_audiofolder(folder: Path, rows: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True)
    with (folder / "metadata.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcription"])
        for name, text in rows:
            soundfile.write(folder / name, _tone(0.5, 16000), 16000)
            writer.writerow([name, text])


def test_commonvoice_folder_loads_train_dev_test_with_clip_paths(tmp_path: Path) -> None:
    write_commonvoice(
        tmp_path / "cv",
        {
            "train.tsv": [("a.mp3", 'il a dit "oui', 1.0), ("b.mp3", "non, merci", 1.0)],
            "dev.tsv": [("c.mp3", "peut-être", 1.0)],
            "test.tsv": [("d.mp3", "élève", 1.0)],
        },
    )
    splits = speech_sources.load_speech_splits(str(tmp_path / "cv"))
    assert {name: len(split) for name, split in splits.items()} == {"train": 2, "validation": 1, "test": 1}
    assert splits["train"]["sentence"] == [
        'il a dit "oui',
        "non, merci",
    ]  # a lone quote survives: TSVs are unquoted
    assert splits["test"]["audio"] == [str(tmp_path / "cv" / "clips" / "d.mp3")]


def test_commonvoice_tsv_without_path_and_sentence_names_them(tmp_path: Path) -> None:
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "train.tsv").write_text("client_id\tfile\ttext\nx\ta.mp3\tbonjour\n", encoding="utf-8")
    with pytest.raises(
        HwError, match=r"train\.tsv lacks column\(s\) path, sentence \(it has: client_id, file, text\)"
    ):
        speech_sources.load_speech_splits(str(tmp_path / "cv"))


def test_commonvoice_parquet_export_reads_one_locale_train_validation_test(tmp_path: Path) -> None:
    rows = [("le chat", _tone(0.5, 16000)), ("la maison", _tone(0.25, 16000))]
    shards = {"train-00000-of-00002": rows, "train-00001-of-00002": rows[:1], "validation": rows[:1],
              "test": rows, "other": rows, "invalidated": rows[:1], "validated-00000-of-00001": rows}  # fmt: skip
    write_commonvoice_parquet(tmp_path / "cv", "fr", shards)
    write_commonvoice_parquet(tmp_path / "cv", "zh-CN", {"train": [("你好", _tone(0.5, 16000))] * 4})

    splits = speech_sources.load_speech_splits(str(tmp_path / "cv"), data_dir="fr")

    # both train shards, and none of other / invalidated / validated, nor another locale
    assert {name: len(split) for name, split in splits.items()} == {"train": 3, "validation": 1, "test": 2}
    assert splits["test"]["sentence"] == ["le chat", "la maison"]
    clip = splits["test"][1]["audio"]
    assert set(clip) == {"bytes", "path"} and clip["path"] == "common_voice_fr_test_1.mp3"
    assert abs(len(speech.load_clip(clip)) - 4000) < 1200  # 0.25 s at 16 kHz, give or take the mp3 padding


def test_a_missing_data_dir_names_the_key(tmp_path: Path) -> None:
    write_commonvoice_parquet(tmp_path / "cv", "fr", {"test": [("le chat", _tone(0.5, 16000))]})
    with pytest.raises(HwError, match=r"data\.data_dir: 'de' is not a folder of .*; set it to the subfolder"):
        speech_sources.load_speech_splits(str(tmp_path / "cv"), data_dir="de")


def test_an_unreachable_hub_dataset_says_how_to_download_its_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached from the tests: offline, as a user
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(HwError) as raised:
        speech_sources.load_speech_splits(
            "legacy-datasets/common_voice", None, "refs/convert/parquet", data_dir="fr"
        )
    assert str(raised.value).endswith(
        "use `hf download legacy-datasets/common_voice --repo-type dataset --revision refs/convert/parquet "
        "--include 'fr/*' --local-dir DIR` where the Hub is reachable, then --set data.dataset=DIR"
    )


def test_audiofolder_with_split_subfolders_and_a_comma_in_a_transcript(tmp_path: Path) -> None:
    write_audiofolder(tmp_path / "mine" / "train", [("x_0_10.wav", "你好，世界"), ("x_8_18.wav", "a, b")])
    write_audiofolder(tmp_path / "mine" / "test", [("x_16_20.wav", "再見")])
    splits = speech_sources.load_speech_splits(str(tmp_path / "mine"))
    assert splits["train"]["sentence"] == ["你好，世界", "a, b"]
    assert splits["test"]["audio"] == [str(tmp_path / "mine" / "test" / "x_16_20.wav")]


def test_audiofolder_with_one_metadata_file_is_a_train_split(tmp_path: Path) -> None:
    write_audiofolder(tmp_path / "flat", [("one.wav", "un")])
    assert list(speech_sources.load_speech_splits(str(tmp_path / "flat"))) == ["train"]


def test_saved_dataset_with_audio_feature_stays_undecoded(tmp_path: Path) -> None:
    import datasets

    buffer = io.BytesIO()
    soundfile.write(buffer, _tone(0.25, 8000), 8000, format="WAV")
    table = datasets.Dataset.from_dict(
        {"audio": [{"bytes": buffer.getvalue(), "path": "a.wav"}], "text": ["hé"]}
    )
    table = table.cast_column("audio", datasets.Audio(sampling_rate=8000))
    datasets.DatasetDict({"test": table}).save_to_disk(tmp_path / "saved")
    (split,) = speech_sources.load_speech_splits(str(tmp_path / "saved"), text_column="text").values()
    assert split.column_names == ["audio", "sentence"] and split[0]["sentence"] == "hé"
    samples = speech.load_clip(split[0]["audio"])
    assert (samples.dtype, len(samples)) == (np.float32, 4000)  # 0.25 s at 16 kHz, from 8 kHz bytes


def test_load_clip_names_undecodable_bytes() -> None:
    with pytest.raises(HwError, match=r"cannot decode audio broken\.mp3 \("):
        speech.load_clip({"bytes": b"not audio at all", "path": "broken.mp3"})


def test_collator_pads_with_minus_100_and_drops_the_start_token() -> None:
    collator = speech.SpeechCollator(decoder_start_token_id=7)
    features = np.zeros((2, 3), np.float32)
    batch = collator(
        [
            {"input_features": features, "labels": [7, 1, 2, 3]},
            {"input_features": features + 1, "labels": [7, 4]},
        ]
    )
    assert batch["labels"].tolist() == [[1, 2, 3], [4, -100, -100]]
    assert batch["input_features"].shape == (2, 2, 3) and batch["input_features"][1].sum() == 6


def test_collator_keeps_labels_that_do_not_all_start_with_the_start_token() -> None:
    batch = speech.SpeechCollator(7)(
        [{"input_features": [[0.0]], "labels": [7, 1]}, {"input_features": [[0.0]], "labels": [5]}]
    )
    assert batch["labels"].tolist() == [[7, 1], [5, -100]]


def test_duration_batches_put_the_longest_clips_first() -> None:
    assert speech.duration_batches([1.0, 5.0, 3.0, 4.0, 2.0], batch_size=2) == [[1, 3], [2, 4], [0]]


@pytest.fixture(scope="module")
def whisper_dir() -> str:
    return assets.materialize("tiny:whisper")


@pytest.mark.slow
def test_features_keep_skipped_clips_as_counted_rows(tmp_path: Path, whisper_dir: str) -> None:
    processor = speech.load_processor(whisper_dir, "fr")
    window = processor.feature_extractor.chunk_length
    soundfile.write(tmp_path / "ok.wav", _tone(1.0, 16000), 16000)
    soundfile.write(tmp_path / "long.wav", _tone(window + 0.5, 16000), 16000)
    (tmp_path / "corrupt.mp3").write_bytes(b"ID3" + bytes(200))
    batch = {
        "audio": [str(tmp_path / name) for name in ("ok.wav", "long.wav", "corrupt.mp3", "ok.wav")],
        "sentence": ["le chat", "la maison", "le père", "le " * 100],
    }
    rows = speech.speech_features(batch, processor, max_label_tokens=64)
    assert rows["skipped"] == ["", "too long", "undecodable", "transcript too long"]
    assert rows["file"] == ["ok.wav", "long.wav", "corrupt.mp3", "ok.wav"]
    assert rows["duration"] == [1.0, window + 0.5, 0.0, 1.0]
    shape = (processor.feature_extractor.feature_size, processor.feature_extractor.nb_max_frames)
    assert all(features.shape == shape for features in rows["input_features"])
    assert np.abs(rows["input_features"][0]).sum() > 0 and np.abs(rows["input_features"][1]).sum() == 0
    prefix = processor.tokenizer.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|fr|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    assert rows["labels"][0][:4] == prefix and rows["labels"][0][-1] == processor.tokenizer.eos_token_id


@pytest.mark.slow
def test_transcribe_returns_transcripts_in_input_order(whisper_dir: str) -> None:
    loaded = models.whisper(models.Weights(ModelConfig(whisper_dir), whisper_dir), "fr")
    processor, model = loaded.processor, loaded.model
    waveforms = [_tone(seconds, 16000) for seconds in (0.5, 2.0, 1.0)]
    one_by_one = [
        speech.transcribe(model, processor, [waveform], speech.Decoding("fr", max_new_tokens=8))[0]
        for waveform in waveforms
    ]
    together = speech.transcribe(
        model, processor, waveforms, speech.Decoding("fr", batch_size=2, max_new_tokens=8)
    )
    assert together == one_by_one
    assert not model.training


def test_on_a_cpu_the_encoder_takes_clips_by_the_byte_budget_and_transcripts_equal_a_batched_generate(
    whisper_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder sees as many clips at a time as keep one layer's attention scores within the budget (here
    three clips' worth), the decoder the whole batch; the transcripts are those of a plain `generate` that
    encodes the whole batch at once."""
    loaded = models.whisper(models.Weights(ModelConfig(whisper_dir), whisper_dir), "fr")
    processor, model = loaded.processor, loaded.model
    split = speech_sources.load_speech_splits(assets.materialize("tiny:commonvoice-fr"))["test"]
    waveforms = [speech.load_clip(clip) for clip in split.select(range(16))["audio"]]
    features = speech.log_mel(processor.feature_extractor, waveforms)
    with torch.inference_mode():
        batched = model.generate(
            input_features=torch.as_tensor(features), language="fr", task="transcribe", max_length=32
        )
    expected = [text.strip() for text in processor.tokenizer.batch_decode(batched, skip_special_tokens=True)]
    one_clip = model.config.encoder_attention_heads * model.config.max_source_positions**2 * 4
    monkeypatch.setattr(speech, "CPU_ENCODER_BYTES", 3 * one_clip + 1)
    encoded: list[int] = []
    hook = model.get_encoder().register_forward_hook(
        lambda module, args, output: encoded.append(len(args[0]))
    )
    try:
        decoding = speech.Decoding("fr", batch_size=16, max_new_tokens=32)
        transcripts = speech.transcribe(model, processor, waveforms, decoding)
    finally:
        hook.remove()
    assert transcripts == expected
    assert encoded == [3, 3, 3, 3, 3, 1]
    assert len(set(expected)) > 1


def test_a_real_whisper_window_is_encoded_one_clip_at_a_time_on_a_cpu() -> None:
    """whisper-base's 30 s window (8 heads over 1500 positions: 72 MB of scores a layer) is over the budget alone;
    the tiny model's 3 s window (4 heads over 150) fits dozens of clips."""
    from transformers import WhisperConfig

    assert speech._cpu_encoder_clips(WhisperConfig(encoder_attention_heads=8, max_source_positions=1500)) == 1
    assert speech._cpu_encoder_clips(WhisperConfig(encoder_attention_heads=4, max_source_positions=150)) == 46


@pytest.mark.slow
def test_ctranslate2_transcripts_equal_transformers_ones(
    tmp_path: Path, whisper_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same features, prefix, suppressed tokens and token limit: float32 CTranslate2, the CPU default, writes
    transformers' transcripts exactly (also when the limit cuts them), its two workers encoding clip by clip and
    decoding half a batch each, in parallel; int8 differs on a clip or two."""
    pytest.importorskip("ctranslate2")
    monkeypatch.setattr(speech, "CPU_ENCODER_BYTES", 1)  # one clip at a time, as a real Whisper's window is
    loaded = models.whisper(models.Weights(ModelConfig(whisper_dir), whisper_dir), "fr")
    split = speech_sources.load_speech_splits(assets.materialize("tiny:commonvoice-fr"))["test"]
    waveforms = [speech.load_clip(clip) for clip in split["audio"]]
    threads = torch.get_num_threads()
    # Two threads make two workers, each encoding and decoding its share in parallel (the suite runs one thread).
    torch.set_num_threads(2)
    try:
        exact = ctranslate2.whisper(loaded, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert exact.model.whisper.num_workers == 2
    assert exact.weights.endswith("converted to CTranslate2 float32")
    for limit in (3, 32):
        decoding = speech.Decoding("fr", batch_size=16, max_new_tokens=limit)
        expected = speech.transcribe(loaded.model, loaded.processor, waveforms, decoding)
        assert speech.transcribe(exact.model, exact.processor, waveforms, decoding) == expected
    assert len(expected[0].split()) > 3  # the longer limit lets transcripts run past the shorter one
    quantized = ctranslate2.whisper(loaded, tmp_path, "int8")
    int8 = speech.transcribe(quantized.model, quantized.processor, waveforms, decoding)
    assert sum(a == b for a, b in zip(int8, expected, strict=True)) >= 0.9 * len(expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ctranslate2-float32", "ctranslate2-int8"]


def test_ctranslate2_is_let_use_avx512_wherever_the_cpu_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CTranslate2 picks AVX2 on AMD CPUs that have AVX-512; `hw` sets CT2_FORCE_CPU_ISA there, unless the user
    set it, and never on a CPU without the AVX-512 subsets CTranslate2 needs."""
    cpuinfo = tmp_path / "cpuinfo"
    full = "fpu avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16"
    for flags, expected in ((full, "AVX512"), ("fpu avx2 avx512f", None), ("fpu sse4_1", None)):
        monkeypatch.delenv("CT2_FORCE_CPU_ISA", raising=False)
        cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n\n")
        ctranslate2._prefer_avx512(cpuinfo)
        assert os.environ.get("CT2_FORCE_CPU_ISA") == expected, flags
    monkeypatch.setenv("CT2_FORCE_CPU_ISA", "AVX2")
    cpuinfo.write_text(f"flags\t\t: {full}\n")
    ctranslate2._prefer_avx512(cpuinfo)
    assert os.environ["CT2_FORCE_CPU_ISA"] == "AVX2"


def test_features_wait_for_another_process_computing_the_same_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers of one `datasets` cache file could interleave: the second waits for the first's lock."""
    import threading

    import datasets
    import filelock

    from hw.tiny import whisper

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    soundfile.write(tmp_path / "ok.wav", _tone(1.0, 16000), 16000)
    split = datasets.Dataset.from_dict({"audio": [str(tmp_path / "ok.wav")] * 2, "sentence": ["le chat"] * 2})
    processor = whisper.build_processor()
    speech.cached_features(split, processor, max_label_tokens=64)
    (computed,) = (tmp_path / "cache" / "hw-speech").glob("features-*.arrow")
    computed.unlink()  # computed again below, while "another process" holds its lock
    results: list[int] = []
    with filelock.FileLock(computed.with_suffix(".lock")):
        waiting = threading.Thread(
            target=lambda: results.append(len(speech.cached_features(split, processor, max_label_tokens=64)))
        )
        waiting.start()
        waiting.join(timeout=2)
        assert results == [] and not computed.exists()
    waiting.join(timeout=60)
    assert results == [2] and computed.exists()


def test_a_damaged_features_cache_is_rebuilt_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache file cut short (a kill, a full disk) stopped every later run with `OSError: Expected to be able to
    read …` or `ArrowInvalid`."""
    import datasets

    from hw.tiny import whisper

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    soundfile.write(tmp_path / "ok.wav", _tone(1.0, 16000), 16000)
    split = datasets.Dataset.from_dict({"audio": [str(tmp_path / "ok.wav")] * 3, "sentence": ["le chat"] * 3})
    processor = whisper.build_processor()
    whole = speech.cached_features(split, processor, max_label_tokens=64)
    expected = [row["labels"] for row in whole]
    (cache_file,) = (tmp_path / "cache" / "hw-speech").glob("features-*.arrow")
    data = cache_file.read_bytes()
    for cut in (len(data) // 2, 100):  # in the features, then in the schema
        cache_file.write_bytes(data[:cut])
        caplog.clear()
        rebuilt = speech.cached_features(split, processor, max_label_tokens=64)
        assert [row["labels"] for row in rebuilt] == expected
        warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
        assert len(warnings) == 1 and f"rebuilding the damaged cache {cache_file}" in warnings[0]
        assert cache_file.stat().st_size == len(data)
    caplog.clear()
    speech.cached_features(split, processor, max_label_tokens=64)  # whole: read back without a word
    assert not [record for record in caplog.records if record.levelname == "WARNING"]
