"""`build_trainer`: the length-grouped training order of `group_by_length` and evaluation in dataset order, both
through the Trainer subclasses' sampler hooks, and transformers 5's loss scaling (only losses that count tokens
get the token count)."""

import importlib
import json
import os
import random
import signal
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    Seq2SeqTrainer,
    Trainer,
    TrainerCallback,
)

from hw import interrupts
from hw.config import LoraConfig, TrainConfig
from hw.errors import Interrupted
from hw.interrupts import interruptible
from hw.models import add_lora
from hw.training import (
    HwSeq2SeqTrainer,
    HwTrainer,
    LengthGroupedBatches,
    build_trainer,
    drop_checkpoints,
    last_complete_checkpoint,
    parameter_counts,
    train,
    training_arguments,
)


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[start : start + size] for start in range(0, len(order), size)]


def test_batches_are_neighbours_in_length_and_the_longest_comes_first():
    lengths = [5, 1, 4, 2, 3, 6]  # sorted longest first: indices 5, 0, 2, 4, 3, 1
    batches = _batches(list(LengthGroupedBatches(lengths, batch_size=2, seed=0)), 2)
    assert batches[0] == [5, 0]
    assert sorted(sorted(batch) for batch in batches[1:]) == [[1, 3], [2, 4]]


def test_a_partial_batch_goes_last_so_every_cut_falls_on_a_batch_boundary():
    lengths = [10, 20, 30, 40, 50, 60, 70]
    order = list(LengthGroupedBatches(lengths, batch_size=3, seed=1))
    assert sorted(order) == list(range(7))
    assert order[-1] == 0  # the shortest review is the one left over
    assert all(
        max(lengths[i] for i in batch) - min(lengths[i] for i in batch) == 20
        for batch in _batches(order, 3)[:2]
    )


def test_each_epoch_shuffles_reproducibly():
    lengths = list(range(100))
    sampler = LengthGroupedBatches(lengths, batch_size=4, seed=7)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert second != first
    assert second[:4] == first[:4]  # the longest batch leads every epoch


def test_padding_efficiency_beats_transformers_mega_batches_on_a_long_tail():
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = random.Random(3)
    lengths = [min(512, int(generator.lognormvariate(4.7, 0.7))) + 2 for _ in range(2000)]

    def efficiency(order: list[int]) -> float:
        computed = sum(len(batch) * max(lengths[i] for i in batch) for batch in _batches(order, 16))
        return sum(lengths) / computed

    ours = efficiency(list(LengthGroupedBatches(lengths, batch_size=16, seed=0)))
    theirs = efficiency(
        list(LengthGroupedSampler(16, lengths=lengths, generator=torch.Generator().manual_seed(0)))
    )
    assert ours > 0.97
    assert theirs < 0.95


SIZES = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


def _trainer(model, tmp_path: Path):
    train = TrainConfig(gradient_accumulation_steps=2, eval_strategy="no")
    return build_trainer(
        model,
        train,
        tmp_path,
        train_dataset=None,
        eval_dataset=None,
        data_collator=None,
        processing_class=None,
    )


def test_a_classifier_averages_its_own_loss_so_accumulation_divides_it(tmp_path: Path) -> None:
    """Otherwise transformers 5 skips the division: the logged loss of 5 classes read 3.22 (2 × ln 5) at start."""
    model = BertForSequenceClassification(BertConfig(vocab_size=50, num_labels=5, **SIZES))
    assert _trainer(model, tmp_path).model_accepts_loss_kwargs is False


@pytest.mark.parametrize("adapted", [False, True], ids=["full", "lora"])
def test_saved_weights_are_readable_as_the_umask_allows(adapted: bool, tmp_path: Path) -> None:
    """safetensors writes 0600 whatever the umask; a teammate in the group must read the model (issue 13)."""
    from tests.test_runs import mode, umask

    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, num_key_value_heads=2, **SIZES))
    if adapted:
        model = add_lora(model, LoraConfig(r=2, alpha=4, target_modules=["q_proj"]), task_type="CAUSAL_LM")
    with umask(0o022):
        _trainer(model, tmp_path).save_model(str(tmp_path / "model"))
    assert {path.name: mode(path) for path in (tmp_path / "model").glob("*.safetensors")} == {
        ("adapter_model" if adapted else "model") + ".safetensors": 0o644
    }


@pytest.mark.parametrize("adapted", [False, True], ids=["full", "lora"])
def test_a_causal_lm_divides_by_the_token_count(adapted: bool, tmp_path: Path) -> None:
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, num_key_value_heads=2, **SIZES))
    if adapted:
        model = add_lora(model, LoraConfig(r=2, alpha=4, target_modules=["q_proj"]), task_type="CAUSAL_LM")
    assert _trainer(model, tmp_path).model_accepts_loss_kwargs is True


@pytest.mark.parametrize("seq2seq", [False, True], ids=["trainer", "seq2seq"])
def test_the_dataloaders_come_from_our_sampler_hooks(seq2seq: bool, tmp_path: Path, monkeypatch) -> None:
    """If transformers renamed `_get_train_sampler` or `_get_eval_sampler`, its own samplers would come back
    without an error: training in its mega-batch order, evaluation length-grouped too (out of dataset order)."""
    for hook in ("_get_train_sampler", "_get_eval_sampler"):
        assert hasattr(Trainer, hook) and hasattr(Seq2SeqTrainer, hook), f"transformers renamed {hook}"
    trainer_class = HwSeq2SeqTrainer if seq2seq else HwTrainer
    called = []

    def spy(hook: str):
        ours = getattr(trainer_class, hook)
        return lambda self, dataset=None: called.append(hook) or ours(self, dataset)

    for hook in ("_get_train_sampler", "_get_eval_sampler"):
        monkeypatch.setattr(trainer_class, hook, spy(hook))
    lengths = [3, 9, 1, 7, 5, 8, 2, 6, 4, 10]
    rows = [{"input_ids": [1] * length, "labels": index} for index, length in enumerate(lengths)]
    train = TrainConfig(
        per_device_train_batch_size=2, per_device_eval_batch_size=2, group_by_length=True, seed=3
    )
    trainer = build_trainer(
        BertForSequenceClassification(BertConfig(vocab_size=50, num_labels=2, **SIZES)),
        train,
        tmp_path,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=lambda batch: {"labels": torch.tensor([row["labels"] for row in batch])},
        processing_class=None,
        seq2seq=seq2seq,
    )
    assert type(trainer) is trainer_class

    def order(dataloader) -> list[int]:
        return [index for batch in dataloader for index in batch["labels"].tolist()]

    assert order(trainer.get_train_dataloader()) == list(LengthGroupedBatches(lengths, 2, seed=3))
    assert order(trainer.get_eval_dataloader()) == list(range(len(lengths)))
    assert called == ["_get_train_sampler", "_get_eval_sampler"]


def test_a_4bit_weight_counts_two_weights_per_byte() -> None:
    class Params4bit(torch.nn.Parameter):  # bitsandbytes' packed weight, recognised by its class name
        pass

    model = torch.nn.Linear(8, 4)  # 32 weights + 4 biases
    model.weight = Params4bit(torch.zeros(16, 1, dtype=torch.uint8), requires_grad=False)
    assert parameter_counts(model) == {"trainable_parameters": 4, "total_parameters": 36}


def test_drop_checkpoints_keeps_everything_but_the_trainers_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "checkpoint-8").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-8" / "trainer_state.json").write_text("{}")
    (tmp_path / "model").mkdir()
    (tmp_path / "trainer_state.json").write_text("{}")
    drop_checkpoints(tmp_path)
    drop_checkpoints(tmp_path)  # already gone: nothing to do
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "trainer_state.json"]


def test_an_extra_argument_overrides_the_configs(tmp_path: Path) -> None:
    arguments = training_arguments(
        TrainConfig(eval_strategy="no"), tmp_path, save_strategy="no", use_cpu=True
    )
    assert (arguments.save_strategy, arguments.use_cpu) == ("no", True)
    assert training_arguments(TrainConfig(eval_strategy="no"), tmp_path).save_strategy == "epoch"


def test_optimizer_and_checkpointing_keys_reach_the_trainer(tmp_path: Path) -> None:
    train = TrainConfig(eval_strategy="no", optim="adafactor", max_grad_norm=0.5, gradient_checkpointing=True)
    arguments = training_arguments(train, tmp_path)
    assert (arguments.optim, arguments.max_grad_norm) == ("adafactor", 0.5)
    assert (arguments.activation_checkpointing, arguments.activation_checkpointing_kwargs) == (
        True,
        {"use_reentrant": False},
    )
    assert training_arguments(TrainConfig(eval_strategy="no"), tmp_path).optim == "adamw_torch_fused"
    assert TrainConfig(max_grad_norm=-1).problems() == ["max_grad_norm: -1 must be 0 or more"]


def test_without_evaluation_checkpoints_come_every_save_steps_or_else_every_epoch(tmp_path: Path) -> None:
    every_40 = training_arguments(TrainConfig(eval_strategy="no", save_steps=40), tmp_path)
    assert (every_40.save_strategy, every_40.save_steps) == ("steps", 40)
    per_epoch = training_arguments(TrainConfig(eval_strategy="no"), tmp_path)
    assert per_epoch.save_strategy == "epoch"
    # With evaluation, checkpoints follow it (the best one can be kept): save_steps is not read.
    evaluated = training_arguments(TrainConfig(eval_strategy="steps", eval_steps=25, save_steps=40), tmp_path)
    assert (evaluated.save_strategy, evaluated.save_steps) == ("steps", 25)
    assert TrainConfig(save_steps=0).problems() == ["save_steps: 0 must be null or at least 1"]


@pytest.mark.parametrize(("homework", "variant"), [("tang", "tang"), ("tang", "tang-breeze"), ("atc", "atc")])
def test_long_runs_without_evaluation_checkpoint_every_few_dozen_steps(homework: str, variant: str) -> None:
    from hw import config
    from hw.cli import HOMEWORKS

    def recipe(tiny: bool) -> TrainConfig:
        schema = getattr(importlib.import_module(f"hw.tasks.{homework}"), HOMEWORKS[homework][2])
        cfg = config.load(schema, homework, variant, run={"tiny": tiny})
        return cfg.corrector.train if homework == "atc" else cfg.train

    assert recipe(tiny=False).eval_strategy == "no" and 0 < recipe(tiny=False).save_steps <= 60
    assert recipe(tiny=True).save_steps is None  # tiny runs keep one checkpoint per epoch


def test_a_signal_stops_training_after_that_step_with_a_checkpoint_and_no_extra_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT sent while step 3 of 5 in the first epoch runs: checkpoint-3, and none of the epoch's evaluation."""
    monkeypatch.setattr(sys, "argv", ["/usr/bin/hw", "yelp", "--tiny"])
    rows = [{"input_ids": [1] * length, "labels": length % 2} for length in range(1, 11)]
    trainer = build_trainer(
        BertForSequenceClassification(BertConfig(vocab_size=50, num_labels=2, **SIZES)),
        TrainConfig(
            per_device_train_batch_size=2, num_train_epochs=2, eval_strategy="epoch", logging_steps=1
        ),
        tmp_path,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=lambda batch: {
            "input_ids": torch.ones(len(batch), 4, dtype=torch.long),
            "labels": torch.tensor([row["labels"] for row in batch]),
        },
        processing_class=None,
    )

    class SignalAtStep3(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs) -> None:
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    trainer.add_callback(SignalAtStep3())
    with pytest.raises(Interrupted) as raised, interruptible(tmp_path):
        train(trainer, tmp_path, resume=False)
    assert raised.value.exit_code == 130
    assert (
        str(raised.value)
        == f"interrupted after step 3; continue with: hw yelp --tiny --resume --output-dir {tmp_path}"
    )
    assert last_complete_checkpoint(tmp_path / "checkpoints") == str(
        tmp_path / "checkpoints" / "checkpoint-3"
    )
    saved = json.loads((tmp_path / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in saved["log_history"]] == [1, 2, 3]  # losses only, no evaluation
    assert signal.getsignal(signal.SIGINT) is not interrupts._on_signal  # the handler is put back
