"""The one place that turns a `TrainConfig` into `TrainingArguments` and a (Seq2Seq)Trainer; resuming, histories."""

import dataclasses
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler, SequentialSampler
from transformers import (
    EarlyStoppingCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainingArguments,
)
from transformers.integrations import TensorBoardCallback

from hw import runs
from hw.config import TrainConfig
from hw.interrupts import StopWhenInterrupted, stop_if_interrupted
from hw.record import TRAINER_STATE_FILE
from hw.trackers import RunDirTensorBoard
from hw.weight_checks import torn_file

log = logging.getLogger(__name__)


def precision_flags(precision: str) -> dict[str, bool]:
    """`bf16`/`fp16` Trainer flags; `auto` uses the best the GPU supports and fp32 on CPU."""
    if precision == "auto":
        if not torch.cuda.is_available():
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


# Metrics a smaller value of which is better: losses and error rates.
LOWER_IS_BETTER = ("loss", "wer", "cer")


def training_arguments(train: TrainConfig, run_dir: Path, *, seq2seq: bool = False, **extra: Any):
    """`TrainingArguments` from the config; `extra` carries the few homework-specific ones, or overrides one."""
    arguments_class = Seq2SeqTrainingArguments if seq2seq else TrainingArguments
    evaluate = train.eval_strategy != "no"
    best = train.metric_for_best_model
    arguments = dict(
        output_dir=str(run_dir / "checkpoints"),
        learning_rate=train.learning_rate,
        num_train_epochs=train.num_train_epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_train_batch_size,
        per_device_eval_batch_size=train.per_device_eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay,
        optim=train.optim,
        max_grad_norm=train.max_grad_norm,
        # transformers 5's name for gradient checkpointing; non-reentrant, as `models.add_lora` asks for k-bit
        # training: reentrant checkpointing fails under DDP.
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
        warmup_steps=train.warmup_steps,
        lr_scheduler_type=train.lr_scheduler_type,
        eval_strategy=train.eval_strategy,
        eval_steps=train.eval_steps,
        # Checkpoints follow evaluations so the best one can be kept; with none, every `save_steps` or epoch.
        save_strategy=train.eval_strategy if evaluate else ("epoch" if train.save_steps is None else "steps"),
        save_steps=train.eval_steps if evaluate else train.save_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=best is not None and evaluate,
        metric_for_best_model=best,
        greater_is_better=None if best is None else not best.endswith(LOWER_IS_BETTER),
        logging_steps=train.logging_steps,
        seed=train.seed,
        data_seed=train.seed,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        report_to=train.report_to,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Processes without CUDA train together over gloo only when accelerate is told they run on CPU.
        use_cpu=runs.world_size() > 1 and not torch.cuda.is_available(),
        **precision_flags(train.precision),
    )
    return arguments_class(**(arguments | extra))


def build_trainer(
    model: Any,
    train: TrainConfig,
    run_dir: Path,
    *,
    train_dataset: Any,
    eval_dataset: Any,
    data_collator: Any,
    processing_class: Any,
    compute_metrics: Any = None,
    seq2seq: bool = False,
    generated_metrics: Callable[[Any], dict[str, float]] | None = None,
    **extra: Any,
) -> Trainer:
    """A Trainer (or Seq2SeqTrainer) wired to the config, with early stopping when configured, that stops with a
    checkpoint on SIGINT/SIGTERM (`interrupts`); `generated_metrics` as `HwSeq2SeqTrainer`'s."""
    trainer_class = HwSeq2SeqTrainer if seq2seq else HwTrainer
    callbacks = [StopWhenInterrupted()]
    if train.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=train.early_stopping_patience))
    train_order = None
    if train.group_by_length and train_dataset is not None:
        # Lengths are read here, before the Trainer drops the columns the model does not take (`length`).
        train_order = LengthGroupedBatches(
            _lengths(train_dataset), train.per_device_train_batch_size, train.seed
        )
    trainer = trainer_class(
        train_order=train_order,
        model=model,
        args=training_arguments(train, run_dir, seq2seq=seq2seq, **extra),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        processing_class=processing_class,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        **({"generated_metrics": generated_metrics} if generated_metrics else {}),
    )
    if trainer.pop_callback(TensorBoardCallback) is not None:  # the one `report_to` added, writing elsewhere
        trainer.add_callback(RunDirTensorBoard(run_dir / "tb"))
    # transformers 5 hands `num_items_in_batch` to every model whose forward takes **kwargs, and then neither
    # divides the loss by the accumulation steps nor lets DDP's averaging stand (it multiplies by the number of
    # processes). Only causal-LM losses use that count; classification, QA and Whisper average their own, so
    # their loss and gradients came out accumulation steps × processes times too large (3.22 for ln 5 = 1.61).
    trainer.model_accepts_loss_kwargs = _loss_counts_tokens(model)
    return trainer


class _HwSampling:
    """The samplers of `hw`'s trainers, through the hooks transformers 5's `Trainer` calls when it builds a
    DataLoader (`_get_train_sampler`, `_get_eval_sampler`; tests/test_training.py fails if they are renamed)."""

    def __init__(self, *args: Any, train_order: Sampler[int] | None = None, **kwargs: Any) -> None:
        self.train_order = train_order
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int] | None:
        """`train_order` (the length-grouped batches) when given, else the Trainer's own sampler."""
        if self.train_order is not None:
            return self.train_order
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset: Any) -> Sampler[int]:
        """Dataset order: transformers 5 applies `group_by_length` to evaluation batches too, shuffling
        predictions, and tasks pair predictions with their examples (samples.jsonl, QA windows)."""
        return SequentialSampler(eval_dataset)


class _ReadableSaves:
    """Saved weights readable as the umask allows: safetensors writes them 0600 (see `runs.open_to_umask`)."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's save (of checkpoints too: `_save_checkpoint` calls it), then the modes widened."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            runs.open_to_umask(Path(output_dir or self.args.output_dir))


class HwTrainer(_ReadableSaves, _HwSampling, Trainer):
    """`Trainer` with `hw`'s samplers and readable saves."""


class HwSeq2SeqTrainer(_ReadableSaves, _HwSampling, Seq2SeqTrainer):
    """`Seq2SeqTrainer` with `hw`'s samplers and readable saves; each evaluation adds `generated_metrics(model)`
    (`eval_wer`, …), so they are logged, kept in the log history and can pick the best checkpoint."""

    def __init__(
        self, *args: Any, generated_metrics: Callable[[Any], dict[str, float]] | None = None, **kwargs
    ):
        self.generated_metrics = generated_metrics
        super().__init__(*args, **kwargs)

    def evaluation_loop(self, *args: Any, metric_key_prefix: str = "eval", **kwargs: Any) -> Any:
        """The loss loop, then the generated metrics of a validation (`eval`) pass, in the Trainer's precision."""
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.generated_metrics is not None and metric_key_prefix == "eval":
            with self.autocast_smart_context_manager():
                scores = self.generated_metrics(self.model)
            output.metrics.update({f"{metric_key_prefix}_{key}": value for key, value in scores.items()})
        return output


class LengthGroupedBatches(Sampler[int]):
    """Training order for `group_by_length`: batches of near-equal length, visited in random order.

    Every example is sorted by length (ties broken at random) and the order is cut into batches, as fairseq's
    `batch_by_size` does; each epoch shuffles the batches but keeps the longest first, so an out-of-memory error
    shows at the first step. transformers' `LengthGroupedSampler` sorts only within mega-batches of at most 50
    batches, which left 12.6 % of the computed tokens as padding on 2000 Yelp reviews (bench/bench_yelp.py).
    A partial batch goes last, so the DataLoader's cuts every `batch_size` indices fall on batch boundaries.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) at each epoch: a new, reproducible shuffle."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        tie_breaks = torch.rand(len(self.lengths), generator=generator).tolist()
        order = sorted(range(len(self.lengths)), key=lambda index: (-self.lengths[index], tie_breaks[index]))
        full = len(order) - len(order) % self.batch_size
        starts = list(range(0, full, self.batch_size))
        # The first start is the longest batch; the others are shuffled behind it.
        starts[1:] = [
            starts[1 + i] for i in torch.randperm(max(len(starts) - 1, 0), generator=generator).tolist()
        ]
        for start in starts:
            yield from order[start : start + self.batch_size]
        yield from order[full:]


def _lengths(dataset: Any) -> list[int]:
    """Token counts of a tokenized dataset (or list of examples): its `length` column, else from `input_ids`."""
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return [len(example["input_ids"]) for example in dataset]
    return list(dataset["length"] if "length" in columns else map(len, dataset["input_ids"]))


def _loss_counts_tokens(model: Any) -> bool:
    """Whether the model's loss divides by the `num_items_in_batch` the Trainer passes: causal LMs' does."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT adapters
    return type(base).__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()


def parameter_counts(model: Any) -> dict[str, int]:
    """Trainable and total parameters (a module kept in full by PEFT counts once)."""
    trainable = sum(_weights(p) for p in model.parameters() if p.requires_grad)
    total = sum(_weights(p) for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}


def _weights(parameter: Any) -> int:
    """The weights a parameter holds: bitsandbytes packs 4-bit weights two to a byte of its storage type
    (peft's `get_nb_trainable_parameters` counts them the same way)."""
    if type(parameter).__name__ == "Params4bit":
        return parameter.numel() * 2 * parameter.element_size()
    return parameter.numel()


def train(trainer: Trainer, run_dir: Path, resume: bool) -> None:
    """Train; when resuming, continue from the newest complete checkpoint and delete half-written ones; raise
    `interrupts.Stopped` when a signal ended training (after saving a checkpoint)."""
    checkpoint = None
    if resume:
        checkpoints = run_dir / "checkpoints"
        checkpoint = runs.agreed(last_complete_checkpoint(checkpoints))
        drop_incomplete_checkpoints(checkpoints)
        log.info("resuming from %s", checkpoint or "the start (no complete checkpoint yet)")
    trainer.train(resume_from_checkpoint=checkpoint)
    stop_if_interrupted(trainer.state.global_step)


def drop_checkpoints(run_dir: Path) -> None:
    """Delete the Trainer's `checkpoints/` (`training_arguments`) once training is over and the model saved:
    they only serve resuming a killed run."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def drop_incomplete_checkpoints(checkpoints: Path) -> None:
    """Delete (from the main process) each `checkpoint-<step>` directory that cannot be resumed from, saying why."""
    for directory in _checkpoints(checkpoints):
        why = _incomplete(directory)
        if why and runs.is_main_process():
            log.warning("deleting %s: %s", directory, why)
            shutil.rmtree(directory, ignore_errors=True)


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest `checkpoint-<step>` directory the Trainer finished saving, every weight file whole; None when
    there is none."""
    return next(
        (str(directory) for directory in _checkpoints(checkpoints) if not _incomplete(directory)), None
    )


def _checkpoints(checkpoints: Path) -> list[Path]:
    """The Trainer's `checkpoint-<step>` directories, newest first."""
    found = [path for path in checkpoints.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", path.name)]
    return sorted(found, key=lambda path: int(path.name.removeprefix("checkpoint-")), reverse=True)


def _incomplete(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from; None when it can.

    transformers 5 (`Trainer._save_checkpoint`) writes `trainer_state.json` last, and not atomically: a save
    killed earlier leaves weights without it. A partial copy or a power loss (the Trainer fsyncs nothing) can
    leave that file whole beside a truncated model or optimizer file, which `--resume` would crash on.
    """
    try:
        json.loads((checkpoint / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its save never finished (no complete trainer_state.json)"
    try:
        torn = torn_file(checkpoint, (".safetensors", ".pt", ".pth", ".bin"))
    except OSError as error:  # deleted while read: the Trainer rotating its checkpoints
        return f"unreadable ({error.strerror})"
    return f"{torn[0].name} is damaged ({torn[1]})" if torn else None


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """The Trainer's state: losses and metrics of every logging step, steps, batch size (trainer_state.json)."""
    return dataclasses.asdict(trainer.state)


def write_trainer_state(trainer: Trainer, folder: Path) -> None:
    """`trainer_state.json` of a stage's folder, written atomically (a run's own comes with its `RunRecord`)."""
    runs.write_json(folder / TRAINER_STATE_FILE, trainer_state(trainer), sort_keys=True)


def evaluation_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One row per evaluation: epoch, step, training loss, validation loss and the metrics.

    The training loss of a row is the mean of the training losses logged since the previous evaluation
    (every `logging_steps`), so it describes the same stretch of training as the validation numbers.
    """
    rows, pending = [], []
    for entry in log_history:
        if "loss" in entry and "eval_loss" not in entry:
            pending.append(entry["loss"])
        elif "eval_loss" in entry:
            row = {"epoch": round(entry["epoch"], 2), "step": entry["step"]}
            row["training_loss"] = sum(pending) / len(pending) if pending else None
            row["validation_loss"] = entry["eval_loss"]
            row.update(
                {
                    key.removeprefix("eval_"): value
                    for key, value in entry.items()
                    if key.startswith("eval_")
                    and key != "eval_loss"
                    and not key.endswith(("runtime", "per_second"))
                }
            )
            rows.append(row)
            pending = []
    return rows


def kept_model_note(state: dict[str, Any], metric: str | None) -> str | None:
    """The sentence that says which evaluation's model was kept (`load_best_model_at_end`); None without one."""
    step = state.get("best_global_step")
    if metric is None or step is None:
        return None
    evaluations = sum(f"eval_{metric}" in entry for entry in state["log_history"])
    last = "the last one" if step == state["global_step"] else f"not the last (step {state['global_step']})"
    return (
        f"The model kept is step {step}'s: best validation {metric} ({state['best_metric']:.4f}) of "
        f"{evaluations} evaluations, {last}."
    )


def mean_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The mean training loss per optimizer step up to the last logged step; None when no loss was logged.

    Each logged loss is the mean since the one before, so it weighs that many steps. The Trainer's own
    `train_loss` covers only the steps of its last `train()` call (0.0 after a resume from the final
    checkpoint), where the logged losses come back with the checkpoint's trainer state.
    """
    total, previous = 0.0, 0
    for entry in log_history:
        if "loss" in entry:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    return total / previous if previous else None
