"""Whisper on CTranslate2: the scored model `hw.models.whisper` loaded, converted once and loaded back for generation
(the one place besides `hw.models` that loads weights, and only those `hw.models` loaded first)."""

import logging
import shutil
from pathlib import Path

from hw import models, runs

log = logging.getLogger(__name__)


def whisper(scored: models.Loaded, directory: Path, compute_type: str | None = None) -> models.Loaded:
    """The scored (merged) Whisper of `models.whisper` converted to CTranslate2: int8 on a CPU, float16 on CUDA,
    unless `compute_type` (CTranslate2's: `float32`, `int8`, `float16`, ...) says otherwise.

    Converted once into `directory` with CTranslate2's own `TransformersConverter`, from the merged weights saved
    beside it; a later call (a resumed run) loads the conversion already there. The model of the result is a
    `speech.Ctranslate2Whisper`, which `speech.transcribe_features` generates with.
    """
    import ctranslate2
    import torch
    from ctranslate2.converters import TransformersConverter

    from hw import speech

    device = "cuda" if torch.cuda.is_available() else "cpu"
    compute_type = compute_type or ("float16" if device == "cuda" else "int8")
    converted = directory / f"ctranslate2-{compute_type}"
    with runs.main_process_first():  # the other processes of a distributed run load the main one's conversion
        if not (converted / "model.bin").is_file():
            merged = directory / "ctranslate2-source"
            scored.model.save_pretrained(merged)
            scored.processor.save_pretrained(merged)
            log.info("converting the scored model to CTranslate2 (%s) in %s", compute_type, converted)
            TransformersConverter(str(merged)).convert(str(converted), quantization=compute_type, force=True)
            shutil.rmtree(merged)
    # As many threads as torch uses (the cores this process may use), not CTranslate2's default of 4.
    converted_model = ctranslate2.models.Whisper(
        str(converted), device=device, compute_type=compute_type, intra_threads=torch.get_num_threads()
    )
    return models.Loaded(
        speech.Ctranslate2Whisper(converted_model, scored.model.config.max_target_positions),
        scored.processor,
        f"{scored.weights}, converted to CTranslate2 {compute_type}",
    )
