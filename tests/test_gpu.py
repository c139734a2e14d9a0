"""GPU paths on the tiny presets: half-precision training, Whisper LoRA on an 8-bit base, merged-adapter scoring.

Run with `pytest -m gpu` on a CUDA machine; everywhere else they skip. The 4-bit QLoRA path is in
tests/tasks/test_tang.py. Written on a machine without a GPU: the first CUDA session runs them for the first time.
"""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hw.cli import app

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
runner = CliRunner()


def _run(tmp_path: Path, name: str, *args: str) -> Path:
    run_dir = tmp_path / name
    result = runner.invoke(
        app, [*args, "--output-dir", str(run_dir), "--reports-dir", str(tmp_path / "reports")]
    )
    assert result.exit_code == 0, result.output
    return run_dir


def _read(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_yelp_trains_in_half_precision(precision: str, tmp_path: Path) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    run_dir = _run(tmp_path, precision, "yelp", "--tiny", "--set", f"train.precision={precision}")
    assert _read(run_dir, "env.json")["device"] == torch.cuda.get_device_name(0)
    assert _read(run_dir, "metrics.json")["final"]["accuracy"] >= 0.5  # chance: 0.2
    losses = [
        entry["loss"] for entry in _read(run_dir, "trainer_state.json")["log_history"] if "loss" in entry
    ]
    assert losses and all(loss == loss for loss in losses)  # no NaN from an fp16 overflow


def test_whisper_lora_on_an_8bit_base_then_the_merged_adapter_scores_alike(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    trained = _run(tmp_path, "train", "whisper", "--lang", "zh", "--tiny", "--set", "quantization=8bit")
    log = (trained / "run.log").read_text(encoding="utf-8")
    assert (
        "needs one, so the model loads in full precision" not in log
    )  # it really loaded through bitsandbytes
    cer = _read(trained, "metrics.json")["final"]["cer"]
    assert cer < 0.5  # the untrained tiny base scores about 0.9 on this voice
    scored = _run(
        tmp_path, "score", "whisper", "--lang", "zh", "--tiny", "--eval-only", "--checkpoint", str(trained)
    )
    metrics = _read(scored, "metrics.json")
    assert "merged for inference" in metrics["weights"]
    assert abs(metrics["final"]["cer"] - cer) <= 0.02
