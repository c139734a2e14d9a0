"""`hw export`: a finished run's model as a standalone folder, its LoRA adapter merged into the base, with its card.

The run is only read: everything is written to a hidden folder beside `--out`, renamed into place when whole.
"""

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hw import card, manifest
from hw.errors import HwError

log = logging.getLogger(__name__)


def finished_run(run_dir: Path) -> dict[str, Any]:
    """The manifest of a finished run.

    Raises:
        HwError: no run there, or an unfinished run.
    """
    run = manifest.read(run_dir) if run_dir.is_dir() else None
    if run is None:
        raise HwError(f"{str(run_dir)!r} is not a run directory (no run.json); give runs/<homework>/<run>")
    if run["status"] != "finished":
        raise HwError(
            f"run {str(run_dir)!r} is {run['status']}; finish it first (hw {run['homework']} --resume)"
        )
    return run


def saved_model(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """The manifest of a finished run and the model folder it saved.

    Raises:
        HwError: no finished run there (`finished_run`), or a run that saved no model (an eval-only run, `hw atc`).
    """
    run = finished_run(run_dir)
    folder = run_dir / "model"
    if not folder.is_dir():
        raise HwError(
            f"run {str(run_dir)!r} saved no model/ folder (an eval-only run, or hw atc, whose models live in "
            "its stages); give a run that trained a model"
        )
    return run, folder


def export(run_dir: Path, out: Path) -> list[str]:
    """Write the run's model to `out` as a plain transformers model: safetensors, tokenizer or processor,
    generation config, model card.

    Returns:
        Lines to tell the user (how a k-bit-trained adapter was merged).

    Raises:
        HwError: `out` is not new or empty, or lies inside the run; the run has no model (`saved_model`).
    """
    from hw import models

    run, folder = saved_model(run_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HwError(f"--out {str(out)!r} exists and is not an empty folder; give a new folder")
    if out.resolve().is_relative_to(run_dir.resolve()):
        raise HwError(f"--out {str(out)!r} lies inside the run {str(run_dir)!r}; export outside it")
    notes = []
    quantization = run["training"].get("quantization", "none")
    if models.is_adapter(folder) and quantization != "none":
        notes.append(
            f"the adapter was trained on a {quantization} base; it is merged into the base reloaded in full "
            "precision, as PEFT recommends (merging into quantized weights would round them)"
        )
    loaded = _merged(run, folder)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # a killed export's leftovers
    partial.mkdir(parents=True)
    loaded.model.save_pretrained(partial)  # safetensors, config, generation_config.json for generative models
    loaded.processor.save_pretrained(partial)
    card.write(run_dir, partial, merged=True)
    if out.exists():
        out.rmdir()
    os.replace(partial, out)
    return notes


def _merged(run: dict[str, Any], folder: Path) -> Any:
    """The run's model loaded by its homework's loader in full precision, any adapter merged into the base."""
    from hw import models, runner
    from hw.config import ModelConfig

    training, homework = run["training"], run["homework"]
    runner.build_tiny_assets(training)  # a tiny base is rebuilt where the run's cache is gone
    weights = models.resolve(ModelConfig(**training["model"]), str(folder))
    if homework == "yelp":
        loaded = models.classifier(weights, training["data"]["label_names"])
    elif homework == "qa":
        loaded = models.question_answering(weights, training["train"]["seed"])
    elif homework == "whisper":
        loaded = models.whisper(weights, training["language"], training["task"], precision="fp32")
    else:  # tang: the base in full precision, never the k-bit one it trained on
        loaded = models.causal_lm(weights, quantization="none")
    return models.Loaded(models.for_inference(loaded.model, "fp32"), loaded.processor, loaded.weights)
