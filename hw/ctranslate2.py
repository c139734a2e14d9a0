"""Whisper on CTranslate2: the scored model `hw.models.whisper` loaded, converted once and loaded back for generation
(the one place besides `hw.models` that loads weights, and only those `hw.models` loaded first)."""

import logging
import os
import shutil
from pathlib import Path

from hw import models, runs

log = logging.getLogger(__name__)

# CTranslate2's compute types (`auto`: float32 on a CPU, float16 on CUDA).
COMPUTE_TYPES = ("auto", "float32", "int8", "int8_float32", "float16", "int8_float16", "bfloat16", "int8_bfloat16", "int16")  # fmt: skip
# AVX-512 as every AVX-512 CPU since Skylake-X (2017) has it: foundation, CD, DQ, BW and VL.
AVX512_FLAGS = {"avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl"}


def whisper(scored: models.Loaded, directory: Path, compute_type: str = "auto") -> models.Loaded:
    """The scored (merged) Whisper of `models.whisper` converted to CTranslate2 in `compute_type` (`auto`:
    float32 on a CPU, whose transcripts equal transformers', float16 on CUDA).

    Converted once into `directory` with CTranslate2's own `TransformersConverter`, from the merged weights saved
    beside it; a later call (a resumed run) loads the conversion already there. The model of the result is a
    `speech.Ctranslate2Whisper`, which `speech.transcribe_features` generates with.
    """
    import ctranslate2
    import torch
    from ctranslate2.converters import TransformersConverter

    from hw import speech

    device, compute_type = _resolved(compute_type)
    if device == "cpu":
        _prefer_avx512()
    converted = directory / f"ctranslate2-{compute_type}"
    with runs.main_process_first():  # the other processes of a distributed run load the main one's conversion
        if not (converted / "model.bin").is_file():
            merged = directory / "ctranslate2-source"
            scored.model.save_pretrained(merged)
            scored.processor.save_pretrained(merged)
            log.info("converting the scored model to CTranslate2 (%s) in %s", compute_type, converted)
            TransformersConverter(str(merged)).convert(str(converted), quantization=compute_type, force=True)
            shutil.rmtree(merged)
    # As many threads as torch uses (the cores this process may use), not CTranslate2's default of 4. On a CPU, in
    # two workers that `speech` keeps busy in parallel: whisper-base, 40 clips on 2 cores, float32, took 18.5 s
    # with two workers of one thread against 21.3 s with one worker of two, with the same transcripts.
    threads = torch.get_num_threads()
    workers = 2 if device == "cpu" and threads >= 2 else 1
    converted_model = ctranslate2.models.Whisper(
        str(converted),
        device=device,
        compute_type=compute_type,
        inter_threads=workers,
        intra_threads=threads // workers,
    )
    return models.Loaded(
        speech.Ctranslate2Whisper(converted_model, scored.model.config),
        scored.processor,
        f"{scored.weights}, converted to CTranslate2 {compute_type}",
    )


def problems(compute_type: str) -> list[str]:
    """Why CTranslate2 cannot run `compute_type` on this machine's device (checked before any work)."""
    import ctranslate2

    device, resolved = _resolved(compute_type)
    supported = ctranslate2.get_supported_compute_types(device)
    if resolved in supported:
        return []
    return [
        f"compute_type: {compute_type!r} is not supported by CTranslate2 on this {device}, which supports "
        f"{', '.join(sorted(supported))}; set eval.compute_type to one of them or to auto"
    ]


def _resolved(compute_type: str) -> tuple[str, str]:
    """The device and the compute type `auto` stands for there (float32 on a CPU, float16 on CUDA)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "float32"
    return device, compute_type


def _prefer_avx512(cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Let CTranslate2 use AVX-512 on any CPU that has it. By itself it picked AVX2 on an AMD EPYC with AVX-512
    (its log: "Selected ISA: AVX2"), where forcing AVX-512 made whisper-base's int8 encoder 1.08× faster (0.263
    against 0.285 s a clip) and left float32 as fast as before, with the same transcripts. `CT2_FORCE_CPU_ISA` set
    by the user wins; CTranslate2 reads it when the first model loads."""
    if "CT2_FORCE_CPU_ISA" in os.environ or not cpuinfo.is_file():
        return
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            if set(line.split(":", 1)[1].split()) >= AVX512_FLAGS:
                os.environ["CT2_FORCE_CPU_ISA"] = "AVX512"
            return
