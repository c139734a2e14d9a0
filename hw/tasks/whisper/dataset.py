"""`hw whisper-dataset`: one's own recordings and videos → overlapping 16 kHz clips, pseudo-labelled by Whisper, as
an audiofolder that `hw whisper --set data.dataset=DIR` trains on."""

import csv
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw import audio, models, runs, speech
from hw.config import ModelConfig
from hw.errors import HwError
from hw.metrics import asr
from hw.tasks.whisper import download, safeguards
from hw.tiny import assets

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
# Windows whose label fails Whisper's safeguards: kept for inspection, in a folder no split is read from.
REJECTED = "rejected"
# The options that change a medium's clips or labels: a medium done with others is not silently skipped.
LABEL_SETTINGS = (
    "model",
    "revision",
    "language",
    "segment_seconds",
    "overlap_seconds",
    "max_new_tokens",
    "opencc",
)


@dataclass(frozen=True)
class DatasetOptions:
    """How media become labelled clips."""

    model: str = "ADT109119/whisper-small-zh-TW"
    """Whisper that writes the pseudo-labels: Hub id, local directory or `tiny:NAME`."""
    language: str = "zh"
    """Whisper language code of the speech."""
    segment_seconds: float = 10.0
    """Length of each clip; at most the model's window (30 s for Whisper)."""
    overlap_seconds: float = 2.0
    """Seconds shared by consecutive clips: one starts every `segment_seconds - overlap_seconds`."""
    test_ratio: float = 0.33
    """Share of each medium's clips that go to test/ (the homework: 68 of 207)."""
    seed: int = 42
    """Seed of the train/test assignment (with the medium's name, so re-runs assign the same way)."""
    batch_size: int = 16
    """Clips per `generate` call."""
    max_new_tokens: int = 225
    """Tokens generated at most per clip (the homework's generation_max_length)."""
    opencc: str | None = None
    """OpenCC conversion applied to the labels (`s2twp`: Traditional with Taiwan phrasing); None keeps them."""
    revision: str = "main"
    """Hub revision of the model."""


def build(inputs: list[str | Path], out: Path, options: DatasetOptions) -> dict[str, int]:
    """Cut, label and file every medium not yet in `out/log.jsonl`, files or URLs (downloaded once, with yt-dlp);
    a medium or URL that fails is logged and skipped.

    Windows whose label still fails Whisper's safeguards after the temperature fallback are left out and counted.

    Returns:
        Counts: `processed`, `already_done`, `failed`, `segments`, `train`, `test`, `rejected`.
    """
    urls = [str(item) for item in inputs if download.is_url(str(item))]
    media = [Path(item) for item in inputs if not download.is_url(str(item))]
    check(media, options)
    fetched, downloads = (
        download.fetch(urls, out / LOG_NAME, download.downloads_folder(out)) if urls else ([], [])
    )
    for entry in downloads:
        _append_log(out / LOG_NAME, {**entry, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    failed_urls = [entry["error"] for entry in downloads if entry["status"] == "failed"]
    media += fetched
    if failed_urls and not media:
        raise HwError(f"none of the {len(failed_urls)} URLs could be downloaded (first: {failed_urls[0]})")
    done = _done(out / LOG_NAME)
    _check_settings(media, out, done, options)
    pending = [path for path in media if _key(path) not in done]
    _check_names(pending, done)
    out.mkdir(parents=True, exist_ok=True)
    counts = {
        "processed": 0,
        "already_done": len(media) - len(pending),
        "failed": len(failed_urls),
        "segments": 0,
        "train": 0,
        "test": 0,
        "rejected": 0,
    }
    for path in media:
        if path not in pending:
            log.info("already processed, skipped: %s", path)
    if not pending:
        return counts
    assets.materialize(options.model)  # a `tiny:` model is built once, after every check of the input
    weights = models.resolve(ModelConfig(options.model, options.revision), key="--model")
    processor = models.whisper_processor(weights, options.language)
    window = processor.feature_extractor.chunk_length
    if options.segment_seconds > window:
        raise HwError(
            f"--segment-seconds {options.segment_seconds:g} is longer than the {window} s window of {options.model}; "
            f"use at most {window}"
        )
    model = models.whisper(weights, options.language).model
    errors = []
    for path in pending:
        try:
            entry = _label_medium(path, out, processor, model, options)
        except HwError as error:
            log.warning("skipped %s: %s", path, error)
            entry = {"media": _key(path), "status": "failed", "error": str(error)}
            errors.append(str(error))
        _append_log(out / LOG_NAME, {**entry, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        counts["failed" if entry["status"] == "failed" else "processed"] += 1
        for name in ("segments", "train", "test"):
            counts[name] += entry.get(name, 0)
        counts["rejected"] += sum(entry.get("rejected", {}).values())
    if errors and not counts["processed"] and not counts["already_done"]:
        raise HwError(
            f"none of the {len(errors)} media could be labelled (first: {errors[0]}); fix or re-encode them"
        )
    return counts


def check(media: list[Path], options: DatasetOptions) -> None:
    """Fail before any model loads (or any folder is created) on media or settings a user got wrong."""
    missing = [path for path in media if not path.is_file()]
    if missing:
        raise HwError(f"media file not found: {missing[0]}; check the path")
    languages = speech.whisper_languages()
    if options.language not in languages and options.language not in languages.values():
        raise HwError(
            f"--lang {options.language!r} is not a Whisper language; e.g. {', '.join(list(languages)[:6])} "
            "(a code, or its name such as chinese)"
        )
    # `segments` checks its own arguments when first iterated.
    next(
        audio.segments(
            np.zeros(1, np.float32), audio.TARGET_RATE, options.segment_seconds, options.overlap_seconds
        )
    )
    if not 0 <= options.test_ratio < 1:
        raise HwError(
            f"--test-ratio {options.test_ratio:g} is outside [0, 1); e.g. 0.33 puts a third in test/"
        )
    if options.opencc is not None and options.opencc not in asr.ZH_CONVERSIONS:
        raise HwError(
            f"--opencc {options.opencc!r} is not an OpenCC conversion; allowed: {', '.join(asr.ZH_CONVERSIONS)}"
        )


def _check_settings(media: list[Path], out: Path, done: dict[str, dict], options: DatasetOptions) -> None:
    """A medium labelled earlier with other settings would be skipped, keeping labels this run did not ask for."""
    wanted = asdict(options)
    for path in media:
        earlier = done.get(_key(path), {})
        changed = [name for name in LABEL_SETTINGS if name in earlier and earlier[name] != wanted[name]]
        if changed:
            settings = ", ".join(f"{name} {earlier[name]!r} (now {wanted[name]!r})" for name in changed)
            raise HwError(
                f"{path} was already labelled in {out} with other settings: {settings}; "
                "build into another --out, or remove its entry from log.jsonl to label it again"
            )


def _check_names(pending: list[Path], done: dict[str, dict[str, Any]]) -> None:
    """Clips are named after their medium's file name: two media sharing one would overwrite each other's clips."""
    owners: dict[str, str] = {Path(key).stem: key for key in done}
    for path in pending:
        other = owners.setdefault(path.stem, _key(path))
        if other != _key(path):
            raise HwError(
                f"{path} and {other} share the name {path.stem!r}, and clips are named after it "
                f"({path.stem}_START_END.wav): rename one of them, or build into another --out"
            )


def _key(path: Path) -> str:
    return str(path.expanduser().resolve())


def _done(log_path: Path) -> dict[str, dict[str, Any]]:
    """Media already labelled, by resolved path, with their log entries (the settings they were labelled with)."""
    if not log_path.is_file():
        return {}
    return {entry["media"]: entry for entry in runs.read_jsonl(log_path) if entry.get("status") == "done"}


def _append_log(log_path: Path, entry: dict[str, Any]) -> None:
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _label_medium(
    path: Path, out: Path, processor: Any, model: Any, options: DatasetOptions
) -> dict[str, Any]:
    """Extract, cut, transcribe and file one medium; its log entry."""
    samples = audio.extract_audio(path)
    windows = list(
        audio.segments(samples, audio.TARGET_RATE, options.segment_seconds, options.overlap_seconds)
    )
    labels = _labels(model, processor, [waveform for _, _, waveform in windows], options)
    texts = [label.text for label in labels]
    if options.opencc:
        import opencc

        converter = opencc.OpenCC(options.opencc)
        texts = [converter.convert(text) for text in texts]
    test = _test_indices(len(windows), path.stem, options)
    rows: dict[str, list[tuple[str, ...]]] = {"train": [], "test": [], REJECTED: []}
    rejected = dict.fromkeys(safeguards.REJECTIONS, 0)
    for index, ((start, end, waveform), text, label) in enumerate(zip(windows, texts, labels, strict=True)):
        name = audio.segment_name(path.stem, start, end)
        split = REJECTED if label.rejection else "test" if index in test else "train"
        audio.write_wav(out / split / name, waveform, audio.TARGET_RATE)
        if label.rejection:
            log.info("%s → %s/ (%s): %r", name, REJECTED, label.rejection, label.text[:80])
            rejected[label.rejection] += 1
            rows[split].append((name, text, label.rejection))
        else:
            rows[split].append((name, text))
    for split, split_rows in rows.items():
        _append_metadata(out / split / "metadata.csv", split_rows)
    log.info(
        "%s: %d clips (%d train, %d test), %d rejected by Whisper's safeguards (%s/)",
        path,
        len(rows["train"]) + len(rows["test"]),
        len(rows["train"]),
        len(rows["test"]),
        sum(rejected.values()),
        REJECTED,
    )
    return {
        "media": _key(path),
        "status": "done",
        "seconds": round(len(samples) / audio.TARGET_RATE, 3),
        "segments": len(rows["train"]) + len(rows["test"]),
        "train": len(rows["train"]),
        "test": len(rows["test"]),
        "rejected": rejected,
        "fallbacks": sum(label.temperature > 0 for label in labels),
        **asdict(options),
    }


def _labels(model: Any, processor: Any, waveforms: list[np.ndarray], options: DatasetOptions) -> list:
    """Whisper's safeguarded labels of the windows, in batches; seeded, so a re-run samples the same fallbacks."""
    torch.manual_seed(options.seed)
    labels = []
    for start in range(0, len(waveforms), options.batch_size):
        features = speech.log_mel(processor.feature_extractor, waveforms[start : start + options.batch_size])
        labels += safeguards.transcribe(model, processor, features, options.language, options.max_new_tokens)
    return labels


def _test_indices(count: int, stem: str, options: DatasetOptions) -> set[int]:
    """round(count × test_ratio) clips of one medium, drawn with a seed and the medium's name."""
    order = list(range(count))
    random.Random(f"{options.seed}:{stem}").shuffle(order)
    return set(order[: round(count * options.test_ratio)])


def _append_metadata(metadata: Path, rows: list[tuple[str, ...]]) -> None:
    """Add rows to an audiofolder's metadata.csv (`file_name,transcription[,rejection]`), quoted by the csv module.

    Rows whose clip is already listed (a run interrupted after writing them) are not written twice.
    """
    if not rows:
        return
    existing = set()
    if metadata.is_file():
        with metadata.open(newline="", encoding="utf-8") as handle:
            existing = {row["file_name"] for row in csv.DictReader(handle)}
    metadata.parent.mkdir(parents=True, exist_ok=True)
    new_file = not metadata.is_file()
    with metadata.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["file_name", "transcription", "rejection"][: len(rows[0])])
        writer.writerows(row for row in rows if row[0] not in existing)
