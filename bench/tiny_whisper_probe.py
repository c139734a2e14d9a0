"""Measure the tiny Whisper preset: base build time, then CER/WER before and after LoRA on its Common Voice.

Run: `PYTHONPATH=. python -u bench/tiny_whisper_probe.py [--languages zh fr] [--epochs 8] [--threads 1]`.
"""

import argparse
import csv
import logging
import resource
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile
import soxr
import torch

from hw.tiny import commonvoice
from hw.tiny import whisper as tiny_whisper


def _clock() -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime


def _since(start: tuple[float, float]) -> str:
    wall, cpu = _clock()
    return f"{wall - start[0]:.1f} s wall, {cpu - start[1]:.1f} s CPU"


def _split(
    folder: Path, split: str, processor, language: str
) -> tuple[list[dict], list[np.ndarray], list[str]]:
    """Read a Common Voice split as the homework does: mp3 -> 16 kHz with soxr -> features."""
    with open(folder / f"{split}.tsv", encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle, delimiter="\t"))
    waveforms = []
    for record in records:
        audio, rate = soundfile.read(folder / "clips" / record["path"], dtype="float32")
        waveforms.append(soxr.resample(audio, rate, tiny_whisper.SAMPLE_RATE))
    texts = [record["sentence"] for record in records]
    return tiny_whisper.speech_examples(processor, waveforms, texts, language), waveforms, texts


def _error_rate(model, processor, waveforms: list[np.ndarray], references: list[str], language: str) -> float:
    """CER for Chinese, WER otherwise (jiwer refuses empty hypotheses: an empty one counts as `-`)."""
    hypotheses = [text or "-" for text in tiny_whisper.transcribe(model, processor, waveforms, language)]
    return (jiwer.cer if language == "zh" else jiwer.wer)(references, hypotheses)


def _studio_clips(language: str) -> tuple[list[np.ndarray], list[str]]:
    """64 held-out sentences in the pretraining voice: how well the base learned its own voice."""
    texts = tiny_whisper.sentences(language, 64, seed=7)
    voice = tiny_whisper.PRETRAINING_VOICE
    waveforms = [
        tiny_whisper.synthesize(text, language, voice, seed=10**7 + i) for i, text in enumerate(texts)
    ]
    return waveforms, texts


def _adapt(base: Path, folder: Path, language: str, options: argparse.Namespace) -> None:
    """Print the base's error on its own voice, then on the homework voice before and after LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    start = _clock()
    processor = WhisperProcessor.from_pretrained(base)
    train_rows, _, _ = _split(folder, "train", processor, language)
    _, test_waveforms, references = _split(folder, "test", processor, language)
    print(f"[{language}] read + features of {len(train_rows) + len(test_waveforms)} clips: {_since(start)}")
    model = WhisperForConditionalGeneration.from_pretrained(base)
    studio = _error_rate(model, processor, *_studio_clips(language), language)
    before = _error_rate(model, processor, test_waveforms, references, language)
    start = _clock()
    adapter = LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]
    )
    model = get_peft_model(model, adapter)
    with tempfile.TemporaryDirectory() as scratch:
        losses = tiny_whisper.train(model, train_rows, scratch, options.learning_rate, options.epochs)
    print(f"[{language}] LoRA training: {_since(start)}; losses {[round(loss, 2) for loss in losses]}")
    after = _error_rate(model, processor, test_waveforms, references, language)
    metric = "CER" if language == "zh" else "WER"
    print(f"[{language}] {metric} studio voice {studio:.3f}; homework voice {before:.3f} -> {after:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--languages", nargs="+", default=["zh", "fr"])
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--base", type=Path, default=None, help="a built base to reuse instead of building one"
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(options.threads)
    scratch = Path(tempfile.mkdtemp(prefix="tiny-whisper-probe-"))
    base = options.base
    if base is None:
        base = scratch / "base"
        start = _clock()
        tiny_whisper.build_model(base)
        print(f"base build: {_since(start)} -> {base}", flush=True)
    for language in options.languages:
        start = _clock()
        commonvoice.build(scratch / language, language)
        print(f"[{language}] Common Voice folder: {_since(start)}", flush=True)
        _adapt(base, scratch / language, language, options)


if __name__ == "__main__":
    main()
