"""Whisper's own safeguards against degenerate pseudo-labels (openai-whisper's `transcribe`): temperature fallback
while a transcript is too repetitive (compression ratio) or too unlikely (average log-probability), and a
no-speech probability that marks a window as silence."""

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from hw import speech

# openai-whisper's `transcribe` defaults.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
# Why a label is left out, in the order log.jsonl counts them.
REJECTIONS = ("no speech", "repetitive", "unlikely")


@dataclass(frozen=True)
class Label:
    """One window's transcript and the measures Whisper judges it by."""

    text: str
    temperature: float
    compression_ratio: float
    """UTF-8 bytes of the text over its zlib-compressed bytes: a looping transcript compresses well."""
    avg_logprob: float
    """Sum of the generated tokens' log-probabilities (end token included) over their count."""
    no_speech_prob: float
    """Probability of `<|nospeech|>` right after `<|startoftranscript|>`."""

    @property
    def needs_fallback(self) -> bool:
        """openai-whisper's rule: decode again hotter, unless a low log-probability is explained by silence."""
        unlikely = self.avg_logprob < LOGPROB_THRESHOLD
        if unlikely and self.no_speech_prob > NO_SPEECH_THRESHOLD:
            return False
        return self.compression_ratio > COMPRESSION_RATIO_THRESHOLD or unlikely

    @property
    def rejection(self) -> str | None:
        """Why the label is unusable after the last fallback (one of `REJECTIONS`), or None when it is kept."""
        unlikely = self.avg_logprob < LOGPROB_THRESHOLD
        if self.no_speech_prob > NO_SPEECH_THRESHOLD and unlikely:
            return "no speech"
        if self.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
            return "repetitive"
        return "unlikely" if unlikely else None


def compression_ratio(text: str) -> float:
    """openai-whisper's repetition measure; 0 for an empty text, which nothing can loop in."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@torch.inference_mode()
def transcribe(
    model: Any, processor: Any, features: np.ndarray, language: str, max_new_tokens: int
) -> list[Label]:
    """Labels of one batch of log-mel windows: greedy first, then each temperature for the windows that need it.

    Each window is encoded once (`speech.encoder_states`: a few windows at a time on a CPU); sampling draws from
    torch's global generator, which the caller seeds.
    """
    parameter = next(model.parameters())
    inputs = torch.as_tensor(features).to(parameter.device, parameter.dtype)
    states = speech.encoder_states(model, inputs)
    no_speech = _no_speech_probs(model, states)
    max_new_tokens = min(max_new_tokens, model.config.max_target_positions - 4)
    labels: list[Label | None] = [None] * len(features)
    pending = list(range(len(features)))
    for temperature in TEMPERATURES:
        generated = model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=states[pending]),
            language=language,
            task="transcribe",
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            output_logits=True,
            return_dict_in_generate=True,
        )
        logprobs = _token_logprobs(generated, processor.tokenizer.eos_token_id)
        texts = processor.tokenizer.batch_decode(generated.sequences, skip_special_tokens=True)
        for row, index in enumerate(pending):
            text = texts[row].strip()
            labels[index] = Label(text, temperature, compression_ratio(text), logprobs[row], no_speech[index])
        pending = [index for index in pending if labels[index].needs_fallback]
        if not pending:
            break
    return labels


def _token_logprobs(generated: Any, end_token: int) -> list[float]:
    """Average log-probability of each sequence's generated tokens up to and including its end token.

    From the raw logits (before temperature), as openai-whisper ranks them; like it, over (text tokens + 1).
    """
    steps = len(generated.logits)
    tokens = generated.sequences[:, -steps:]
    logprobs = torch.log_softmax(torch.stack(generated.logits, dim=1).float(), dim=-1)
    chosen = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    averages = []
    for row in range(tokens.shape[0]):
        ends = (tokens[row] == end_token).nonzero()
        length = int(ends[0]) + 1 if len(ends) else steps
        text_tokens = length - 1 if len(ends) else length
        averages.append(float(chosen[row, :length].sum()) / (text_tokens + 1))
    return averages


def _no_speech_probs(model: Any, hidden: torch.Tensor) -> list[float]:
    """P(`<|nospeech|>`) after `<|startoftranscript|>`, as openai-whisper reads it, for each window."""
    start = torch.full((hidden.shape[0], 1), model.config.decoder_start_token_id, device=hidden.device)
    logits = model(encoder_outputs=(hidden,), decoder_input_ids=start).logits[:, 0].float()
    # The token before `<|notimestamps|>`, as transformers finds it (older vocabularies call it `<|nocaptions|>`).
    no_speech = model.generation_config.no_timestamps_token_id - 1
    return torch.softmax(logits, dim=-1)[:, no_speech].tolist()
