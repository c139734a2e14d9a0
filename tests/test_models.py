"""hw.models: which weights load from which names, weights that do not fit refused first, the one quantization key."""

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    PreTrainedModel,
    WhisperForConditionalGeneration,
)
from transformers import WhisperConfig as WhisperModelConfig

from hw import config, models, weight_checks
from hw.config import LoraConfig, ModelConfig
from hw.errors import ConfigError, HwError
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


def _refuse_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_weights(cls, *args, **kwargs):
        raise AssertionError(f"{cls.__name__} weights loaded before the mismatch was reported")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(no_weights))


def _tiny_whisper(directory: Path, d_model: int) -> str:
    WhisperForConditionalGeneration(
        WhisperModelConfig(
            vocab_size=64,
            pad_token_id=1,
            bos_token_id=1,
            eos_token_id=1,
            decoder_start_token_id=2,
            d_model=d_model,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_source_positions=16,
            max_target_positions=16,
        )
    ).save_pretrained(directory)
    return str(directory)


def test_a_model_with_another_head_is_refused_before_loading(
    saved: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    BertForQuestionAnswering(BertConfig(vocab_size=32, **SIZES)).save_pretrained(tmp_path / "qa")
    _refuse_loading(monkeypatch)
    qa_checkpoint = models.resolve(ModelConfig(saved["base"]), str(tmp_path / "qa"))
    with pytest.raises(
        HwError, match=r"holds a BertForQuestionAnswering; hw yelp needs a …ForSequenceClassification"
    ):
        models.classifier(qa_checkpoint, LABELS)
    classifier_checkpoint = models.resolve(ModelConfig(saved["base"]), saved["full"])
    with pytest.raises(
        HwError, match=r"holds a BertForSequenceClassification; hw qa needs a …ForQuestionAnswering"
    ):
        models.question_answering(classifier_checkpoint, seed=0)
    whisper_base = models.resolve(ModelConfig(_tiny_whisper(tmp_path / "whisper", 8)))
    with pytest.raises(
        HwError, match=r"model\.name_or_path '.*whisper' holds a whisper model, which cannot be built"
    ):
        models.classifier(whisper_base, LABELS)
    with pytest.raises(
        HwError, match=r"holds a BertForSequenceClassification; hw whisper .* needs a WhisperForCond"
    ):
        models.whisper_processor(classifier_checkpoint, "fr")


def test_an_adapter_for_another_task_is_refused_before_loading(
    saved: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_loading(monkeypatch)
    adapter = models.resolve(ModelConfig(saved["base"]), saved["adapter"])  # a SEQ_CLS adapter
    with pytest.raises(
        HwError, match=r"PEFT adapter of task_type SEQ_CLS; hw tang .* needs task_type CAUSAL_LM"
    ):
        models.causal_lm(adapter, "none")


def test_a_qa_model_is_a_base_to_continue_training_on(tmp_path: Path) -> None:
    # qa-continue: --set model.name_or_path=<qa run>/model keeps training a QA model from its own head
    BertForQuestionAnswering(BertConfig(vocab_size=32, **SIZES)).save_pretrained(tmp_path / "qa")
    wordpiece_tokenizer(["who won"], cased=True).save_pretrained(tmp_path / "qa")
    loaded = models.question_answering(models.resolve(ModelConfig(str(tmp_path / "qa"))), seed=0)
    assert loaded.weights.endswith("(QA head included)")


def test_a_whisper_adapter_on_a_base_of_other_shapes_names_both_bases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    trained_on, same_shapes = _tiny_whisper(tmp_path / "small", 8), _tiny_whisper(tmp_path / "copy", 8)
    base = WhisperForConditionalGeneration.from_pretrained(trained_on)
    lora = LoraConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"])
    models.add_lora(base, lora, task_type=None).save_pretrained(tmp_path / "adapter")
    other = _tiny_whisper(tmp_path / "wide", 16)
    _refuse_loading(monkeypatch)
    with pytest.raises(
        HwError,
        match=rf"--checkpoint '.*adapter' is an adapter trained on base '{trained_on}', but model\.name_or_path "
        rf"is '{other}' \(d_model 8 there, 16 here\); --set model\.name_or_path={trained_on}",
    ):
        models.whisper_processor(models.resolve(ModelConfig(other), str(tmp_path / "adapter")), "fr")
    # a copy of the base under another name is the same base; one that cannot be read is assumed to be
    weights = models.resolve(ModelConfig(same_shapes), str(tmp_path / "adapter"))
    weight_checks.require_family(weights, "whisper")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    (tmp_path / "adapter" / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": "gone/away"})
    )
    weight_checks.require_family(weights, "whisper")
    assert "trained on gone/away, which cannot be read here" in caplog.text


def test_a_lora_target_the_model_lacks_lists_its_linear_modules(saved: dict[str, str]) -> None:
    model = BertForSequenceClassification.from_pretrained(saved["base"])
    lora = LoraConfig(r=2, alpha=4, target_modules=["querry", "value", "q_proj"])
    with pytest.raises(
        HwError,
        match=r"^LoRA target_modules 'querry', 'q_proj': no such module in BertForSequenceClassification, whose "
        r"linear modules are query, key, value, dense, classifier; did you mean 'query'\?$",
    ):
        models.add_lora(model, lora, task_type="SEQ_CLS")


def test_max_length_beyond_the_positions_is_refused_before_loading(
    saved: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_loading(monkeypatch)
    weights = models.resolve(ModelConfig(saved["base"]))
    weight_checks.require_max_length(weights, 512, "classifier")
    with pytest.raises(
        HwError, match=rf"^data\.max_length: 513 is above the 512 positions of '{saved['base']}'"
    ):
        weight_checks.require_max_length(weights, 513, "classifier")
