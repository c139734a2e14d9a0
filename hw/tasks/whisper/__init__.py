"""`hw whisper`: LoRA or full fine-tuning of Whisper on Common Voice-style speech, scored by WER and CER."""

import importlib.util
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hw import ctranslate2, manifest, models, runs, sources, speech, speech_sources
from hw.config import (
    Dataset,
    LoraConfig,
    ModelConfig,
    Quantization,
    ReferenceRun,
    RunOptions,
    Tokens,
    TrainConfig,
)
from hw.errors import HwError
from hw.metrics import asr
from hw.record import RunRecord
from hw.training import evaluation_history, kept_model_note, parameter_counts, trainer_state

log = logging.getLogger(__name__)

# Engines that generate the evaluation transcripts.
BACKENDS = ("transformers", "ctranslate2")


@dataclass(frozen=True)
class WhisperData:
    """Which clips, how many, and from where."""

    dataset: Dataset = "legacy-datasets/common_voice"
    """Hub id (parquet), `save_to_disk` folder, Common Voice download (clips/ + TSVs), audiofolder, or `tiny:NAME`."""
    config_name: str | None = None
    """Hub dataset configuration, for a parquet copy that declares its locales as configurations."""
    revision: str = "refs/convert/parquet"
    """Hub dataset branch, tag or commit (the default dataset is read from the Hub's parquet export)."""
    data_dir: str | None = None
    """Subfolder read, on the Hub and in a local copy: the Common Voice locale of the parquet export (`fr`)."""
    train_split: str = "train"
    """Split to train on."""
    validation_split: str = "validation"
    """Split whose loss is tracked during training; without one, the eval split is used (and logged)."""
    eval_split: str = "test"
    """Split transcribed and scored."""
    text_column: str = "sentence"
    """Transcript column of a Hub or `save_to_disk` dataset (an audiofolder's is `transcription`)."""
    max_train_samples: int | None = 640
    """Training clips drawn after shuffling; None (`--max-train-samples all`) uses the whole split."""
    max_validation_samples: int | None = 320
    """Validation clips drawn after shuffling; None uses the whole split."""
    max_eval_samples: int | None = 320
    """Scored clips drawn after shuffling; None uses the whole split."""
    shuffle_seed: int = 16
    """Seed of the shuffle before each subset is drawn (the course: `shuffle(seed=16)`)."""
    preprocessing_num_workers: int | None = None
    """Processes that decode clips and compute log-mel features (once; the result is cached)."""

    def problems(self) -> list[str]:
        limits = (
            "max_train_samples",
            "max_validation_samples",
            "max_eval_samples",
            "preprocessing_num_workers",
        )
        return [
            f"{key}: {getattr(self, key)!r} must be at least 1"
            for key in limits
            if getattr(self, key) is not None and getattr(self, key) < 1
        ]


@dataclass(frozen=True)
class WhisperEval:
    """How transcripts are generated and scored."""

    normalizer: str = "basic"
    """Text normalizer of the headline scores: `basic` (lowercase, no punctuation, accents kept) or `zh`."""
    zh_convert: str = "t2s"
    """OpenCC conversion of both sides for `zh`: `t2s` for zh-CN references, `s2twp` for zh-TW."""
    batch_size: int = 16
    """Clips per `generate` call (batches are sorted by duration)."""
    max_new_tokens: Tokens = 128
    """Tokens generated at most per clip (the course's `generation_max_length`)."""
    samples_seed: int = 0
    """Seed of the order of samples.jsonl, whose first rows the report shows."""
    validation_generate_samples: int | None = None
    """Validation clips transcribed at each evaluation during training for `eval_wer` / `eval_cer` (and
    `train.metric_for_best_model: wer|cer`); None: every one, 0: the loss only."""
    allow_language_mismatch: bool = False
    """Score a `--checkpoint` run trained on another language anyway (the report says so in bold)."""
    backend: str = "transformers"
    """Engine that generates the transcripts: `transformers`, or `ctranslate2` (the scored model converted once
    per run; `pip install 'hw[ct2]'`)."""
    compute_type: str = "auto"
    """CTranslate2's compute type (backend `ctranslate2`): `auto` is float32 on a CPU, whose transcripts equal
    transformers', and float16 on CUDA; `int8` is faster on a CPU but changes transcripts (benchmark P3r)."""

    def problems(self) -> list[str]:
        choices = {
            "normalizer": asr.NORMALIZERS,
            "zh_convert": asr.ZH_CONVERSIONS,
            "backend": BACKENDS,
            "compute_type": ctranslate2.COMPUTE_TYPES,
        }
        found = [
            f"{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}"
            for key, allowed in choices.items()
            if getattr(self, key) not in allowed
        ]
        if self.backend == "ctranslate2" and importlib.util.find_spec("ctranslate2") is None:
            found.append(
                "backend: 'ctranslate2' needs the ctranslate2 package; install it with pip install 'hw[ct2]' "
                "or set eval.backend=transformers"
            )
        elif self.backend == "ctranslate2" and self.compute_type in ctranslate2.COMPUTE_TYPES:
            found += ctranslate2.problems(self.compute_type)
        if (self.validation_generate_samples or 0) < 0:
            found.append(
                f"validation_generate_samples: {self.validation_generate_samples!r} must be 0 or more"
            )
        return found + [
            f"{key}: {getattr(self, key)!r} must be at least 1"
            for key in ("batch_size", "max_new_tokens")
            if getattr(self, key) < 1
        ]


@dataclass(frozen=True)
class WhisperConfig:
    """One `hw whisper` run."""

    run: RunOptions
    model: ModelConfig
    data: WhisperData
    train: TrainConfig
    lora: LoraConfig | None
    """LoRA adapters on the frozen (quantized) base; null fine-tunes every weight (with `quantization: none`)."""
    language: str
    """Whisper language code of the speech (`zh`, `fr`); set on the tokenizer and the generation config."""
    task: Literal["transcribe", "translate"] = "transcribe"
    """Whisper task token."""
    quantization: Quantization = "8bit"
    """Quantize the frozen base for training (bitsandbytes; CUDA only, full precision elsewhere): `8bit` (the
    course's), `4bit` (QLoRA's NF4) or `none`."""
    eval: WhisperEval = field(default_factory=WhisperEval)
    reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown above this run's in the report."""

    def problems(self) -> list[str]:
        languages = speech.whisper_languages()
        found = []
        if self.language not in languages:
            found.append(
                f"language: {self.language!r} is not a Whisper language code; e.g. {', '.join(list(languages)[:8])}"
            )
        if self.model.trust_remote_code:  # else the report would claim repository code was allowed to run
            found.append(
                "model.trust_remote_code: hw whisper loads transformers' own Whisper classes and runs no "
                "repository code; remove the setting"
            )
        best = self.train.metric_for_best_model
        if best not in (None, "wer", "cer", "loss"):
            found.append(f"train.metric_for_best_model: {best!r} is not one of wer, cer, loss")
        if best in ("wer", "cer") and self.eval.validation_generate_samples == 0:
            found.append(
                f"train.metric_for_best_model: {best} needs validation transcripts; set "
                "eval.validation_generate_samples above 0 (or null: every validation clip)"
            )
        return found


def run(cfg: WhisperConfig, run_dir: Path) -> RunRecord:
    """Train a LoRA adapter or the whole model (unless eval-only), transcribe the eval split, and score it."""
    notes = _language_notes(cfg)
    weights = models.resolve(cfg.model, cfg.run.checkpoint)
    processor = models.whisper_processor(weights, cfg.language, cfg.task)
    splits = _load_splits(cfg.data, need_train=not cfg.run.eval_only)
    features, clip_counts = _features(splits, processor, models.max_label_tokens(weights), cfg)
    state, counts = None, {}
    if not cfg.run.eval_only:
        weights, state, counts = _train(cfg, weights, processor, features, run_dir)
    if weights.checkpoint is None:
        log.info("no --checkpoint: scoring the base model %s as it is", cfg.model.name_or_path)
    scored = models.whisper(weights, cfg.language, cfg.task, precision=cfg.train.precision)
    if cfg.eval.backend == "ctranslate2":  # the torch copy is freed: it would only hold memory
        scored = ctranslate2.whisper(scored, run_dir, cfg.eval.compute_type)
    hypotheses = _transcribe(scored.model, processor, features["eval"], cfg)
    scores = _scores(hypotheses, list(features["eval"]["sentence"]), cfg.eval)
    final = _final(scores)
    epochs = evaluation_history(state["log_history"]) if state else []
    if epochs and "wer" not in epochs[-1]:  # no validation transcripts: the last row shows the test's scores
        epochs[-1].update({key: final[key] for key in ("wer", "cer", "wer_orthographic")})
    kept = kept_model_note(state, cfg.train.metric_for_best_model) if state else None
    samples = _samples(features["eval"], hypotheses, scores["normalized"])
    # A seeded random order: the report shows the first rows, a fair sample rather than the first clips.
    random.Random(cfg.eval.samples_seed).shuffle(samples)
    log.info("%s (%s)", " · ".join(f"{key} {value:.4f}" for key, value in final.items()), scored.weights)
    return RunRecord(
        final=final,
        epochs=epochs,
        weights=scored.weights,
        dataset=cfg.data.dataset,
        data={name: len(split) for name, split in features.items()},
        model=counts,
        tables=_tables(scores, clip_counts),
        notes=notes + ([kept] if kept else []),
        samples=samples,
        trainer_state=state,
    )


def _language_notes(cfg: WhisperConfig) -> list[str]:
    """A `--checkpoint` run trained on another language is refused, or scored with a bold warning when allowed."""
    scored = manifest.scored_run(cfg.run.checkpoint)
    if scored is None:
        return []
    # The language the run trained on: a variant (`zh-tw-full`) is not one, its config.yaml says which.
    settings = Path(cfg.run.checkpoint) / "config.yaml"
    saved = yaml.safe_load(settings.read_text(encoding="utf-8")) if settings.is_file() else {}
    trained = saved.get("language") or scored["variant"]
    if trained == cfg.language:
        return []
    if not cfg.eval.allow_language_mismatch:
        raise HwError(
            f"--checkpoint {cfg.run.checkpoint!r} was trained on --lang {trained}, not {cfg.language}; "
            f"score it with --lang {trained}, or add --set eval.allow_language_mismatch=true"
        )
    return [
        f"**Language mismatch: these weights were trained on --lang {trained} speech and are scored "
        f"here as {cfg.language}.**"
    ]


def _load_splits(data: WhisperData, need_train: bool) -> dict[str, Any]:
    """Train, validation and eval splits, shuffled with the course's seed and cut to the configured sizes."""
    dataset_dict = speech_sources.load_speech_splits(
        data.dataset, data.config_name, data.revision, data.text_column, data.data_dir
    )
    wanted = {}
    if need_train:
        validation = data.validation_split
        if validation not in dataset_dict:
            log.info(
                "no %r split in %s: validation loss is tracked on %r",
                validation,
                data.dataset,
                data.eval_split,
            )
            validation = data.eval_split
        wanted["train"] = (data.train_split, data.max_train_samples, "data.train_split")
        wanted["validation"] = (validation, data.max_validation_samples, "data.validation_split")
    wanted["eval"] = (data.eval_split, data.max_eval_samples, "data.eval_split")
    splits = {}
    for name, (split_name, limit, key) in wanted.items():
        split = sources.require_split(dataset_dict, split_name, data.dataset, key)
        splits[name] = sources.subset(split, limit, data.shuffle_seed)
    return splits


def _features(
    splits: dict[str, Any], processor: Any, max_label_tokens: int, cfg: WhisperConfig
) -> tuple[dict[str, Any], list[list[Any]]]:
    """Log-mel features and label ids of the usable clips of each split (cached), and clip counts per split."""
    kept, counts = {}, []
    for name, split in splits.items():
        computed = speech.cached_features(
            split,
            processor,
            max_label_tokens,
            cfg.data.preprocessing_num_workers,
            f"Log-mel features ({name})",
        )
        reasons, files = list(computed["skipped"]), list(computed["file"])
        for reason in speech.SKIP_REASONS:
            skipped = [file for file, why in zip(files, reasons, strict=True) if why == reason]
            if skipped:
                log.warning("%s: skipped %d %s clip(s): %s", name, len(skipped), reason, ", ".join(skipped))
        kept[name] = computed.select([index for index, why in enumerate(reasons) if not why])
        counts.append([name, len(computed), len(kept[name]), *map(reasons.count, speech.SKIP_REASONS)])
        if not len(kept[name]):
            why = ", ".join(
                f"{reasons.count(reason)} {reason}" for reason in speech.SKIP_REASONS if reason in reasons
            )
            raise HwError(
                f"no usable clip in the {name} split of {cfg.data.dataset!r} ({why}, first: {files[0]}); "
                "see the clips logged above and fix or remove them"
            )
    return kept, counts


def _train(
    cfg: WhisperConfig, weights: models.Weights, processor: Any, features: dict[str, Any], run_dir: Path
) -> tuple[models.Weights, dict[str, Any], dict[str, int]]:
    """Train LoRA adapters on the base model (or every weight); return the saved adapter (or model), the Trainer's
    state and parameter counts."""
    trainee = models.whisper(
        weights, cfg.language, cfg.task, training=True, quantization=cfg.quantization, lora=cfg.lora
    )
    counts = parameter_counts(trainee.model)
    log.info(
        "%s: %s of %s parameters trainable",
        "LoRA" if cfg.lora else "full fine-tuning",
        f"{counts['trainable_parameters']:,}",
        f"{counts['total_parameters']:,}",
    )
    scoring = None
    if cfg.eval.validation_generate_samples != 0:
        scoring = speech.ValidationScoring(
            _decoding(cfg), cfg.eval.validation_generate_samples, cfg.eval.normalizer, cfg.eval.zh_convert
        )
    trainer = speech.fine_tune(
        trainee.model, processor, features, cfg.train, run_dir, cfg.run.resume, scoring
    )
    with runs.main_process_first():  # every process loads the adapter next: not before the main one saved it
        trainer.save_model(str(run_dir / "model"))
    return models.trained_here(weights, run_dir / "model"), trainer_state(trainer), counts


def _transcribe(model: Any, processor: Any, eval_features: Any, cfg: WhisperConfig) -> list[str]:
    """Greedy transcripts of the eval clips, in duration-sorted batches, returned in dataset order."""
    return speech.transcribe_dataset(model, processor, eval_features, _decoding(cfg))


def _decoding(cfg: WhisperConfig) -> speech.Decoding:
    """How transcripts are generated, at each validation and at the end."""
    return speech.Decoding(cfg.language, cfg.task, cfg.eval.batch_size, cfg.eval.max_new_tokens)


def _scores(hypotheses: list[str], references: list[str], evaluation: WhisperEval) -> dict[str, asr.AsrScore]:
    """Orthographic (`none`) and normalized scores of the same transcripts."""
    return {
        "normalized": asr.score(hypotheses, references, evaluation.normalizer, evaluation.zh_convert),
        "orthographic": asr.score(hypotheses, references, "none"),
    }


def _final(scores: dict[str, asr.AsrScore]) -> dict[str, float]:
    """Headline first: CER for Chinese (no word spaces), WER otherwise."""
    normalized, orthographic = scores["normalized"], scores["orthographic"]
    final = {
        "wer": normalized.wer,
        "cer": normalized.cer,
        "wer_orthographic": orthographic.wer,
        "cer_orthographic": orthographic.cer,
        "sentence_error_rate": normalized.sentence_error_rate,
    }
    headline = "cer" if normalized.normalize == "zh" else "wer"
    return {headline: final.pop(headline), **final}


def _samples(eval_features: Any, hypotheses: list[str], normalized: asr.AsrScore) -> list[dict[str, Any]]:
    """One row per scored clip: raw and normalized texts and the clip's own WER and CER."""
    columns = zip(
        eval_features["file"], eval_features["duration"], eval_features["sentence"], hypotheses, strict=True
    )
    return [
        {
            "file": file,
            "seconds": round(float(duration), 2),
            "reference": reference,
            "hypothesis": hypothesis,
            "reference_normalized": utterance.reference,
            "hypothesis_normalized": utterance.hypothesis,
            "wer": utterance.wer,
            "cer": utterance.cer,
        }
        for (file, duration, reference, hypothesis), utterance in zip(
            columns, normalized.per_utterance, strict=True
        )
    ]


def _tables(scores: dict[str, asr.AsrScore], clip_counts: list[list[Any]]) -> list[dict[str, Any]]:
    """Error breakdown per normalizer, and the clips each split kept or skipped."""
    errors = [
        [f"{name} ({score.normalize}{', ' + score.zh_convert if score.zh_convert else ''})", score.wer, score.cer,
         score.substitutions, score.deletions, score.insertions, score.reference_words, score.sentence_error_rate]
        for name, score in scores.items()
    ]  # fmt: skip
    return [
        {
            "title": "Errors by normalizer (S/D/I: substituted, deleted, inserted words; characters for zh)",
            "columns": ["Normalizer", "WER", "CER", "S", "D", "I", "Reference words", "Sentence error rate"],
            "rows": errors,
        },
        {
            "title": "Clips per split",
            "columns": ["Split", "Clips", "Kept", *(f"Skipped: {reason}" for reason in speech.SKIP_REASONS)],
            "rows": clip_counts,
        },
    ]
