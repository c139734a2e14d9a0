"""`hw tang`: QLoRA-tune a chat model to continue Tang poems, generate the test poems, and score them offline."""

import itertools
import logging
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, set_seed

from hw import models, runs
from hw.config import LoraConfig, ModelConfig, Quantization, ReferenceRun, RunOptions, TrainConfig
from hw.errors import HwError
from hw.generation import (
    IGNORE_INDEX,
    TANG_FORMAT,
    PromptFormat,
    build_prompt,
    extract_answer,
    generate_batch,
    tokenize_example,
)
from hw.metrics.poem import score_poems, split_clauses, strip_echo
from hw.record import RunRecord
from hw.tasks.tang.poems import Poems, TangData, load_poems
from hw.training import (
    build_trainer,
    evaluation_history,
    mean_logged_loss,
    parameter_counts,
    train,
    trainer_state,
)

log = logging.getLogger(__name__)

REFERENCE_SCORES = ("char_f1", "chrf")  # the scores that need a ground truth
SAMPLE_POEMS = 3  # test poems shown before and after fine-tuning


@dataclass(frozen=True)
class PromptConfig:
    """How a poem becomes the model's text."""

    chat_template: bool = False
    """Wrap the course's messages in the tokenizer's own chat template instead of the course's Llama-2 template."""
    train_on_prompt: bool = False
    """Compute the loss on the prompt too (the course's collator does); by default only the answer counts."""


@dataclass(frozen=True)
class Decoding:
    """How the test poems are generated (`generate` arguments); the defaults are the course's."""

    do_sample: bool = True
    """Sample the next token (`--do-sample`); false decodes greedily, or by beam search with num_beams > 1."""
    temperature: float = 0.1
    """Sampling temperature: below 1 sharpens the distribution, above 1 flattens it."""
    top_p: float = 0.3
    """Nucleus sampling: draw from the smallest set of tokens whose probabilities sum to this."""
    top_k: int = 50
    """Draw from the k likeliest tokens only (transformers' default; the course leaves it); 0 turns it off."""
    num_beams: int = 1
    """Beams of beam search; 1 means none."""
    no_repeat_ngram_size: int = 3
    """Never repeat an n-gram of this many tokens (0: allowed)."""
    max_new_tokens: int = 128
    """Tokens generated per poem at most."""

    def problems(self) -> list[str]:
        allowed = {
            "temperature": ("above 0", self.temperature > 0),
            "top_p": ("in (0, 1]", 0 < self.top_p <= 1),
            "top_k": ("0 or more", self.top_k >= 0),
            "num_beams": ("at least 1", self.num_beams >= 1),
            "no_repeat_ngram_size": ("0 or more", self.no_repeat_ngram_size >= 0),
            "max_new_tokens": ("at least 1", self.max_new_tokens >= 1),
        }
        return [
            f"{key}: {getattr(self, key)!r} must be {rule}" for key, (rule, ok) in allowed.items() if not ok
        ]


@dataclass(frozen=True)
class EvalSettings:
    """What is generated and scored besides the fine-tuned model's test poems."""

    batch_size: int = 8
    """Prompts per `generate` call (left-padded batches)."""
    before_training: bool = True
    """Also score the model without adapters (the homework's "before"), shown beside the tuned scores."""
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    """Decoding grid, e.g. {temperature: [0.1, 0.7]}: the test poems are generated once per combination."""

    def problems(self) -> list[str]:
        return [] if self.batch_size >= 1 else [f"batch_size: {self.batch_size!r} must be at least 1"]


@dataclass(frozen=True)
class TangConfig:
    """One `hw tang` run."""

    run: RunOptions
    model: ModelConfig
    data: TangData
    train: TrainConfig
    lora: LoraConfig
    quantization: Quantization = "4bit"
    """bitsandbytes quantization of the frozen base on CUDA (`4bit`: QLoRA's NF4); full precision on a CPU."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: Decoding = field(default_factory=Decoding)
    eval: EvalSettings = field(default_factory=EvalSettings)
    reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown above this run's in the report."""

    def problems(self) -> list[str]:
        found = self._sweep_problems()
        if self.data.validation_size == 0 and self.train.eval_strategy != "no":
            found.append(
                f"train.eval_strategy: {self.train.eval_strategy!r} needs a validation set; "
                "set data.validation_size above 0 or train.eval_strategy to 'no'"
            )
        return found

    def _sweep_problems(self) -> list[str]:
        names = [spec.name for spec in fields(Decoding)]
        found = []
        for key, values in self.eval.sweep.items():
            if key not in names:
                found.append(f"eval.sweep.{key}: not a decoding setting; choose from {', '.join(names)}")
                continue
            kind = type(getattr(self.generation, key))
            for value in values:
                numeric = (int, float) if kind is float else kind
                if isinstance(value, bool) != (kind is bool) or not isinstance(value, numeric):
                    found.append(f"eval.sweep.{key}: {value!r} is not of type {kind.__name__}")
                    continue
                problems = replace(self.generation, **{key: value}).problems()
                found += [f"eval.sweep.{problem}" for problem in problems if problem.startswith(f"{key}:")]
        return found


@dataclass(frozen=True)
class Generated:
    """One scored generation pass: per test item its input, prediction, reference, raw output and scores; means."""

    samples: list[dict[str, Any]]
    summary: dict[str, float]


def run(cfg: TangConfig, run_dir: Path) -> RunRecord:
    """Score the untuned model, fine-tune (unless eval-only), then generate and score the test poems."""
    poems = load_poems(cfg.data, need_train=not cfg.run.eval_only)
    # New adapters when training, which starts from the base (--checkpoint is read with --eval-only only).
    loaded = models.causal_lm(
        models.resolve(cfg.model, cfg.run.checkpoint),
        cfg.quantization,
        None if cfg.run.eval_only else cfg.lora,
    )
    tokenizer, model, weights = loaded.processor, loaded.model, loaded.weights
    prompt_format = tang_format(cfg)
    _warn_unknown_characters(tokenizer, poems, cfg.model.name_or_path)
    prompts = [build_prompt(tokenizer, prompt_format, record)[0] for record in poems.test]
    generate = partial(_generate, model, tokenizer, prompts, poems, cfg)
    untuned = None
    if cfg.eval.before_training and hasattr(model, "disable_adapter"):  # PEFT: the base is one switch away
        with model.disable_adapter():
            untuned = generate(cfg.generation)
    history, losses, state = [], {}, None
    if not cfg.run.eval_only:
        history, losses, state = _fine_tune(model, tokenizer, poems, cfg, run_dir, prompt_format)
        weights = models.trained_sentence(run_dir / "model")
    tuned = generate(cfg.generation)
    _write_results(run_dir, tuned)
    final = {**tuned.summary, **losses}
    sizes = {"train": poems.train, "validation": poems.validation, "test": poems.test}
    tables = _before_after(untuned, tuned) + _sweep(generate, cfg)
    log.info("form %.3f on %d test poems (%s)", final["form"], len(poems.test), weights)
    return RunRecord(
        final=final,
        epochs=history,
        weights=weights,
        dataset=cfg.data.directory or cfg.data.test_file,
        data={name: len(split) for name, split in sizes.items() if split},
        model=parameter_counts(model),
        tables=tables,
        samples=tuned.samples,
        trainer_state=state,
    )


def tang_format(cfg: TangConfig) -> PromptFormat:
    """The prompt format of a run: the course's Llama-2 template, or the tokenizer's chat template."""
    return PromptFormat(template=None) if cfg.prompt.chat_template else TANG_FORMAT


def generation_arguments(decoding: Decoding) -> dict[str, Any]:
    """The `generate` arguments of one decoding setting."""
    arguments = {key: getattr(decoding, key) for key in ("do_sample", "num_beams", "no_repeat_ngram_size")}
    arguments["max_new_tokens"] = decoding.max_new_tokens
    if decoding.do_sample:  # greedy and beam search ignore these (and transformers warns about them)
        arguments.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=decoding.top_k)
    return arguments


def _warn_unknown_characters(tokenizer: Any, poems: Poems, model_name: str) -> None:
    """Say when poem characters have no token (the tiny model's on real poems): they become <unk>."""
    records = poems.train + poems.validation + poems.test
    characters = sorted(set("".join(record["input"] + record.get("output", "") for record in records)))
    encoded = tokenizer(characters, add_special_tokens=False)["input_ids"]
    unknown = [char for char, ids in zip(characters, encoded, strict=True) if tokenizer.unk_token_id in ids]
    if unknown:  # never with byte-level tokenizers, which have no <unk>
        log.warning(
            "the tokenizer of %s has no token for %d of the %d distinct characters in the poems (e.g. %s): "
            "they become %s, which the model can neither learn nor write (expected with --tiny on real poems)",
            model_name, len(unknown), len(characters), "".join(unknown[:10]), tokenizer.unk_token,
        )  # fmt: skip


def _fine_tune(
    model: Any, tokenizer: Any, poems: Poems, cfg: TangConfig, run_dir: Path, prompt_format: PromptFormat
) -> tuple[list[dict[str, float]], dict[str, float], dict[str, Any]]:
    """Train the adapters and save them; return the evaluation history, the final losses and the Trainer's state."""
    train_features = _features(poems.train, tokenizer, cfg, prompt_format)
    if not train_features:
        raise HwError(
            f"no training poem keeps an answer token within data.cutoff_len={cfg.data.cutoff_len}; raise it"
        )
    validation_features = _features(poems.validation, tokenizer, cfg, prompt_format)
    cuda = torch.cuda.is_available()
    trainer = build_trainer(
        model,
        cfg.train,
        run_dir,
        train_dataset=train_features,
        eval_dataset=validation_features or None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8 if cuda else None),
        processing_class=tokenizer,
        remove_unused_columns=False,  # PEFT's forward signature hides the model's input names
        label_names=["labels"],
    )
    train(trainer, run_dir, cfg.run.resume)
    trainer.save_model(str(run_dir / "model"))
    history = evaluation_history(trainer.state.log_history)
    training_loss = mean_logged_loss(trainer.state.log_history)
    losses = {} if training_loss is None else {"training_loss": training_loss}
    if validation_features:
        losses["validation_loss"] = trainer.evaluate()["eval_loss"]
    return history, losses, trainer_state(trainer)


def _features(
    records: list[dict], tokenizer: Any, cfg: TangConfig, prompt_format: PromptFormat
) -> list[dict]:
    """Token ids and labels of each poem, from the generation prompt; the loss covers the answer by default."""
    examples = [
        tokenize_example(
            tokenizer,
            *build_prompt(tokenizer, prompt_format, record, record["output"]),
            cutoff_len=cfg.data.cutoff_len,
            mask_prompt=not cfg.prompt.train_on_prompt,
        )
        for record in records
    ]
    kept = [example for example in examples if example["labels"][-1] != IGNORE_INDEX]  # masks cover a prefix
    if len(kept) < len(examples):
        log.warning(
            "dropped %d of %d poems whose prompt fills the %d-token cutoff (no answer token left to learn)",
            len(examples) - len(kept), len(examples), cfg.data.cutoff_len,
        )  # fmt: skip
    return kept


def _generate(
    model: Any, tokenizer: Any, prompts: list[str], poems: Poems, cfg: TangConfig, decoding: Decoding
) -> Generated:
    """Generate every test poem with one decoding setting, extract the answers and score them."""
    set_seed(cfg.train.seed)  # every pass samples from the same seed, so settings compare fairly
    raw = generate_batch(model, tokenizer, prompts, generation_arguments(decoding), cfg.eval.batch_size)
    couplets = [record["input"] for record in poems.test]
    predictions = [
        extract_answer(text, echoes=[couplet]) for text, couplet in zip(raw, couplets, strict=True)
    ]
    items, summary = score_poems(couplets, predictions, poems.references or [""] * len(raw))
    dropped = () if poems.references else REFERENCE_SCORES  # without ground truth, overlap would read 0
    rows = zip(couplets, predictions, poems.references or [None] * len(raw), raw, items, strict=True)
    samples = [
        dict(zip(("input", "prediction", "reference", "raw_output"), row, strict=True))
        | _without(item, dropped)
        for *row, item in rows
    ]
    return Generated(samples, _without(summary, dropped))


def _without(scores: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    return {name: value for name, value in scores.items() if name not in names}


def _write_results(run_dir: Path, tuned: Generated) -> None:
    """`results.txt` in the course's format (`1. {input}{prediction}`, one line each)."""
    lines = [
        f"{i}. {row['input']}{row['prediction'].replace(chr(10), ' ')}\n"
        for i, row in enumerate(tuned.samples, 1)
    ]
    runs.write_text(run_dir / "results.txt", "".join(lines))


def _before_after(untuned: Generated | None, tuned: Generated) -> list[dict[str, Any]]:
    """The homework's before/after: mean scores, and the first test poems, of both models side by side."""
    if untuned is None:
        return []
    scores = [[name, untuned.summary[name], value] for name, value in tuned.summary.items()]
    pairs = zip(untuned.samples[:SAMPLE_POEMS], tuned.samples, strict=False)
    columns = ["Untuned base", "Fine-tuned"]
    return [
        {"title": f"Before and after fine-tuning ({len(tuned.samples)} test poems, means)",
         "columns": ["Score", *columns], "rows": scores},
        {"title": "Test poems before and after fine-tuning", "columns": ["First couplet", *columns],
         "rows": [[before["input"], before["prediction"], after["prediction"]] for before, after in pairs]},
    ]  # fmt: skip


def _sweep(generate: Any, cfg: TangConfig) -> list[dict[str, Any]]:
    """Generate once per combination of the decoding grid: scores, diversity, length and the first poem of each."""
    if not cfg.eval.sweep:
        return []
    rows = []
    for values in itertools.product(*cfg.eval.sweep.values()):
        setting = dict(zip(cfg.eval.sweep, values, strict=True))
        result = generate(replace(cfg.generation, **setting))
        poems = [split_clauses(strip_echo(row["input"], row["prediction"])) for row in result.samples]
        summary = result.summary
        rows.append(
            [", ".join(f"{key}={value}" for key, value in setting.items()), summary["form"], summary.get("char_f1", "—"),
             summary["distinct_1"], summary["distinct_2"], mean(sum(map(len, poem)) for poem in poems),
             result.samples[0]["prediction"]]
        )  # fmt: skip
    columns = ["Setting", "Form", "Char F1", "Distinct-1", "Distinct-2", "Characters", "First poem"]
    title = f"Decoding sweep ({len(result.samples)} test poems; other settings as in generation.*)"
    return [{"title": title, "columns": columns, "rows": rows}]
