"""Model cards: the runner writes one into every model a run saves, in the Hub's format, from the run's files."""

import dataclasses
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hw import card
from hw.config import LoraConfig, ModelConfig, RunOptions, TrainConfig
from hw.runner import run_homework
from tests.test_runner import RECORD


@dataclass(frozen=True)
class CardConfig:
    """The groups a card reads: the base, the data, the training settings, the adapter's."""

    run: RunOptions
    model: ModelConfig
    data: dict = field(default_factory=lambda: {"eval_split": "test"})
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraConfig | None = field(default_factory=LoraConfig)
    quantization: str = "4bit"


def _saving_task(monkeypatch: pytest.MonkeyPatch, *, saves: bool = True) -> None:
    """`hw.tasks.tang` replaced by a task that saves an adapter folder (when `saves`) and returns `RECORD`."""

    def run(cfg, run_dir: Path):
        if saves:
            (run_dir / "model").mkdir()
            (run_dir / "model" / "adapter_config.json").write_text("{}")
        return RECORD

    monkeypatch.setitem(sys.modules, "hw.tasks.tang", types.SimpleNamespace(run=run))
    monkeypatch.setattr(sys, "argv", ["/usr/bin/hw", "tang", "--data", "poems dir", "--tiny"])


def _config(base: str = "taide/TAIDE-LX-7B-Chat", **run: object) -> CardConfig:
    return CardConfig(run=RunOptions(homework="tang", variant="tang", **run), model=ModelConfig(base))


def test_the_runner_writes_a_card_the_hub_parses_into_the_model_it_saved(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _saving_task(monkeypatch)
    run_dir = run_homework(_config(), output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    loaded = ModelCard.load(run_dir / "model" / "README.md")  # raises on a malformed model-index
    metadata = loaded.data
    assert metadata.base_model == "taide/TAIDE-LX-7B-Chat" and metadata.library_name == "peft"
    assert metadata.language == "zh" and metadata.pipeline_tag == "text-generation"
    assert metadata.tags == ["hw", "tang", "lora", "peft"] and metadata.datasets is None  # tiny:poems
    (result,) = metadata.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_name) == ("accuracy", 0.75, "tiny:poems")
    text = loaded.text
    assert "```\nhw tang --data 'poems dir' --tiny\n```" in text  # run.json's command, quoted as typed
    assert json.loads((run_dir / "run.json").read_text())["command"] == "hw tang --data 'poems dir' --tiny"
    assert "Dataset `tiny:poems`: 8 train, 4 test." in text
    assert (
        "| train.learning_rate | 5e-05 |" in text
        and "| lora.r | 8 |" in text
        and "| quantization | 4bit |" in text
    )
    assert "| accuracy | 0.750 |" in text and "| 1 | 2 | 2.0000 | 1.5000 | 0.750 |" in text
    assert card.TINY_WARNING not in text  # not a tiny run


def test_a_tiny_run_is_labelled_and_local_names_stay_out_of_the_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _saving_task(monkeypatch)
    cfg = _config(str(tmp_path / "bases" / "my-llama"), tiny=True)
    run_dir = run_homework(cfg, output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    loaded = ModelCard.load(run_dir / "model" / "README.md")
    assert loaded.data.base_model is None and "tiny" in loaded.data.tags
    assert "TINY — not a real result" in loaded.text
    assert "A LoRA adapter (PEFT) on `my-llama`" in loaded.text and str(tmp_path / "bases") not in loaded.text


def test_a_merged_model_is_carded_as_a_transformers_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _saving_task(monkeypatch)
    run_dir = run_homework(_config(), output_dir=tmp_path / "run", reports_dir=tmp_path / "reports")
    (tmp_path / "merged").mkdir()
    loaded = ModelCard.load(card.write(run_dir, tmp_path / "merged", merged=True))
    assert loaded.data.library_name == "transformers" and "lora" not in loaded.data.tags
    assert "A model fine-tuned from `taide/TAIDE-LX-7B-Chat`" in loaded.text


def test_a_run_that_saved_no_model_gets_no_card(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _saving_task(monkeypatch, saves=False)
    cfg = _config()
    run_dir = run_homework(
        dataclasses.replace(cfg, lora=None), output_dir=tmp_path / "run", reports_dir=tmp_path / "reports"
    )
    assert not list(run_dir.rglob("README.md"))
