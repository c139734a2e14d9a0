"""`hw yelp`: fine-tune an encoder to classify reviews (Yelp 5 stars; IMDB 2 labels with LoRA) and score accuracy."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from hw import models, runs, sources, weight_checks
from hw.config import Dataset, LoraConfig, ModelConfig, ReferenceRun, RunOptions, Tokens, TrainConfig
from hw.errors import HwError
from hw.metrics.classification import accuracy
from hw.record import RunRecord
from hw.training import build_trainer, evaluation_history, parameter_counts, train, trainer_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class YelpData:
    """Which reviews, how many, and how they become model inputs."""

    dataset: Dataset = "yelp_review_full"
    """Hub id, `save_to_disk` folder, folder of csv/json/parquet files, or `tiny:NAME`."""
    config_name: str | None = None
    """Hub dataset configuration, if it has several."""
    revision: str = "main"
    """Hub dataset branch, tag or commit."""
    train_split: str = "train"
    """Split to train on."""
    eval_split: str = "test"
    """Split to score (the course scores the test split)."""
    text_column: str = "text"
    """Column holding the review."""
    label_column: str = "label"
    """Column holding the class index (0-based)."""
    label_names: list[str] = field(
        default_factory=lambda: ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
    )
    """Human names of the classes, in label order; their number sets the classifier's size."""
    max_train_samples: int | None = 1000
    """Training examples drawn after shuffling; None (`--max-train-samples all`) uses the whole split."""
    max_eval_samples: int | None = 1000
    """Evaluation examples drawn after shuffling; None uses the whole split."""
    shuffle_seed: int = 42
    """Seed of the shuffle before the subset is drawn (the course uses `shuffle(seed=42).select(range(1000))`)."""
    max_length: Tokens = 512
    """Tokens kept per review; longer ones are truncated."""
    truncation_side: Literal["right", "left"] = "right"
    """Which end of a long review is cut."""
    padding: Literal["dynamic", "max_length"] = "dynamic"
    """`dynamic` pads each batch to its longest review; `max_length` pads everything to `max_length` (the notebook)."""

    def problems(self) -> list[str]:
        found = [] if len(self.label_names) >= 2 else ["label_names: need at least two classes"]
        found += [
            f"{key}: {getattr(self, key)!r} must be at least 1"
            for key in ("max_train_samples", "max_eval_samples", "max_length")
            if getattr(self, key) is not None and getattr(self, key) < 1
        ]
        return found


@dataclass(frozen=True)
class YelpConfig:
    """One `hw yelp` run."""

    run: RunOptions
    model: ModelConfig
    data: YelpData
    train: TrainConfig
    lora: LoraConfig | None = None
    """LoRA adapters instead of full fine-tuning (the `imdb-lora` variant)."""
    demo_sentences: list[str] = field(default_factory=list)
    """Sentences classified before and after training, shown side by side in the report."""
    reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown above this run's in the report."""


def run(cfg: YelpConfig, run_dir: Path) -> RunRecord:
    """Train (unless eval-only) and score accuracy on the evaluation split."""
    # Names, then data, then weights: a typo or a missing column fails before any weights load.
    source = models.resolve(cfg.model, cfg.run.checkpoint)
    weight_checks.require_max_length(source, cfg.data.max_length, "classifier")
    splits = _load_splits(cfg.data, need_train=not cfg.run.eval_only)
    adding_lora = cfg.lora is not None and not cfg.run.eval_only and source.checkpoint is None
    loaded = models.classifier(source, cfg.data.label_names, cfg.lora if adding_lora else None)
    tokenizer, model, weights = loaded.processor, loaded.model, loaded.weights
    tokenizer.truncation_side = cfg.data.truncation_side
    with runs.main_process_first():  # tokenized once; other processes read the datasets cache
        features = {name: _features(split, tokenizer, cfg.data) for name, split in splits.items()}
    trainer = build_trainer(
        model,
        cfg.train,
        run_dir,
        train_dataset=features.get("train"),
        eval_dataset=features["eval"],
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None
        ),
        processing_class=tokenizer,
        compute_metrics=_compute_accuracy,
    )
    demo_before = _classify(trainer.model, tokenizer, cfg) if cfg.demo_sentences else []
    if not cfg.run.eval_only:
        train(trainer, run_dir, cfg.run.resume)
        trainer.save_model(str(run_dir / "model"))
        weights = models.trained_sentence(run_dir / "model")
    prediction = trainer.predict(features["eval"])
    predicted = np.argmax(prediction.predictions, axis=-1).tolist()
    final = {
        "accuracy": accuracy(predicted, prediction.label_ids.tolist()),
        "eval_loss": prediction.metrics["test_loss"],
    }
    log.info(
        "accuracy %.4f on %d %s examples (%s)",
        final["accuracy"],
        len(splits["eval"]),
        cfg.data.eval_split,
        weights,
    )
    return RunRecord(
        final=final,
        epochs=evaluation_history(trainer.state.log_history),
        weights=weights,
        dataset=cfg.data.dataset,
        data={name: len(split) for name, split in splits.items()},
        model=parameter_counts(trainer.model),
        tables=_demo_table(demo_before, _classify(trainer.model, tokenizer, cfg), cfg),
        samples=_samples(splits["eval"], predicted, cfg.data),
        trainer_state=trainer_state(trainer),
    )


def _load_splits(data: YelpData, need_train: bool) -> dict[str, Any]:
    """The train and eval splits, shuffled with the course's seed and cut to the configured sizes."""
    splits = sources.load_splits(data, [data.text_column, data.label_column], need_train)
    classes = range(len(data.label_names))
    for name, split in splits.items():
        outside = sorted(set(split.unique(data.label_column)) - set(classes), key=str)
        if outside:
            raise HwError(
                f"{data.label_column!r} of the {name} split of {data.dataset!r} holds label(s) "
                f"{', '.join(map(repr, outside[:5]))} outside 0..{classes[-1]} (one per data.label_names); "
                "labels must be 0-based class indices (a 1-based copy needs label - 1)"
            )
    return splits


def _features(split: Any, tokenizer: Any, data: YelpData) -> Any:
    """Token ids, labels and lengths, computed once and cached by `datasets` under a stable fingerprint."""
    from datasets.fingerprint import Hasher

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(
            batch[data.text_column],
            truncation=True,
            max_length=data.max_length,
            padding="max_length" if data.padding == "max_length" else False,
        )
        encoded["labels"] = batch[data.label_column]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    # An explicit fingerprint: hashing the closure would hash tokenizer state that changes between calls.
    settings = (split._fingerprint, tokenizer.backend_tokenizer.to_str(), data.max_length, data.padding)
    fingerprint = Hasher.hash((settings, data.truncation_side, data.text_column, data.label_column))
    return split.map(
        tokenize,
        batched=True,
        remove_columns=split.column_names,
        new_fingerprint=fingerprint,
        desc="Tokenizing",
    )


def _compute_accuracy(evaluation: Any) -> dict[str, float]:
    logits, labels = evaluation
    return {"accuracy": accuracy(np.argmax(logits, axis=-1).tolist(), labels.tolist())}


def _samples(split: Any, predicted: list[int], data: YelpData) -> list[dict[str, Any]]:
    names = data.label_names
    return [
        {"text": text, "label": names[label], "prediction": names[guess], "correct": label == guess}
        for text, label, guess in zip(
            split[data.text_column], split[data.label_column], predicted, strict=True
        )
    ]


def _classify(model: Any, tokenizer: Any, cfg: YelpConfig) -> list[str]:
    """Predicted label names of the demo sentences."""
    if not cfg.demo_sentences:
        return []
    return [label for label, _ in classify(model, tokenizer, cfg.demo_sentences, cfg.data.label_names)]


@torch.no_grad()
def classify(
    model: Any, tokenizer: Any, sentences: list[str], label_names: list[str]
) -> list[tuple[str, float]]:
    """The likeliest label name of each sentence and its softmax probability (the model is put in eval mode)."""
    model.eval()
    inputs = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    probabilities = model(**inputs.to(model.device)).logits.float().softmax(dim=-1)
    best = probabilities.max(dim=-1)
    return [
        (label_names[index], score)
        for index, score in zip(best.indices.tolist(), best.values.tolist(), strict=True)
    ]


def _demo_table(before: list[str], after: list[str], cfg: YelpConfig) -> list[dict[str, Any]]:
    if not cfg.demo_sentences:
        return []
    rows = [list(row) for row in zip(cfg.demo_sentences, before, after, strict=True)]
    title = "Demo sentences" + (" (eval-only: same weights in both columns)" if cfg.run.eval_only else "")
    return [{"title": title, "columns": ["Sentence", "Before training", "After training"], "rows": rows}]
