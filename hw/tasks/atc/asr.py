"""`hw atc` ASR stages: fine-tune Whisper on the training split, and transcribe the evaluation sets and the
training split (the corrector's pairs) with the zero-shot and fine-tuned models."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hw import models, runs, sources, speech, speech_sources
from hw.atc_text import normalize, words_to_digits
from hw.config import LoraConfig, ModelConfig, TrainConfig
from hw.errors import HwError
from hw.tasks.atc.config import ASR_SYSTEMS
from hw.training import drop_checkpoints, evaluation_history, parameter_counts, write_trainer_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clips:
    """A shuffled subset of one split of a speech dataset, its references in `text_column`."""

    name: str
    """The subset's name in the clip-count table and in the transcripts (`train`, `atcosim`, …)."""
    dataset: str
    config_name: str | None
    revision: str
    split: str
    text_column: str
    max_samples: int | None
    """Clips drawn after shuffling; None keeps the whole split."""
    shuffle_seed: int
    config_key: str
    """The setting an error about this split names (`data.train_split`)."""


@dataclass(frozen=True)
class Recognizer:
    """The Whisper ASR as the transcribing stages load and run it."""

    model: ModelConfig
    language: str
    batch_size: int
    max_new_tokens: int
    precision: str

    @property
    def decoding(self) -> speech.Decoding:
        """Greedy transcription in the ASR's language, in batches of `batch_size`."""
        return speech.Decoding(self.language, "transcribe", self.batch_size, self.max_new_tokens)


@dataclass(frozen=True)
class AsrTrainInput:
    """What `train_asr` reads."""

    model: ModelConfig
    train: TrainConfig
    lora: LoraConfig | None
    language: str
    target_text: str
    train_clips: Clips
    validation_clips: Clips
    scoring: speech.ValidationScoring | None = None
    """WER and CER of validation transcripts at each evaluation; None: the loss only."""

    @property
    def seed(self) -> int:
        """The seed the stage starts from (`stages.stage_seed`): `train.seed`, in the key through `train`."""
        return self.train.seed


@dataclass(frozen=True)
class TranscribeInput:
    """What `transcribe_eval_sets` reads."""

    # Of the transcript rows (and, through the upstream keys, of the corrections and scores): 1 joined on file
    # names; 2 rows carry `index`, the clip's position in its set.
    VERSION: ClassVar[int] = 2
    recognizer: Recognizer
    eval_sets: tuple[Clips, ...]
    fine_tuned: str | None
    """The fine-tuned ASR: `asr_train`'s key, or the --checkpoint directory; None: zero-shot only."""


@dataclass(frozen=True)
class PairsInput:
    """What `transcribe_pairs` reads."""

    recognizer: Recognizer
    clips: Clips


def _split(clips: Clips) -> Any:
    """The whole split, with columns `audio` and `sentence` (the `text_column` renamed)."""
    splits = speech_sources.load_speech_splits(
        clips.dataset, clips.config_name, clips.revision, clips.text_column
    )
    return sources.require_split(splits, clips.split, clips.dataset, clips.config_key)


def _subset(clips: Clips) -> Any:
    """The clips: the split shuffled, then its first `max_samples`."""
    return sources.subset(_split(clips), clips.max_samples, clips.shuffle_seed)


def check_data(every_clips: list[Clips]) -> None:
    """Load every split the stages will read, so a wrong dataset fails in seconds rather than after training."""
    for clips in every_clips:
        _split(clips)


def _features(split: Any, processor: Any, max_label_tokens: int, clips: Clips) -> tuple[Any, list[Any]]:
    """Usable log-mel features of a split (cached by `datasets`), and its row of the clip-count table."""
    desc = f"Log-mel features ({clips.name})"
    computed = speech.cached_features(split, processor, max_label_tokens, desc=desc)
    reasons = list(computed["skipped"])
    kept = computed.select([index for index, reason in enumerate(reasons) if not reason])
    if not len(kept):
        raise HwError(
            f"no usable clip in {clips.name} of {clips.dataset!r}; the log names each skipped clip and why"
        )
    return kept, [clips.name, len(computed), len(kept), *map(reasons.count, speech.SKIP_REASONS)]


def _labels_as_configured(split: Any, target_text: str) -> Any:
    """With `digits`, the ASR learns the homework's converted text: `one three four decimal six` → `134.6`."""
    if target_text == "words":
        return split
    return split.map(lambda row: {"sentence": words_to_digits(normalize(row["sentence"]))}, desc="Digits")


def train_asr(inputs: AsrTrainInput, folder: Path, resume: bool) -> None:
    """Fine-tune Whisper (in full, or LoRA) on the training split; save model, processor and loss history."""
    weights = models.resolve(inputs.model)
    processor = models.whisper_processor(weights, inputs.language)
    max_label_tokens = models.max_label_tokens(weights)
    features, counts = {}, []
    for clips in (inputs.train_clips, inputs.validation_clips):
        split = _labels_as_configured(_subset(clips), inputs.target_text)
        features[clips.name], row = _features(split, processor, max_label_tokens, clips)
        counts.append(row)
    model = models.whisper(weights, inputs.language, training=True, lora=inputs.lora).model
    trainer = speech.fine_tune(model, processor, features, inputs.train, folder, resume, inputs.scoring)
    trainer.save_model(str(folder / "model"))
    processor.save_pretrained(str(folder / "model"))
    write_trainer_state(trainer, folder)
    history = {"epochs": evaluation_history(trainer.state.log_history), "model": parameter_counts(model)}
    runs.write_json(folder / "history.json", {**history, "clips": counts})
    drop_checkpoints(folder)


def load_asr(recognizer: Recognizer, fine_tuned: str | None) -> models.Loaded:
    """The inference model: the base (`fine_tuned` None), or the model or adapter the asr_train stage saved."""
    weights = models.resolve(recognizer.model)
    if fine_tuned:
        weights = models.trained_here(weights, fine_tuned)
    return models.whisper(weights, recognizer.language, precision=recognizer.precision)


def _transcripts(model: Any, processor: Any, features: Any, recognizer: Recognizer, what: str) -> list[str]:
    """Greedy transcripts in duration-sorted batches, in dataset order; the log names `what` is transcribed."""
    log.info("transcribing %s: %d clips", what, len(features))
    return speech.transcribe_dataset(model, processor, features, recognizer.decoding)


def transcribe_eval_sets(inputs: TranscribeInput, fine_tuned: str | None, folder: Path) -> None:
    """`transcripts.jsonl`: per evaluation clip its position in its set, file name (a label), reference, and the
    zero-shot and fine-tuned transcripts (`fine_tuned`: the model directory that `inputs.fine_tuned` names)."""
    assert (fine_tuned is None) == (inputs.fine_tuned is None), "a fine-tuned model exactly when keyed by one"
    recognizer = inputs.recognizer
    zero_shot = load_asr(recognizer, None)
    processor, model = zero_shot.processor, zero_shot.model
    max_label_tokens = models.max_label_tokens(models.resolve(recognizer.model))
    rows, counts = [], []
    features = {}
    for clips in inputs.eval_sets:
        features[clips.name], row = _features(_subset(clips), processor, max_label_tokens, clips)
        counts.append(row)
    systems = {"zero_shot": model}
    transcripts: dict[str, dict[str, list[str]]] = {}
    for system in ASR_SYSTEMS if fine_tuned else ASR_SYSTEMS[:1]:
        model = systems.get(system) or load_asr(recognizer, fine_tuned).model
        transcripts[system] = {
            name: _transcripts(model, processor, split, recognizer, f"{name} ({system.replace('_', '-')})")
            for name, split in features.items()
        }
    for name, split in features.items():
        for index, (file, duration, reference) in enumerate(
            zip(split["file"], split["duration"], split["sentence"], strict=True)
        ):
            row = {
                "set": name,
                "index": index,  # identifies the clip: file names repeat, or are missing (`speech.clip_name`)
                "audio_id": file,
                "seconds": round(float(duration), 2),
                "reference": reference,
            }
            rows.append(row | {system: transcripts[system][name][index] for system in transcripts})
    runs.write_jsonl(folder / "transcripts.jsonl", rows)
    runs.write_json(folder / "clips.json", counts)


def transcribe_pairs(inputs: PairsInput, folder: Path) -> None:
    """`pairs.jsonl`: the training split transcribed zero-shot, each with its reference (the corrector's data)."""
    zero_shot = load_asr(inputs.recognizer, None)
    processor, model = zero_shot.processor, zero_shot.model
    max_label_tokens = models.max_label_tokens(models.resolve(inputs.recognizer.model))
    features, _ = _features(_subset(inputs.clips), processor, max_label_tokens, inputs.clips)
    hypotheses = _transcripts(model, processor, features, inputs.recognizer, "the training split (zero-shot)")
    rows = [
        {"audio_id": file, "hypothesis": hypothesis, "reference": reference}
        for file, hypothesis, reference in zip(
            features["file"], hypotheses, features["sentence"], strict=True
        )
    ]
    runs.write_jsonl(folder / "pairs.jsonl", rows)
