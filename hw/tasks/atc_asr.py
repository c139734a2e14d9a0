"""`hw atc` ASR stages: fine-tune Whisper on the training split, and transcribe the evaluation sets and the
training split (the corrector's pairs) with the zero-shot and fine-tuned models."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hw import runs, sources, speech
from hw.atc_text import normalize, words_to_digits
from hw.errors import HwError
from hw.training import drop_checkpoints, evaluation_history, parameter_counts, with_lora, write_trainer_state

if TYPE_CHECKING:  # the config lives with the task's entry point, which imports this module
    from hw.tasks.atc import AtcConfig

ASR_SYSTEMS = ("zero_shot", "fine_tuned")


def _split(
    dataset: str, config_name: str | None, revision: str, split: str, key: str, cfg: "AtcConfig"
) -> Any:
    """One split of a speech dataset with columns `audio` and `sentence` (the `text_column` renamed)."""
    splits = sources.load_speech_splits(dataset, config_name, revision, cfg.data.text_column)
    return sources.require_split(splits, split, dataset, key)


def check_data(cfg: "AtcConfig") -> None:
    """Load every split the stages will read, so a wrong dataset fails in seconds rather than after training."""
    data = cfg.data
    splits = (
        []
        if cfg.run.eval_only
        else [("data.train_split", data.train_split), ("data.validation_split", data.validation_split)]
    )
    for key, split in splits:
        _split(data.dataset, data.config_name, data.revision, split, key, cfg)
    for evaluation in data.eval_sets:
        key = f"data.eval_sets[{evaluation.name}].split"
        _split(evaluation.dataset, evaluation.config_name, evaluation.revision, evaluation.split, key, cfg)


def _features(split: Any, processor: Any, name: str, dataset: str) -> tuple[Any, list[Any]]:
    """Usable log-mel features of a split (cached by `datasets`), and its row of the clip-count table."""
    computed = speech.cached_features(split, processor, MAX_LABEL_TOKENS, desc=f"Log-mel features ({name})")
    reasons = list(computed["skipped"])
    kept = computed.select([index for index, reason in enumerate(reasons) if not reason])
    if not len(kept):
        raise HwError(f"no usable clip in {name} of {dataset!r}; the log names each skipped clip and why")
    return kept, [name, len(computed), len(kept), *map(reasons.count, speech.SKIP_REASONS)]


# Whisper's decoder has 448 positions; a longer transcript cannot be a training label.
MAX_LABEL_TOKENS = 448


def _labels_as_configured(split: Any, target_text: str) -> Any:
    """With `digits`, the ASR learns the homework's converted text: `one three four decimal six` → `134.6`."""
    if target_text == "words":
        return split
    return split.map(lambda row: {"sentence": words_to_digits(normalize(row["sentence"]))}, desc="Digits")


def train_asr(cfg: "AtcConfig", folder: Path) -> None:
    """Fine-tune Whisper (in full, or LoRA) on the training split; save model, processor and loss history."""
    source = sources.resolve_model(cfg.model.name_or_path, cfg.model.revision)
    processor = speech.load_processor(source, cfg.asr.language, "transcribe", cfg.model.revision)
    data = cfg.data
    features, counts = {}, []
    for name, split_name, limit in (
        ("train", data.train_split, data.max_train_samples),
        ("validation", data.validation_split, data.max_validation_samples),
    ):
        split = _split(data.dataset, data.config_name, data.revision, split_name, f"data.{name}_split", cfg)
        split = _labels_as_configured(sources.subset(split, limit, data.shuffle_seed), cfg.asr.target_text)
        features[name], row = _features(split, processor, name, data.dataset)
        counts.append(row)
    model = speech.load_whisper(source, cfg.model.revision)
    speech.set_language(model, cfg.asr.language)
    model.config.use_cache = False  # the cache only serves generation
    if cfg.lora is not None:
        model = with_lora(model, cfg.lora, task_type=None)
    trainer = speech.fine_tune(model, processor, features, cfg.train, folder, cfg.run.resume)
    trainer.save_model(str(folder / "model"))
    processor.save_pretrained(str(folder / "model"))
    write_trainer_state(trainer, folder)
    history = {"epochs": evaluation_history(trainer.state.log_history), "model": parameter_counts(model)}
    runs.write_json(folder / "history.json", {**history, "clips": counts})
    drop_checkpoints(folder)


def _load_asr(cfg: "AtcConfig", weights: str | None) -> tuple[Any, Any]:
    """Processor and inference model: the base (weights None), a full fine-tuned model, or base + adapter."""
    source = sources.resolve_model(cfg.model.name_or_path, cfg.model.revision)
    processor = speech.load_processor(source, cfg.asr.language, "transcribe", cfg.model.revision)
    if weights is None:
        model = speech.load_whisper(source, cfg.model.revision)
    elif (Path(weights) / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(speech.load_whisper(source, cfg.model.revision), weights)
    else:
        model = speech.load_whisper(weights)
    speech.set_language(model, cfg.asr.language)
    return processor, speech.for_inference(model, cfg.train.precision)


def _transcripts(model: Any, processor: Any, features: Any, cfg: "AtcConfig") -> list[str]:
    """Greedy transcripts in duration-sorted batches, in dataset order."""
    decoding = speech.Decoding(cfg.asr.language, "transcribe", cfg.asr.batch_size, cfg.asr.max_new_tokens)
    return speech.transcribe_dataset(model, processor, features, decoding)


def transcribe_eval_sets(cfg: "AtcConfig", fine_tuned: str | None, folder: Path) -> None:
    """`transcripts.jsonl`: per evaluation clip its position in its set, file name (a label), reference, and the
    zero-shot and fine-tuned transcripts."""
    processor, model = _load_asr(cfg, None)
    rows, counts = [], []
    features = {}
    for evaluation in cfg.data.eval_sets:
        key = f"data.eval_sets[{evaluation.name}].split"
        split = _split(
            evaluation.dataset, evaluation.config_name, evaluation.revision, evaluation.split, key, cfg
        )
        split = sources.subset(split, cfg.data.max_eval_samples, cfg.data.shuffle_seed)
        features[evaluation.name], row = _features(split, processor, evaluation.name, evaluation.dataset)
        counts.append(row)
    systems = {"zero_shot": model}
    transcripts: dict[str, dict[str, list[str]]] = {}
    for system in ASR_SYSTEMS if fine_tuned else ASR_SYSTEMS[:1]:
        model = systems.get(system) or _load_asr(cfg, fine_tuned)[1]
        transcripts[system] = {
            name: _transcripts(model, processor, split, cfg) for name, split in features.items()
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


def transcribe_pairs(cfg: "AtcConfig", folder: Path) -> None:
    """`pairs.jsonl`: the training split transcribed zero-shot, each with its reference (the corrector's data)."""
    data = cfg.data
    processor, model = _load_asr(cfg, None)
    split = _split(data.dataset, data.config_name, data.revision, data.train_split, "data.train_split", cfg)
    features, _ = _features(
        sources.subset(split, data.max_train_samples, data.shuffle_seed), processor, "pairs", data.dataset
    )
    hypotheses = _transcripts(model, processor, features, cfg)
    rows = [
        {"audio_id": file, "hypothesis": hypothesis, "reference": reference}
        for file, hypothesis, reference in zip(
            features["file"], hypotheses, features["sentence"], strict=True
        )
    ]
    runs.write_jsonl(folder / "pairs.jsonl", rows)
