import json
import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer
from typer.testing import CliRunner

from hw import config
from hw.cli import app
from hw.errors import ConfigError
from hw.tasks.qa import QAConfig, QAData, _overfitting_notes, to_features
from hw.tiny import assets

TABLE_HEADER = "| Source | Epoch | Training loss | Validation loss | Exact match (EM) | F1 |"


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """Offline tiny assets built once; one torch thread: a ~290k-parameter model runs fastest on one, and
    far faster than on two when other processes load the cores."""
    root = tmp_path_factory.mktemp("qa")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HW_CACHE", str(root / "cache"))
        patch.setenv("HF_DATASETS_CACHE", str(root / "datasets"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.chdir(root)
        yield root
    torch.set_num_threads(threads)


def _hw(command: str):
    """Run `hw COMMAND` (no argument holds a space) and expect success."""
    result = CliRunner().invoke(app, command.split())
    assert result.exit_code == 0, result.output
    return result


def _read(run_dir: Path, name: str):
    return json.loads((run_dir / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def untrained(environment) -> Path:
    _hw("qa --tiny --eval-only --output-dir untrained --reports-dir reports-untrained")
    return environment / "untrained"


@pytest.fixture(scope="module")
def trained(environment) -> Path:
    # 2000 of the 4000 synthetic questions keep this file well under a minute on two busy cores.
    _hw("qa --tiny --max-train-samples 2000 --output-dir trained --reports-dir reports-trained")
    return environment / "trained"


@pytest.mark.slow
def test_training_answers_far_better_than_the_untrained_base(untrained, trained):
    before, after = _read(untrained, "metrics.json"), _read(trained, "metrics.json")
    assert before["weights"] == (
        "base model tiny:distilbert-qa; its QA head (qa_outputs.bias, qa_outputs.weight) started from random weights"
    )
    assert after["weights"].startswith(
        f"fine-tuned in this run ({Path('trained') / 'model'}) from base model"
    )
    assert before["final"]["exact_match"] < 10
    assert after["final"]["exact_match"] > before["final"]["exact_match"] + 25
    assert after["final"]["f1"] > before["final"]["f1"] + 25


@pytest.mark.slow
def test_a_run_writes_official_predictions_epochs_and_the_report_table(trained, environment):
    metrics = _read(trained, "metrics.json")
    assert set(metrics["final"]) == {"exact_match", "f1", "validation_loss"}
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert all(row["validation_loss"] > 0 and row["training_loss"] > 0 for row in metrics["epochs"])
    assert metrics["epochs"][-1]["f1"] == pytest.approx(metrics["final"]["f1"])
    assert metrics["data"] == {"train": 2000, "eval": 400}
    predictions = _read(trained, "eval_predictions.json")
    assert len(predictions) == 400 and all(isinstance(text, str) for text in predictions.values())
    assert predictions.keys() == _read(trained, "eval_nbest_predictions.json").keys()
    samples = [json.loads(line) for line in (trained / "samples.jsonl").read_text().splitlines()]
    assert list(samples[0]) == ["question", "answers", "prediction", "correct"]
    assert 100 * sum(row["correct"] for row in samples) / 400 == pytest.approx(
        metrics["final"]["exact_match"]
    )
    fragment = (environment / "reports-trained" / "fragments" / "qa" / f"{trained.name}.md").read_text()
    assert TABLE_HEADER in fragment


@pytest.mark.slow
def test_eval_only_on_the_saved_run_reproduces_its_scores(trained, environment):
    _hw("qa --tiny --eval-only --checkpoint trained --output-dir rescored")
    rescored = _read(environment / "rescored", "metrics.json")
    assert rescored["weights"] == f"checkpoint trained ({Path('trained') / 'model'}) (QA head included)"
    assert rescored["final"]["exact_match"] == _read(trained, "metrics.json")["final"]["exact_match"]
    assert rescored["final"]["f1"] == _read(trained, "metrics.json")["final"]["f1"]


@pytest.mark.slow
def test_continuing_from_a_saved_model_keeps_its_head_and_the_best_epoch(untrained, trained, environment):
    _hw(
        "qa --tiny --variant qa-continue --max-train-samples 500 --output-dir continued "
        "--set model.name_or_path=trained/model --set train.num_train_epochs=1 "
        "--set train.metric_for_best_model=f1 --set train.early_stopping_patience=1"
    )
    continued = _read(environment / "continued", "metrics.json")
    assert continued["weights"].endswith("from base model trained/model (QA head included)")
    assert len(continued["epochs"]) == 1
    assert continued["final"]["f1"] > _read(untrained, "metrics.json")["final"]["f1"] + 25


@pytest.mark.slow
def test_padding_every_window_to_max_length_changes_no_prediction(trained, environment):
    _hw("qa --tiny --eval-only --checkpoint trained --output-dir padded --set data.padding=max_length")
    padded = environment / "padded"
    assert _read(padded, "eval_predictions.json") == _read(trained, "eval_predictions.json")
    assert _read(padded, "metrics.json")["final"]["f1"] == _read(trained, "metrics.json")["final"]["f1"]


def _context_text(tokenizer, feature: dict) -> str:
    """The context part of a window: its tokens that have character offsets."""
    ids = [
        token for token, offset in zip(feature["input_ids"], feature["offset_mapping"], strict=True) if offset
    ]
    return tokenizer.decode(ids)


def test_windows_overlap_and_those_without_the_answer_point_at_cls(environment):
    tokenizer = AutoTokenizer.from_pretrained(assets.materialize("tiny:distilbert-qa"))
    context = "Nora lives in Oslo. Nora owns a cat."
    rows = [
        {
            "id": "oslo",
            "context": context,
            "question": "  Where does Nora live?",
            "answers": {"text": ["Oslo"], "answer_start": [14]},
        },
        {
            "id": "cat",
            "context": context,
            "question": "What pet does Nora own?",
            "answers": {"text": ["cat"], "answer_start": [32]},
        },
    ]
    # 13 tokens per window: [CLS] + question (5 or 6 tokens) + [SEP] + context + [SEP], overlapping by 2 tokens.
    features = to_features(Dataset.from_list(rows), tokenizer, QAData(max_length=13, doc_stride=2))
    windows = {
        example: [
            (_context_text(tokenizer, row), row["start_positions"], row["end_positions"])
            for row in features
            if row["example_id"] == example
        ]
        for example in ("oslo", "cat")
    }
    assert windows["oslo"] == [
        ("nora lives in oslo.", 10, 10),
        ("oslo. nora owns a", 7, 7),
        ("owns a cat.", 0, 0),
    ]
    assert windows["cat"] == [
        ("nora lives in oslo", 0, 0),
        ("in oslo. nora", 0, 0),
        (". nora owns a", 0, 0),
        ("owns a cat.", 10, 10),
    ]
    first = next(row for row in features if row["example_id"] == "oslo")
    assert first["offset_mapping"][:8] == [None] * 7 + [[0, 4]]  # question and [CLS]/[SEP] have no offsets
    assert tokenizer.decode(first["input_ids"][1:6]) == "where does nora live?"  # leading spaces dropped
    assert [row["length"] for row in features] == sorted((row["length"] for row in features), reverse=True)
    padded = to_features(
        Dataset.from_list(rows), tokenizer, QAData(max_length=13, doc_stride=2, padding="max_length")
    )
    # The last window of "oslo" has 12 real tokens and one [PAD]: its offsets stop before the padding.
    assert [(len(row["input_ids"]), len(row["offset_mapping"]), row["length"]) for row in padded] == [
        (13, 13, 13)
    ] * 6 + [(13, 12, 12)]


def test_validation_loss_rising_twice_in_a_row_is_flagged_as_overfitting():
    (note,) = _overfitting_notes([{"validation_loss": loss} for loss in (1.5173, 1.6589, 1.8581)])
    assert note.startswith(
        "Overfitting: the validation loss rose 2 evaluations in a row (1.5173 → 1.6589 → 1.8581)"
    )
    assert _overfitting_notes([{"validation_loss": loss} for loss in (1.2494, 1.1617, 1.1588)]) == []
    assert _overfitting_notes([{"validation_loss": loss} for loss in (1.0, 1.1, 1.0, 1.2)]) == []
    assert _overfitting_notes([]) == []


@pytest.mark.parametrize("variant", ["qa", "qa-continue"])
@pytest.mark.parametrize("tiny_preset", [False, True])
def test_every_packaged_config_loads(variant, tiny_preset):
    cfg = config.load(QAConfig, "qa", variant, run={"tiny": tiny_preset})
    assert cfg.data.max_length > cfg.data.doc_stride
    assert cfg.model.name_or_path == (
        "tiny:distilbert-qa"
        if tiny_preset
        else {"qa": "distilbert-base-uncased", "qa-continue": "runs/qa/<run>/model"}[variant]
    )


def test_course_defaults():
    cfg = config.load(QAConfig, "qa")
    assert (cfg.data.max_length, cfg.data.doc_stride, cfg.data.padding) == (384, 128, "dynamic")
    assert (cfg.train.learning_rate, cfg.train.per_device_train_batch_size, cfg.train.num_train_epochs) == (
        2e-5,
        64,
        3,
    )
    assert cfg.train.weight_decay == 0.01 and cfg.train.eval_strategy == "epoch"


def test_squad_v2_on_squad_v1_data_and_a_stride_as_long_as_the_window_are_config_errors():
    with pytest.raises(
        ConfigError,
        match=r"data\.squad_v2: on, but dataset 'squad' is SQuAD v1\.1; also --set data\.dataset=squad_v2",
    ):
        config.load(QAConfig, "qa", overrides=["data.squad_v2=true"])
    with pytest.raises(ConfigError, match=r"data\.doc_stride: 384 must be at least 0 and below max_length"):
        config.load(QAConfig, "qa", overrides=["data.doc_stride=384"])


def test_squad_v2_flag_sets_the_config_key():
    result = CliRunner().invoke(app, ["qa", "--squad-v2"])
    assert result.exit_code == 2
    assert "data.squad_v2: on, but dataset 'squad' is SQuAD v1.1" in result.stderr


def test_continuing_needs_a_saved_model(environment):
    result = CliRunner().invoke(app, ["qa", "--variant", "qa-continue"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "hw: error: model.name_or_path: 'runs/qa/<run>/model' does not exist; give a directory saved with save_pretrained"
    )


@pytest.mark.slow
def test_notes_of_a_run_appear_in_its_report_fragment(trained, tmp_path):
    from hw import report, runs

    run_dir = tmp_path / "overfit"
    shutil.copytree(trained, run_dir, ignore=shutil.ignore_patterns("model", "checkpoints"))
    epochs = [{"epoch": e, "validation_loss": v} for e, v in ((1, 1.5173), (2, 1.6589), (3, 1.8581))]
    metrics = {**_read(run_dir, "metrics.json"), "epochs": epochs, "notes": _overfitting_notes(epochs)}
    runs.write_json(run_dir / "metrics.json", metrics)
    fragment = report.write_fragment(run_dir, tmp_path / "reports").read_text()
    assert "\n> **Note:** Overfitting: the validation loss rose 2 evaluations in a row (1.5173 → " in fragment
