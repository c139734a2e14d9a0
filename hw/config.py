"""Configuration: packaged YAML defaults + a user's YAML file + `--set` overrides → one frozen dataclass.

Precedence, lowest first: the homework variant's YAML in `hw/configs/<homework>/`, its `tiny:` block (with
`--tiny`), the base an adapter checkpoint was trained on (so that it is scored on that base), the user's
`--config FILE`, `--set key=value` overrides, then dedicated CLI flags (which arrive as overrides too).
Conversion is strict: unknown keys get a suggestion, wrong types and out-of-range values are rejected, and every
problem is reported in one `ConfigError`.
"""

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from hw import config_layers
from hw.config_convert import convert, default_value, is_required
from hw.errors import ConfigError, HwError


@dataclass(frozen=True)
class ModelConfig:
    """Which pretrained weights to start from."""

    name_or_path: str
    """Hugging Face Hub id, a local directory saved with `save_pretrained`, or `tiny:NAME`."""
    revision: str = "main"
    """Hub branch, tag or commit; recorded in env.json so a run can be repeated on the same weights."""
    trust_remote_code: bool = False
    """Run Python code shipped with a Hub model. Off unless you trust its authors; reports say when it is on."""


@dataclass(frozen=True)
class DataSource:
    """Marks a config string as data a run reads, so `hw doctor` checks it whatever the field is called."""

    hub: bool
    """True: a dataset `hw.sources` loads (Hub id or local folder); False: a file or folder read directly."""


Dataset = Annotated[str, DataSource(hub=True)]
"""Type of a dataset field: Hub id, local dataset folder, or `tiny:NAME`."""
DataPath = Annotated[str, DataSource(hub=False)]
"""Type of a data file or folder a homework reads itself, never from the Hub, or `tiny:NAME`."""


@dataclass(frozen=True)
class TokenBound:
    """Marks a config int as the most tokens of one example's text, so `hw doctor` sizes activations by it."""


Tokens = Annotated[int, TokenBound()]
"""Type of a token-length setting (`max_length`, `cutoff_len`, a transcript's `max_new_tokens`): it sets the
sequence length of the models beside it (the largest one counts)."""
Quantization = Literal["4bit", "8bit", "none"]
"""Type of a bitsandbytes quantization setting (CUDA only; QLoRA's NF4, LLM.int8(), or full precision): it
applies to the models beside and below it."""


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings, named as in `transformers.TrainingArguments`."""

    learning_rate: float = 5e-5
    """Peak learning rate of AdamW; it then decays by `lr_scheduler_type`."""
    num_train_epochs: float = 3.0
    """Passes over the training set."""
    per_device_train_batch_size: int = 16
    """Examples per optimizer micro-step on each device."""
    per_device_eval_batch_size: int = 8
    """Examples per forward pass at evaluation."""
    gradient_accumulation_steps: int = 1
    """Micro-steps summed before each optimizer step; effective batch = batch size × this × devices."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to `learning_rate`."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warm-up (`linear`, `cosine`, `constant`, …)."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 trains for `num_train_epochs`."""
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    """When to evaluate (and checkpoint): every epoch, every `eval_steps`, or only at the end."""
    eval_steps: float | None = None
    """Optimizer steps between evaluations with `eval_strategy: steps`; below 1, a fraction of all training steps
    (0.2 evaluates five times whatever the data size, as in `TrainingArguments`)."""
    logging_steps: int = 30
    """Optimizer steps between training-loss log lines."""
    save_steps: int | None = None
    """Optimizer steps between checkpoints without evaluation (else they follow it); None saves one per epoch.
    Long runs set it so that a preempted or killed run loses little work."""
    save_total_limit: int = 2
    """Checkpoints kept in the run directory; older ones are deleted."""
    seed: int = 42
    """Seeds Python, NumPy and torch before the model is created, and the Trainer's data order."""
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """`auto` picks bf16 on a GPU that supports it, else fp16 on a GPU, else fp32 on CPU."""
    group_by_length: bool = True
    """Batch examples of similar length together so dynamic padding wastes little compute."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement of `metric_for_best_model`."""
    metric_for_best_model: str | None = None
    """Metric that picks the checkpoint kept at the end (e.g. `accuracy`, `f1`; `wer`, `cer`, `loss`: lower is
    better); None keeps the last."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory (full fine-tuning of a large model), ~30 % slower
    (`TrainingArguments.activation_checkpointing` since transformers 5)."""
    optim: str = "adamw_torch_fused"
    """Optimizer, as `TrainingArguments.optim` (`adamw_torch_fused`, `adamw_torch`, `adafactor`, `adamw_bnb_8bit`…)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm; 0 turns clipping off."""
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """Experiment trackers the Trainer logs to (`none`, `tensorboard`, `wandb`, any it accepts); TensorBoard
    writes under the run directory's `tb/`."""

    def problems(self) -> list[str]:
        """Out-of-range values, as `key: problem` strings."""
        checks = {
            "learning_rate": ("between 0 and 1", 0 < self.learning_rate < 1),
            "num_train_epochs": ("above 0", self.num_train_epochs > 0),
            "per_device_train_batch_size": ("at least 1", self.per_device_train_batch_size >= 1),
            "per_device_eval_batch_size": ("at least 1", self.per_device_eval_batch_size >= 1),
            "gradient_accumulation_steps": ("at least 1", self.gradient_accumulation_steps >= 1),
            "weight_decay": ("0 or more", self.weight_decay >= 0),
            "max_grad_norm": ("0 or more", self.max_grad_norm >= 0),
            "warmup_steps": ("0 or more", self.warmup_steps >= 0),
            "logging_steps": ("at least 1", self.logging_steps >= 1),
            "save_total_limit": ("at least 1", self.save_total_limit >= 1),
            "save_steps": ("null or at least 1", self.save_steps is None or self.save_steps >= 1),
            "max_steps": (
                "-1 (train num_train_epochs) or at least 1",
                self.max_steps == -1 or self.max_steps >= 1,
            ),
        }
        found = [
            f"{key}: {getattr(self, key)!r} must be {rule}" for key, (rule, ok) in checks.items() if not ok
        ]
        if self.eval_strategy == "steps" and not self.eval_steps:
            found.append("eval_steps: required when eval_strategy is 'steps'")
        elif self.eval_steps is not None and not (
            0 < self.eval_steps < 1 or float(self.eval_steps).is_integer()
        ):
            found.append(
                f"eval_steps: {self.eval_steps!r} must be a whole number of steps or a fraction of training below 1"
            )
        if "none" in self.report_to and len(self.report_to) > 1:
            found.append(f"report_to: {self.report_to!r} names trackers and none; keep one or the other")
        if self.early_stopping_patience is not None and self.metric_for_best_model is None:
            found.append("metric_for_best_model: required with early_stopping_patience")
        return found


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (PEFT): only these small matrices (and `modules_to_save`) are trained."""

    r: int = 8
    """Rank of each adapter; trainable parameters grow linearly with it."""
    alpha: float = 16
    """Scaling numerator: the update is multiplied by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter's input."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Names of the linear layers that receive adapters."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full besides the adapters (e.g. a classification head)."""

    def problems(self) -> list[str]:
        found = [] if self.r >= 1 else [f"r: {self.r!r} must be at least 1"]
        if not 0 <= self.dropout < 1:
            found.append(f"dropout: {self.dropout!r} must be in [0, 1)")
        if not self.target_modules:
            found.append("target_modules: must name at least one module")
        return found


@dataclass(frozen=True)
class ReferenceRun:
    """Published numbers shown above this run's rows in the report."""

    source: str
    """Who measured them, on what; a source starting `course` or `homework` fills that glance-table column."""
    rows: list[dict[str, float]]
    """One row per epoch (or one final row), keyed by the report's column names."""


@dataclass(frozen=True)
class RunOptions:
    """How this invocation runs; set by CLI flags rather than YAML, and saved with the config."""

    homework: str
    """The command (`yelp`, `qa`, …)."""
    variant: str
    """The packaged config the run started from (`yelp`, `yelp-full`, `imdb-lora`, …)."""
    tiny: bool = False
    """The embedded offline preset: tiny random model and synthetic data. Never a real result."""
    eval_only: bool = False
    """Skip training; score `checkpoint` (or the base model when none is given)."""
    checkpoint: str | None = None
    """Saved model or adapter directory to evaluate with `eval_only`."""
    resume: bool = False
    """Continue the newest unfinished run (or `--output-dir`) from its newest checkpoint."""
    label: str | None = None
    """`--label`: words that set this run apart from the others of its variant in the summary."""

    def problems(self) -> list[str]:
        """Options that do not go together."""
        rules = {  # --eval-only --resume would score into the run it scores, and overwrite it
            "checkpoint: --checkpoint is only read with --eval-only; to keep training a saved model, use --set "
            "model.name_or_path=DIR": self.checkpoint is not None and not self.eval_only,
            "resume: --eval-only scores weights in a new run; drop --resume, pass --checkpoint RUN": self.eval_only
            and self.resume,
        }
        return [problem for problem, broken in rules.items() if broken]


def config_dir(homework: str) -> Path:
    """The packaged YAML folder of one homework."""
    return Path(str(resources.files("hw") / "configs" / homework))


def variants(homework: str) -> list[str]:
    """Names of the packaged configs of a homework, the default one (named like the homework) first."""
    names = sorted(path.stem for path in config_dir(homework).glob("*.yaml"))
    return sorted(names, key=lambda name: name != homework)


def load(
    schema: type,
    homework: str,
    variant: str | None = None,
    *,
    config_file: Path | None = None,
    overrides: list[str] = (),
    run: dict[str, Any] | None = None,
) -> Any:
    """Build the frozen config of one run.

    Args:
        schema: the homework's top-level config dataclass.
        homework: command name; selects `hw/configs/<homework>/`.
        variant: packaged config name; defaults to the homework's own.
        config_file: a user's YAML, merged over the packaged one.
        overrides: `key.sub=value` strings, values parsed as YAML (`3e-5`, `true`, `[a, b]`).
        run: `RunOptions` fields (tiny, eval_only, checkpoint, resume).
    """
    variant = variant or homework
    if variant not in variants(homework):
        raise HwError(
            f"unknown variant {variant!r} for hw {homework}; choose one of: {', '.join(variants(homework))}"
        )
    run = {"homework": homework, "variant": variant, **(run or {})}
    packaged = config_dir(homework) / f"{variant}.yaml"
    data, chosen = config_layers.merged(
        packaged, tiny=bool(run.get("tiny")), config_file=config_file, overrides=overrides
    )
    flags = {
        spec.name: default_value(spec) for spec in dataclasses.fields(RunOptions) if not is_required(spec)
    }
    config_layers.require_flags_agree(data.pop("run", None), {**flags, **run})
    config_layers.use_checkpoint_bases(data, run.get("checkpoint"), chosen)
    data["run"] = run
    problems: list[str] = []
    config = convert(schema, data, "", problems)
    if problems:
        raise ConfigError(problems)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-data view of a config, for config.yaml and reports."""
    return dataclasses.asdict(config)
