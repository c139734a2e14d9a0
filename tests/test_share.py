"""Sharing a finished tiny run: `hw export` (a standalone merged model that plain transformers loads)."""

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from tests.invoking import invoke, one_line_error

SENTENCES = ["It was good.", "Not a fan, don't recommed.", "This one is a pass."]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny `hw yelp --variant imdb-lora` run (a LoRA adapter in its model/ folder)."""
    root = tmp_path_factory.mktemp("share")
    invoke(["yelp", "--tiny", "--variant", "imdb-lora", "--max-train-samples", "64", "--max-eval-samples", "32",
            "--output-dir", str(root / "run"), "--reports-dir", str(root / "reports")])  # fmt: skip
    return root / "run"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _run_logits(run_dir: Path) -> list[float]:
    """The run's own adapter on its base, through `hw.models` as `hw yelp --eval-only` loads it."""
    import torch

    from hw import models
    from hw.config import ModelConfig

    training = json.loads((run_dir / "run.json").read_text())["training"]
    weights = models.resolve(ModelConfig(**training["model"]), str(run_dir / "model"))
    loaded = models.classifier(weights, training["data"]["label_names"])
    model = models.for_inference(loaded.model, "fp32")
    with torch.no_grad():
        return (
            model(**loaded.processor(SENTENCES, return_tensors="pt", padding=True)).logits.flatten().tolist()
        )


def test_export_writes_a_standalone_model_that_plain_transformers_loads(
    lora_run: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    before = _snapshot(lora_run)
    out = tmp_path / "exported"
    assert f"exported: {out}" in invoke(["export", str(lora_run), "--out", str(out)])
    assert _snapshot(lora_run) == before  # the run is only read
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert not list(tmp_path.glob(".*partial"))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer(SENTENCES, return_tensors="pt", padding=True)).logits
    assert logits.flatten().tolist() == pytest.approx(_run_logits(lora_run), abs=1e-5)  # the adapter, merged
    labels = [result["label"] for result in pipeline("text-classification", model=str(out))(SENTENCES)]
    assert labels == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert set(labels) <= {"Negative", "Positive"}
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "TINY — not a real result" in card.text


def test_export_of_a_k_bit_trained_adapter_says_it_merges_into_the_full_precision_base(
    lora_run: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from hw.cli import app

    copy = tmp_path / "run"
    shutil.copytree(lora_run, copy)
    manifest = json.loads((copy / "run.json").read_text())
    manifest["training"]["quantization"] = "4bit"
    (copy / "run.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["export", str(copy), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (
        "hw: the adapter was trained on a 4bit base; it is merged into the base reloaded in full precision"
        in (result.stderr)
    )


def test_export_refuses_a_used_out_folder_or_one_inside_the_run(lora_run: Path, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    assert one_line_error(["export", str(lora_run), "--out", str(tmp_path / "used")]) == (
        f"--out {str(tmp_path / 'used')!r} exists and is not an empty folder; give a new folder"
    )
    assert "lies inside the run" in one_line_error(
        ["export", str(lora_run), "--out", str(lora_run / "merged")]
    )
    assert not (lora_run / "merged").exists()
    assert "is not a run directory (no run.json)" in one_line_error(["export", str(tmp_path), "--out", "x"])
