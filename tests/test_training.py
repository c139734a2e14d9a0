"""`build_trainer` against transformers 5's loss scaling: only losses that count tokens get the token count."""

from pathlib import Path

import pytest
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from hw.config import LoraConfig, TrainConfig
from hw.training import build_trainer, with_lora

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
def test_a_causal_lm_divides_by_the_token_count(adapted: bool, tmp_path: Path) -> None:
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, num_key_value_heads=2, **SIZES))
    if adapted:
        model = with_lora(model, LoraConfig(r=2, alpha=4, target_modules=["q_proj"]), task_type="CAUSAL_LM")
    assert _trainer(model, tmp_path).model_accepts_loss_kwargs is True
