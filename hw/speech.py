"""Whisper plumbing shared by the speech homeworks: processor and prefix tokens, clips to features, collator,
fine-tuning and batched transcription sorted by duration (weights load in `hw.models`)."""

import io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import soundfile
import torch

from hw import audio, generation, runs, sources
from hw.config import TrainConfig
from hw.errors import HwError
from hw.training import build_trainer, train

log = logging.getLogger(__name__)

# On a CPU the encoder takes as many clips at a time as keep one layer's attention scores within this: batched
# beyond it, a batch's activations no longer stay in cache and every clip takes longer. A real Whisper's 30 s
# window makes that one clip (whisper-base: 72 MB of scores; 0.45 s a clip alone against 0.57 s in batches of 16,
# CTranslate2 0.38 against 0.54, on 2 cores), the tiny one's 3 s window dozens (0.36 MB a clip; at 1 a clip its
# encoder took twice as long as at 8 to 64). The decoder keeps the whole batch.
CPU_ENCODER_BYTES = 16 * 2**20

# Reasons a clip is left out of the features, in the order the report counts them.
SKIP_REASONS = ("undecodable", "too long", "transcript too long")


def whisper_languages() -> dict[str, str]:
    """Whisper's language codes and names (`zh` → `chinese`), in the order of its language tokens."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return dict(LANGUAGES)


def load_processor(source: str, language: str, task: str = "transcribe", revision: str = "main") -> Any:
    """A `WhisperProcessor` whose tokenizer writes `<|startoftranscript|><|lang|><|task|><|notimestamps|>` first."""
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(source, revision=revision)
    processor.tokenizer.set_prefix_tokens(language=language, task=task)
    return processor


def set_language(model: Any, language: str, task: str = "transcribe") -> None:
    """Fix language and task in the generation config; the older `forced_decoder_ids` would override them."""
    model.generation_config.language = language
    model.generation_config.task = task
    model.generation_config.forced_decoder_ids = None
    model.config.forced_decoder_ids = None


def load_clip(clip: str | dict) -> np.ndarray:
    """16 kHz mono samples of a clip given as a file path or as `datasets`' undecoded `{"bytes", "path"}`.

    Raises:
        HwError: missing or undecodable file or bytes.
    """
    if isinstance(clip, dict) and clip.get("bytes"):
        try:
            samples, rate = soundfile.read(io.BytesIO(clip["bytes"]), dtype="float32", always_2d=True)
        except soundfile.LibsndfileError as error:
            raise HwError(
                f"cannot decode audio {clip.get('path') or '(embedded bytes)'} ({error.error_string.rstrip('.')})"
            ) from None
        return audio.resample(samples.mean(axis=1, dtype=np.float32), rate)
    return audio.load_16k_mono(clip["path"] if isinstance(clip, dict) else clip)


def clip_name(clip: str | dict) -> str:
    """The file name of a clip, for logs and samples."""
    path = clip.get("path") if isinstance(clip, dict) else clip
    return Path(path).name if path else "(embedded bytes)"


def log_mel(extractor: Any, waveforms: Sequence[np.ndarray]) -> np.ndarray:
    """Whisper's log-mel features of 16 kHz waveforms, shape (clips, mel bins, frames).

    One clip at a time: on a CPU, one batched STFT of 30 s windows runs about 3× slower than the same clips
    one by one, its intermediates overflowing the caches (bench/bench_whisper.py measures it).
    """
    return np.stack(
        [extractor(waveform, sampling_rate=audio.TARGET_RATE).input_features[0] for waveform in waveforms]
    )


def feature_columns(processor: Any) -> Any:
    """The `datasets.Features` of `speech_features` rows; log-mel features as a fixed-shape array (fast reads)."""
    import datasets

    extractor = processor.feature_extractor
    return datasets.Features(
        {
            "input_features": datasets.Array2D((extractor.feature_size, extractor.nb_max_frames), "float32"),
            "labels": datasets.List(datasets.Value("int32")),
            "duration": datasets.Value("float32"),
            "sentence": datasets.Value("string"),
            "file": datasets.Value("string"),
            "skipped": datasets.Value("string"),
        }
    )


def speech_features(batch: dict[str, list], processor: Any, max_label_tokens: int) -> dict[str, list]:
    """Batched `datasets.map` function: clips (`audio`) and transcripts (`sentence`) to Whisper inputs.

    A clip that cannot be decoded, that is longer than the encoder's window (30 s for Whisper), or whose
    transcript needs more than `max_label_tokens` tokens is kept as a row of zeros with its reason in
    `skipped`, so the counts survive the cache; callers filter those rows out.
    """
    extractor = processor.feature_extractor
    waveforms, skipped = [], []
    for clip in batch["audio"]:
        try:
            waveform = load_clip(clip)
        except HwError as error:
            log.warning("skipping clip: %s", error)
            waveform = None
        too_long = waveform is not None and len(waveform) > extractor.n_samples
        waveforms.append(waveform)
        skipped.append("undecodable" if waveform is None else "too long" if too_long else "")
    labels = processor.tokenizer(list(batch["sentence"])).input_ids
    skipped = [
        "transcript too long" if not reason and len(ids) > max_label_tokens else reason
        for reason, ids in zip(skipped, labels, strict=True)
    ]
    empty = np.zeros((extractor.feature_size, extractor.nb_max_frames), np.float32)
    return {
        "input_features": [
            empty if reason else log_mel(extractor, [waveform])[0]
            for waveform, reason in zip(waveforms, skipped, strict=True)
        ],
        "labels": labels,
        "duration": [0.0 if w is None else len(w) / audio.TARGET_RATE for w in waveforms],
        "sentence": list(batch["sentence"]),
        "file": [clip_name(clip) for clip in batch["audio"]],
        "skipped": skipped,
    }


def cached_features(
    split: Any,
    processor: Any,
    max_label_tokens: int,
    num_proc: int | None = None,
    desc: str = "Log-mel features",
) -> Any:
    """`speech_features` of a whole split, computed once and then read from the `datasets` cache.

    The cache key is explicit: the split's fingerprint (its content, for the in-memory splits of local folders)
    and the processor's settings, whose tokenizer carries the language and task prefix. A file lock per key keeps
    two processes from writing the same cache file at once.
    """
    import datasets
    from datasets.fingerprint import Hasher

    settings = (processor.tokenizer.backend_tokenizer.to_str(), processor.feature_extractor.to_json_string())
    fingerprint = Hasher.hash((split._fingerprint, settings, max_label_tokens))
    # Read the variable at call time: datasets fixes its constant when first imported. A local folder's split
    # lives in memory, so its cache file must be named here.
    cache = Path(os.environ.get("HF_DATASETS_CACHE") or datasets.config.HF_DATASETS_CACHE) / "hw-speech"
    cache.mkdir(parents=True, exist_ok=True)
    # Computed once: the other processes of a distributed run read the cache, and another hw command computing
    # the same features waits for the lock, then reads them too (two writers of one cache file could mix it up).
    cache_file = cache / f"features-{fingerprint}.arrow"
    with runs.main_process_first(), filelock.FileLock(cache / f"features-{fingerprint}.lock"):
        sources.drop_damaged_cache(cache_file, len(split))
        return split.map(
            partial(speech_features, processor=processor, max_label_tokens=max_label_tokens),
            batched=True,
            batch_size=32,
            remove_columns=split.column_names,
            features=feature_columns(processor),
            new_fingerprint=fingerprint,
            cache_file_name=str(cache_file),
            num_proc=num_proc,
            desc=desc,
        )


@dataclass(frozen=True)
class SpeechCollator:
    """Stack log-mel features and pad labels with -100 (ignored by the loss).

    The tokenizer writes `<|startoftranscript|>` first, but the model prepends it itself when it shifts the
    labels right, so it is dropped here (as in Hugging Face's Whisper fine-tuning guide).
    """

    decoder_start_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(row["labels"]) for row in rows)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        for index, row in enumerate(rows):
            labels[index, : len(row["labels"])] = torch.as_tensor(row["labels"])
        if (labels[:, 0] == self.decoder_start_token_id).all():
            labels = labels[:, 1:]
        features = torch.as_tensor(np.stack([np.asarray(row["input_features"]) for row in rows]))
        return {"input_features": features, "labels": labels}


@dataclass(frozen=True)
class Decoding:
    """How transcripts are generated."""

    language: str
    """Whisper language code (`zh`, `fr`)."""
    task: str = "transcribe"
    """`transcribe` or `translate`."""
    batch_size: int = 16
    """Clips per `generate` call."""
    max_new_tokens: int = 128
    """Tokens generated at most per clip, after the four prefix tokens."""


@dataclass(frozen=True)
class Ctranslate2Whisper:
    """A Whisper converted to CTranslate2 (`hw.ctranslate2.whisper`), with the config of the model converted."""

    whisper: Any
    """The `ctranslate2.models.Whisper`."""
    config: Any
    """The `WhisperConfig` of the transformers model it was converted from (CTranslate2 keeps none)."""


@dataclass(frozen=True)
class ValidationScoring:
    """WER and CER of greedy transcripts of validation clips, at each evaluation during training."""

    decoding: Decoding
    samples: int | None
    """Validation clips transcribed, the split's first (it is shuffled); None: every one."""
    normalize: str = "basic"
    """`hw.metrics.asr` normalizer of both sides."""
    zh_convert: str = "t2s"
    """OpenCC conversion of the `zh` normalizer."""


def validation_scores(model: Any, processor: Any, clips: Any, scoring: ValidationScoring) -> dict[str, float]:
    """`wer` and `cer` of the model's transcripts of `clips` (`speech_features` rows), through the evaluation's
    own duration-sorted batches; the model is left in the mode it was in."""
    from hw.metrics import asr

    training = model.training
    model.eval()
    try:
        hypotheses = transcribe_dataset(model, processor, clips, scoring.decoding)
    finally:
        model.train(training)
    score = asr.score(hypotheses, list(clips["sentence"]), scoring.normalize, scoring.zh_convert)
    return {"wer": score.wer, "cer": score.cer}


def fine_tune(
    model: Any,
    processor: Any,
    features: dict[str, Any],
    train_config: TrainConfig,
    output_dir: Path,
    resume: bool,
    scoring: ValidationScoring | None = None,
) -> Any:
    """Train Whisper (in full or with adapters) on `features["train"]`, validating on `features["validation"]`:
    its loss, and with `scoring` the WER and CER of its first `scoring.samples` clips (`eval_wer`, `eval_cer`).

    The last step is always evaluated, so the loss curve ends where training ends. Returns the trainer.
    """
    generated_metrics = None
    if scoring is not None:
        validation = features["validation"]
        clips = validation.select(range(min(scoring.samples or len(validation), len(validation))))
        generated_metrics = partial(validation_scores, processor=processor, clips=clips, scoring=scoring)
    columns = ["input_features", "labels"]
    trainer = build_trainer(
        model,
        train_config,
        output_dir,
        train_dataset=features["train"].with_format("numpy", columns=columns),
        eval_dataset=features["validation"].with_format("numpy", columns=columns),
        data_collator=SpeechCollator(model.config.decoder_start_token_id),
        processing_class=processor,
        seq2seq=True,
        generated_metrics=generated_metrics,
        # PEFT + a custom collator: keep the columns the collator reads and name the label column.
        remove_unused_columns=False,
        label_names=["labels"],
    )
    train(trainer, output_dir, resume)
    evaluated_steps = [entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry]
    if train_config.eval_strategy != "no" and trainer.state.global_step not in evaluated_steps:
        trainer.evaluate()
    return trainer


def duration_batches(durations: Sequence[float], batch_size: int) -> list[list[int]]:
    """Indices in batches, longest clips first, so a batch's transcripts end at about the same step."""
    order = sorted(range(len(durations)), key=lambda index: -durations[index])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.inference_mode()
def transcribe_features(
    model: Any,
    processor: Any,
    features_of: Callable[[list[int]], np.ndarray],
    durations: Sequence[float],
    decoding: Decoding,
) -> list[str]:
    """Greedy transcripts of every clip, generated in duration-sorted batches and returned in input order.

    In a distributed run each process transcribes its share of the batches (`runs.spread`) and all get every
    transcript; the batches are the same as a single process's, so are the transcripts.

    Args:
        features_of: indices → their log-mel features, shape (batch, mel bins, frames).
        durations: seconds of each clip; only their order matters.
    """
    # The decoder has max_target_positions places; the four prefix tokens take the first ones.
    max_new_tokens = min(decoding.max_new_tokens, model.config.max_target_positions - 4)
    generate = _ctranslate2_generate if isinstance(model, Ctranslate2Whisper) else _torch_generate

    def transcribe_batch(indices: list[int]) -> list[str]:
        generated = generate(model, processor, features_of(indices), decoding, max_new_tokens)
        log.info("transcribed %s", counter(len(indices)))
        return [
            text.strip() for text in processor.tokenizer.batch_decode(generated, skip_special_tokens=True)
        ]

    batches = duration_batches(durations, decoding.batch_size)
    counter = generation.running_count(len(batches), len(durations), "clips")
    transcripts = [""] * len(durations)
    for indices, texts in zip(batches, runs.spread(transcribe_batch, batches), strict=True):
        for index, text in zip(indices, texts, strict=True):
            transcripts[index] = text
    return transcripts


def _torch_generate(
    model: Any, processor: Any, features: np.ndarray, decoding: Decoding, max_new_tokens: int
) -> Any:
    """Token ids of a batch from transformers' `generate` (greedy, as the generation config says), decoding from
    the states of `encoder_states`."""
    from transformers.modeling_outputs import BaseModelOutput

    parameter = next(model.parameters())
    inputs = torch.as_tensor(features).to(parameter.device, parameter.dtype)
    return model.generate(
        encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states(model, inputs)),
        # Every clip fills the whole window; an explicit mask keeps generate from guessing one.
        attention_mask=torch.ones(inputs.shape[0], inputs.shape[-1], dtype=torch.long, device=inputs.device),
        language=decoding.language,
        task=decoding.task,
        # Whisper's generate counts `max_length` after the prefix tokens, so this is `max_new_tokens` (same
        # tokens); given as such, transformers 5 warns on every call that it overrides a default `max_length`
        # of 20 that Whisper's own generate filled in.
        max_length=max_new_tokens,
    )


def encoder_states(model: Any, inputs: torch.Tensor) -> torch.Tensor:
    """The encoder's states of a batch of log-mel features: on a GPU in one call, on a CPU in `_cpu_encoder_clips`
    at a time."""
    encoder = model.get_encoder()
    step = _cpu_encoder_clips(model.config) if inputs.device.type == "cpu" else len(inputs)
    return torch.cat(
        [encoder(inputs[start : start + step]).last_hidden_state for start in range(0, len(inputs), step)]
    )


def _cpu_encoder_clips(config: Any) -> int:
    """Clips the encoder takes at a time on a CPU: as many as keep one layer's attention scores (float32) within
    `CPU_ENCODER_BYTES`, at least one."""
    scores = config.encoder_attention_heads * config.max_source_positions**2 * 4
    return max(1, CPU_ENCODER_BYTES // scores)


def _ctranslate2_generate(
    model: Any, processor: Any, features: np.ndarray, decoding: Decoding, max_new_tokens: int
) -> list[list[int]]:
    """Token ids of a batch from a `ctranslate2.models.Whisper`, greedy, on the same log-mel features, after the
    same prefix tokens (`<|startoftranscript|><|lang|><|task|><|notimestamps|>`) as `_torch_generate`.

    Each of the model's workers decodes its share of the batch, in parallel (`hw.ctranslate2.whisper` gives a CPU
    two, each on half the cores: one's small decoder steps run while the other's wait on memory).
    """
    prefix = ["<|startoftranscript|>", f"<|{decoding.language}|>", f"<|{decoding.task}|>", "<|notimestamps|>"]
    prompt = processor.tokenizer.convert_tokens_to_ids(prefix)
    pending = [
        model.whisper.generate(
            states,
            [prompt] * states.shape[0],
            beam_size=1,
            max_length=len(prompt) + max_new_tokens,
            asynchronous=True,
        )
        for states in _ctranslate2_encoded(model, features)
    ]
    return [result.result().sequences_ids[0] for results in pending for result in results]


def _ctranslate2_encoded(model: Ctranslate2Whisper, features: np.ndarray) -> list[Any]:
    """The encoder's states of a batch of log-mel features, as `encoder_states` computes them, in one part per
    worker of the model: on a GPU in one call (in float16), on a CPU in `_cpu_encoder_clips` at a time, the
    workers encoding in parallel."""
    import ctranslate2

    def encode(batch: np.ndarray) -> Any:
        return model.whisper.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(batch)))

    if model.whisper.device == "cuda":
        return [encode(features.astype(np.float16))]
    step = _cpu_encoder_clips(model.config)
    chunks = [features[start : start + step] for start in range(0, len(features), step)]
    workers = model.whisper.num_workers
    with ThreadPoolExecutor(workers) as pool:  # CTranslate2 releases the GIL: one call runs on each worker
        states = np.concatenate(list(pool.map(lambda chunk: np.asarray(encode(chunk)), chunks)))
    return [ctranslate2.StorageView.from_array(part) for part in np.array_split(states, workers) if len(part)]


def transcribe_dataset(model: Any, processor: Any, features: Any, decoding: Decoding) -> list[str]:
    """Greedy transcripts of a `speech_features` dataset (its `input_features` and `duration`), in its order."""
    arrays = features.with_format("numpy", columns=["input_features"])
    return transcribe_features(
        model,
        processor,
        lambda indices: arrays[indices]["input_features"],
        list(features["duration"]),
        decoding,
    )


def transcribe(model: Any, processor: Any, waveforms: Sequence[np.ndarray], decoding: Decoding) -> list[str]:
    """Greedy transcripts of 16 kHz waveforms (each at most the encoder's window), in input order."""

    def features_of(indices: list[int]) -> np.ndarray:
        return log_mel(processor.feature_extractor, [waveforms[index] for index in indices])

    return transcribe_features(model, processor, features_of, [len(w) for w in waveforms], decoding)
