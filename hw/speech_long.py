"""Transcription of audio of any length with a loaded Whisper: the transformers pipeline's chunked windows."""

from typing import Any

import numpy as np

from hw import audio
from hw.errors import HwError
from hw.speech import Decoding


def transcribe_long(
    model: Any, processor: Any, samples: np.ndarray, decoding: Decoding, timestamps: bool = False
) -> dict[str, Any]:
    """The transcript of 16 kHz samples of any length, as `pipeline(..., chunk_length_s=30)` makes it.

    The transformers pipeline cuts windows of the encoder's length (30 s for Whisper) overlapping by a sixth of
    it on each side, transcribes them in batches and merges the overlaps on their longest common token sequence.

    Returns:
        `{"text": ...}`, with `chunks` ([{"text", "timestamp": (start, end)}] in seconds) when `timestamps`.

    Raises:
        HwError: `timestamps` asked of a model that predicts no timestamp tokens.
    """
    from transformers import pipeline

    recognizer = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
        chunk_length_s=processor.feature_extractor.chunk_length,
        batch_size=decoding.batch_size,
        device=next(model.parameters()).device,
    )
    max_new_tokens = min(decoding.max_new_tokens, model.config.max_target_positions - 4)
    arguments = {"language": decoding.language, "task": decoding.task, "max_new_tokens": max_new_tokens}
    media = {"raw": samples, "sampling_rate": audio.TARGET_RATE}
    try:
        result = recognizer(media, return_timestamps=timestamps, generate_kwargs=arguments)
    except IndexError:
        if not timestamps:
            raise
        # transformers fails so when a window's generation holds no timestamp token at all.
        raise HwError(
            "this model predicts no timestamp tokens (it was fine-tuned without them); drop --timestamps"
        ) from None
    text = {"text": result["text"].strip()}
    if not timestamps:
        return text
    return text | {
        "chunks": [{"text": c["text"].strip(), "timestamp": c["timestamp"]} for c in result["chunks"]]
    }
