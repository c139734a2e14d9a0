"""hw.models: which weights load from which names, and the one quantization key."""

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from hw import config, models
from hw.config import LoraConfig, ModelConfig
from hw.errors import ConfigError
from hw.tasks.whisper import WhisperConfig
from hw.tiny.classification import wordpiece_tokenizer

LABELS = ["bad", "good"]
SIZES = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, str]:
    """A base, a full fine-tuned copy (with its tokenizer) and a LoRA adapter (without one), as save_pretrained writes them."""
    tokenizer = wordpiece_tokenizer(["good bad film"], cased=True)
    base = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, num_labels=2, **SIZES))
    folders = {name: str(tmp_path / name) for name in ("base", "full", "adapter")}
    base.save_pretrained(folders["base"])
    tokenizer.save_pretrained(folders["base"])
    with torch.no_grad():
        base.classifier.bias.fill_(3.0)
    base.save_pretrained(folders["full"])
    tokenizer.save_pretrained(folders["full"])
    lora = LoraConfig(r=2, alpha=4, target_modules=["query"], modules_to_save=["classifier"])
    models.add_lora(base, lora, task_type="SEQ_CLS").save_pretrained(folders["adapter"])
    return folders


def test_a_full_checkpoint_with_its_tokenizer_needs_no_base(saved: dict[str, str]) -> None:
    # The base named in the config does not exist: a full model that saved its tokenizer does not need it.
    weights = models.resolve(ModelConfig("./no-such-base"), saved["full"])
    assert weights.base is None and not weights.adapter
    loaded = models.classifier(weights, LABELS)
    assert loaded.weights == f"checkpoint {saved['full']}"
    assert torch.equal(loaded.model.classifier.bias, torch.full((2,), 3.0))


def test_an_adapter_loads_on_its_base_with_the_base_tokenizer(saved: dict[str, str]) -> None:
    weights = models.resolve(ModelConfig(saved["base"]), saved["adapter"])
    assert weights.adapter and models.is_adapter(saved["adapter"]) and not models.is_adapter(saved["full"])
    loaded = models.classifier(weights, LABELS)
    assert loaded.model.peft_config["default"].r == 2
    assert loaded.processor.name_or_path == saved["base"]


def test_new_lora_trains_only_adapters_and_the_head(saved: dict[str, str]) -> None:
    lora = LoraConfig(r=2, alpha=4, target_modules=["query"], modules_to_save=["classifier"])
    loaded = models.classifier(models.resolve(ModelConfig(saved["base"])), LABELS, lora)
    trainable = [name for name, parameter in loaded.model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name or "modules_to_save" in name for name in trainable)
    assert loaded.weights == f"base model {saved['base']} (classification head untrained)"


def test_the_old_8bit_key_is_refused_with_the_new_name() -> None:
    with pytest.raises(ConfigError, match=r"load_in_8bit: unknown key; it was renamed: use quantization"):
        config.load(WhisperConfig, "whisper", "zh", overrides=["load_in_8bit=true"])
    cfg = config.load(WhisperConfig, "whisper", "zh", overrides=["quantization=4bit"])
    assert cfg.quantization == "4bit"


def test_quantization_without_cuda_loads_in_full_precision(caplog: pytest.LogCaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    assert models.quantized_loading("none") == {}
    assert models.quantized_loading("8bit") == {}
    assert "no CUDA device: 8bit quantization" in caplog.text
