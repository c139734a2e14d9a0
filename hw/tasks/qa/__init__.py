"""`hw qa`: fine-tune an encoder for extractive question answering on SQuAD and score exact match and F1."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from hw import models, runs, sources, weight_checks
from hw.config import Dataset, ModelConfig, ReferenceRun, RunOptions, Tokens, TrainConfig
from hw.metrics.squad import SquadExample, exact_match, score
from hw.record import RunRecord
from hw.tasks.qa.postprocess import QAPredictions, postprocess_qa_predictions
from hw.training import build_trainer, evaluation_history, parameter_counts, train, trainer_state

log = logging.getLogger(__name__)

COLUMNS = ["id", "context", "question", "answers"]


@dataclass(frozen=True)
class QAData:
    """Which questions, how they become overlapping windows of the context, and how answers are picked."""

    dataset: Dataset = "squad"
    """Hub id, `save_to_disk` folder, folder of json/parquet files in the `squad` schema, or `tiny:NAME`."""
    config_name: str | None = None
    """Hub dataset configuration, if it has several."""
    revision: str = "main"
    """Hub dataset branch, tag or commit."""
    train_split: str = "train"
    """Split to train on."""
    eval_split: str = "validation"
    """Split to score (SQuAD's test set is hidden; everyone reports the validation split)."""
    max_train_samples: int | None = None
    """Training questions drawn after shuffling; None uses the whole split."""
    max_eval_samples: int | None = None
    """Evaluation questions drawn after shuffling; None uses the whole split."""
    shuffle_seed: int = 42
    """Seed of the shuffle before a subset is drawn."""
    max_length: Tokens = 384
    """Tokens per window: question + context part + special tokens."""
    doc_stride: int = 128
    """Context tokens shared by consecutive windows of a long context."""
    padding: Literal["dynamic", "max_length"] = "dynamic"
    """`dynamic` pads each batch to its longest window; `max_length` pads every window to `max_length` (the notebook).

    EM and F1 are the same either way; the validation loss differs a little, because the model's softmax over
    start (and end) positions also covers padding tokens, as in the notebook."""
    n_best_size: int = 20
    """Start and end positions tried per window, and length of each n-best list."""
    max_answer_length: int = 30
    """Longest answer, in tokens."""
    squad_v2: bool = False
    """SQuAD 2.0: questions may be unanswerable, scored with the v2.0 rules (`hw qa --squad-v2`)."""
    null_score_threshold: float = 0.0
    """With `squad_v2`: answer "" when the null score beats the best span by more than this."""

    def problems(self) -> list[str]:
        found = [
            f"{key}: {getattr(self, key)!r} must be at least 1"
            for key in ("max_train_samples", "max_eval_samples", "n_best_size", "max_answer_length")
            if getattr(self, key) is not None and getattr(self, key) < 1
        ]
        if not 0 <= self.doc_stride < self.max_length:
            found.append(f"doc_stride: {self.doc_stride!r} must be at least 0 and below max_length")
        if self.squad_v2 and self.dataset == "squad":
            found.append("squad_v2: on, but dataset 'squad' is SQuAD v1.1; also --set data.dataset=squad_v2")
        return found


@dataclass(frozen=True)
class QAConfig:
    """One `hw qa` run."""

    run: RunOptions
    model: ModelConfig
    data: QAData
    train: TrainConfig
    reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown above this run's in the report."""


def run(cfg: QAConfig, run_dir: Path) -> RunRecord:
    """Train (unless eval-only), answer the evaluation questions, score EM/F1 and write the answers."""
    # Names, then data, then weights: a wrong model path fails before any download, a bad column before any load.
    source = models.resolve(cfg.model, cfg.run.checkpoint)
    weight_checks.require_max_length(source, cfg.data.max_length, "question_answering")
    splits = sources.load_splits(cfg.data, COLUMNS, need_train=not cfg.run.eval_only)
    loaded = models.question_answering(source, cfg.train.seed)
    tokenizer, model, weights = loaded.processor, loaded.model, loaded.weights
    with runs.main_process_first():  # tokenized once; other processes read the datasets cache
        features = {name: to_features(split, tokenizer, cfg.data) for name, split in splits.items()}
    scorer = SquadScorer(splits["eval"], features["eval"], cfg.data)
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
        compute_metrics=scorer,
    )
    if not cfg.run.eval_only:
        train(trainer, run_dir, cfg.run.resume)
        trainer.save_model(str(run_dir / "model"))
        weights = models.trained_sentence(run_dir / "model", start=weights)
    metrics = trainer.predict(features["eval"]).metrics
    final = {"exact_match": metrics["test_exact_match"], "f1": metrics["test_f1"]}
    final["validation_loss"] = metrics["test_loss"]
    _write_answers(run_dir, scorer.latest)
    epochs = evaluation_history(trainer.state.log_history)
    count = f"{len(splits['eval'])} questions ({len(features['eval'])} windows)"
    log.info("EM %.2f, F1 %.2f on %s; weights: %s", final["exact_match"], final["f1"], count, weights)
    return RunRecord(
        final=final,
        epochs=epochs,
        weights=weights,
        dataset=cfg.data.dataset,
        data={name: len(split) for name, split in splits.items()},
        model=parameter_counts(trainer.model),
        notes=_overfitting_notes(epochs),
        samples=_samples(scorer.latest, splits["eval"]),
        trainer_state=trainer_state(trainer),
    )


def to_features(split: Any, tokenizer: Any, data: QAData) -> Any:
    """Overlapping windows of each context with answer positions, cached by `datasets` under a stable fingerprint.

    Every window keeps its question's `example_id` and the character offsets of its context tokens (None for
    question and special tokens) for post-processing; a window that does not hold the answer points at [CLS].
    Validation windows get positions too, so the validation loss can be reported. Windows come longest first:
    evaluated in that order, each batch pads little with dynamic padding, and an out-of-memory error shows at once.
    """
    from datasets.fingerprint import Hasher

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(
            [question.lstrip() for question in batch["question"]],  # leading spaces waste window tokens
            batch["context"],
            truncation="only_second",
            max_length=data.max_length,
            stride=data.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length" if data.padding == "max_length" else False,
        )
        examples = encoded.pop("overflow_to_sample_mapping")
        positions = [
            _answer_positions(offsets, encoded.sequence_ids(window), batch["answers"][examples[window]])
            for window, offsets in enumerate(encoded["offset_mapping"])
        ]
        encoded["start_positions"], encoded["end_positions"] = map(list, zip(*positions, strict=True))
        encoded["length"] = [sum(mask) for mask in encoded["attention_mask"]]  # padding not counted
        # Offsets stop at the last real token, so post-processing never considers padding, whose logits can
        # crowd every real token out of the n best positions when each window is padded to `max_length`.
        encoded["offset_mapping"] = [
            [
                offset if sequence == 1 else None
                for offset, sequence in zip(offsets, encoded.sequence_ids(window), strict=True)
            ][: encoded["length"][window]]
            for window, offsets in enumerate(encoded["offset_mapping"])
        ]
        encoded["example_id"] = [batch["id"][example] for example in examples]
        return encoded

    # An explicit fingerprint: hashing the closure would hash tokenizer state that changes between calls.
    settings = (split._fingerprint, tokenizer.backend_tokenizer.to_str(), data.max_length, data.doc_stride)
    features = split.map(
        tokenize,
        batched=True,
        remove_columns=split.column_names,
        new_fingerprint=Hasher.hash((settings, data.padding)),
        desc="Tokenizing",
    )
    return features.select(np.argsort(-np.array(features["length"]), kind="stable"))


def _answer_positions(
    offsets: list[tuple[int, int]], sequences: list[int | None], answers: dict
) -> tuple[int, int]:
    """Token indices of the first answer's first and last token, or (0, 0) ([CLS]) when the window lacks it."""
    if not answers["text"]:  # an unanswerable SQuAD v2 question
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = [index for index, sequence in enumerate(sequences) if sequence == 1]
    if offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    # As the course: the last token starting at or before the answer, the first ending at or after it.
    start = max(index for index in context if offsets[index][0] <= start_char)
    end = min(index for index in context if offsets[index][1] >= end_char)
    return start, end


class SquadScorer:
    """`compute_metrics` for the Trainer: turn the eval windows' logits into answers and score EM/F1.

    The Trainer hands over logits in the order of the eval windows, so they line up with `features`. The answers
    of the latest call are kept in `latest`, for the predictions files.
    """

    def __init__(self, examples: Any, features: Any, data: QAData):
        self.examples = examples.select_columns(["id", "context"]).to_list()
        self.truths = [SquadExample(row["id"], tuple(row["answers"]["text"])) for row in examples]
        self.features = features.select_columns(["example_id", "offset_mapping"]).to_list()
        self.data = data
        self.latest: QAPredictions | None = None

    def __call__(self, evaluation: Any) -> dict[str, float]:
        start_logits, end_logits = evaluation.predictions
        self.latest = answers(self.examples, self.features, start_logits, end_logits, self.data)
        result = score(self.truths, self.latest.predictions, squad_v2=self.data.squad_v2)
        return {"exact_match": result.exact_match, "f1": result.f1}


def answers(
    examples: list[dict], features: list[dict], starts: Any, ends: Any, data: QAData
) -> QAPredictions:
    """Answers from the windows' start/end logits under this homework's settings (n-best size, answer length,
    SQuAD v2 and its null threshold): what scoring and `hw predict` both read."""
    return postprocess_qa_predictions(
        examples,
        features,
        starts,
        ends,
        n_best_size=data.n_best_size,
        max_answer_length=data.max_answer_length,
        squad_v2=data.squad_v2,
        null_score_threshold=data.null_score_threshold,
    )


def _write_answers(run_dir: Path, answers: QAPredictions) -> None:
    """`eval_predictions.json` ({id: text}, the official format) and the n-best lists."""
    runs.write_json(run_dir / "eval_predictions.json", answers.predictions)
    runs.write_json(run_dir / "eval_nbest_predictions.json", answers.nbest)


def _samples(answers: QAPredictions, examples: Any) -> list[dict[str, Any]]:
    """One sample per question: its answers, the prediction, and whether they match."""
    samples = []
    for row in examples:
        truths = list(dict.fromkeys(row["answers"]["text"])) or [""]
        prediction = answers.predictions[row["id"]]
        samples.append(
            {
                "question": row["question"],
                "answers": truths,
                "prediction": prediction,
                "correct": any(exact_match(prediction, truth) for truth in truths),
            }
        )
    return samples


def _overfitting_notes(epochs: list[dict[str, Any]]) -> list[str]:
    """A warning when the validation loss rose at two or more evaluations in a row, else nothing."""
    losses = [row["validation_loss"] for row in epochs]
    rises = longest = 0
    for before, after in zip(losses, losses[1:], strict=False):
        rises = rises + 1 if after > before else 0
        longest = max(longest, rises)
    if longest < 2:
        return []
    trail = " → ".join(f"{loss:.4f}" for loss in losses)
    return [
        f"Overfitting: the validation loss rose {longest} evaluations in a row ({trail}). Train fewer epochs, "
        "or keep the best checkpoint with --set train.metric_for_best_model=f1 (and train.early_stopping_patience)."
    ]
