"""The tiny Whisper preset: synthetic tone "speech" and a pretrained tiny Whisper (its data: `tiny.commonvoice`).

Every word (French, English) or character (Chinese) is a "unit" spoken as a two-tone chord on the centres of
Whisper's mel filters. The tiny base model is pretrained on all units in a studio voice; the homework data are
spoken in another voice (higher pitch, slower), so the untrained base transcribes them badly and a LoRA
adapter on `q_proj`/`v_proj` has something real to learn, as it has with Whisper on Common Voice.
"""

import json
import logging
import math
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hw.errors import HwError

if TYPE_CHECKING:  # transformers is imported inside the functions: `hw --help` must stay fast
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 3  # the encoder sees exactly 2 * max_source_positions = 300 frames of 10 ms
# Simplified characters; 们这国个说时会对发过后学 differ from their Traditional forms, so OpenCC matters.
_CHINESE = "我你他们的是不了在有人这中大来上国个到说时要就出会可也对生能子那得下自年过发后学"
_FRENCH = (
    "le la les un une et à où été très élève école père mère frère forêt fenêtre château hôpital île "
    "garçon français déjà voilà noël maïs bientôt fête café thé ça leçon première après même être "
    "grand petit chat maison"
)
# ICAO spelling and digits as the ATC references write them (lowercase, `alfa`, `juliett`).
_ENGLISH = (
    "zero one two three four five six seven eight nine alfa bravo charlie delta echo foxtrot golf hotel "
    "india juliett kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "xray yankee zulu contact tower ground approach descend climb flight level heading runway cleared "
    "decimal hundred thousand lufthansa speedbird swiss zurich"
)
LANGUAGE_UNITS = {"zh": tuple(_CHINESE), "fr": tuple(_FRENCH.split()), "en": tuple(_ENGLISH.split())}
UNITS_PER_SENTENCE = {"zh": (1, 8), "fr": (1, 6), "en": (1, 12)}
PRETRAINING_SENTENCES = 1000  # per language
PRETRAINING_EPOCHS = 4  # 750 steps of 16; the loss leaves its plateau near step 350 and settles by 600
PRETRAINING_LEARNING_RATE = 2e-3  # 1e-3 to 3e-3 all converge in 750 steps; 5e-3 stalls on the plateau


@dataclass(frozen=True)
class Voice:
    """How a speaker sounds.

    Attributes:
        pitch_shift: shift of every tone, in mel-filter steps (the chord grid is 3 steps apart).
        unit_seconds: duration of one unit (a character or a word).
        gap_seconds: silence after each unit.
    """

    pitch_shift: float
    unit_seconds: float
    gap_seconds: float = 0.04


PRETRAINING_VOICE = Voice(pitch_shift=0.0, unit_seconds=0.12)
# Half a grid step up lands every tone between two trained ones; 1.5x slower moves every unit in time.
HOMEWORK_VOICE = Voice(pitch_shift=1.5, unit_seconds=0.18)


def _chords() -> dict[str, tuple[int, int]]:
    """Give every unit of every language its own pair of mel-filter indices (fixed by a seed)."""
    grid = range(6, 78, 3)  # 24 tones, 3 mel filters apart: 276 possible chords for 134 units
    pairs = [(low, high) for low in grid for high in grid if low < high]
    random.Random(1).shuffle(pairs)
    units = [unit for language_units in LANGUAGE_UNITS.values() for unit in language_units]
    assert len(set(units)) == len(units), "a unit spoken by two languages would need two chords"
    return dict(zip(units, pairs, strict=False))


CHORDS = _chords()


def _mel_filter_hz(index: float) -> float:
    """Centre frequency of Whisper's mel filter `index` (0-79), on the Slaney scale up to 8 kHz.

    Slaney mel (librosa's default, used by Whisper's filter bank): 200/3 Hz per mel below 1 kHz, then a
    logarithmic step of ln(6.4)/27 per mel; 8 kHz is 15 + 27 ln 8 / ln 6.4 = 45.2 mel over 81 intervals.
    """
    top_mel = 15 + 27 * math.log(8) / math.log(6.4)
    mel = top_mel * (index + 1) / 81
    return 200 / 3 * mel if mel < 15 else 1000 * math.exp((mel - 15) * math.log(6.4) / 27)


def _units(text: str, language: str) -> list[str]:
    """Cut a sentence into units: characters for Chinese, words otherwise."""
    return [character for character in text if not character.isspace()] if language == "zh" else text.split()


def _join(units: list[str], language: str) -> str:
    """Write units as a sentence: Chinese without spaces, other languages with."""
    return ("" if language == "zh" else " ").join(units)


def sentences(language: str, count: int, seed: int) -> list[str]:
    """Draw `count` random sentences of a language's units (lengths as `UNITS_PER_SENTENCE`)."""
    if language not in LANGUAGE_UNITS:
        raise HwError(
            f"no tiny speech for language {language!r}; available: {', '.join(LANGUAGE_UNITS)}; "
            "pick one of those or use a real model and dataset"
        )
    rng = random.Random(seed)
    shortest, longest = UNITS_PER_SENTENCE[language]
    pool = LANGUAGE_UNITS[language]
    return [_join(rng.choices(pool, k=rng.randint(shortest, longest)), language) for _ in range(count)]


def synthesize(
    text: str, language: str, voice: Voice, seed: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Speak a sentence: 50 ms of silence, then one chord per unit, each followed by a short gap.

    Args:
        text: a sentence made of `LANGUAGE_UNITS[language]`.
        language: key of `LANGUAGE_UNITS`.
        voice: pitch and pace of the speaker.
        seed: fixes the tone phases and the background noise.
        sample_rate: samples per second of the returned mono float32 waveform.
    """
    units = _units(text, language)
    unknown = sorted(set(units) - set(LANGUAGE_UNITS[language]))
    assert not unknown, f"units outside the tiny {language} vocabulary: {unknown}"
    rng = np.random.default_rng(seed)
    time = np.arange(int(voice.unit_seconds * sample_rate)) / sample_rate
    envelope = np.minimum(1.0, np.minimum(time, time[::-1]) / 0.01)  # 10 ms fades: no clicks
    pieces = [np.zeros(int(0.05 * sample_rate))]
    for unit in units:
        frequencies = [_mel_filter_hz(index + voice.pitch_shift) for index in CHORDS[unit]]
        phases = rng.uniform(0, 2 * np.pi, len(frequencies))
        chord = sum(
            np.sin(2 * np.pi * frequency * time + phase)
            for frequency, phase in zip(frequencies, phases, strict=True)
        )
        pieces += [0.3 * envelope * chord, np.zeros(int(voice.gap_seconds * sample_rate))]
    waveform = np.concatenate(pieces)
    return (waveform + rng.normal(0, 0.003, len(waveform))).astype(np.float32)


def _special_tokens() -> list[str]:
    """Whisper's special tokens in the real order: the tokenizer finds a language token by its position.

    `<|startoftranscript|>` is followed by every language of `LANGUAGES` in order, then the task and control
    tokens, as in openai/whisper-large-v3's `added_tokens` (v2 has one language fewer and `<|nocaptions|>`).
    """
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def build_processor() -> "WhisperProcessor":
    """A `WhisperProcessor`: 3 s feature extractor and a byte-level BPE trained on the synthetic sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    corpus = [
        text for seed, language in enumerate(LANGUAGE_UNITS) for text in sentences(language, 3000, seed)
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # Whisper adds no prefix space
    # 256 bytes + 544 merges: every unit becomes one token, with or without its leading space (Chinese
    # characters are 3 bytes each); Whisper's 108 special tokens come after, as in the real vocabulary.
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    merges = [tuple(merge) for merge in json.loads(bpe.to_str())["model"]["merges"]]
    tokenizer = WhisperTokenizer(vocab=bpe.get_vocab(), merges=merges, pad_token="<|endoftext|>")
    special_tokens = [AddedToken(token, special=True, normalized=False) for token in _special_tokens()]
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens})
    feature_extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=CHUNK_SECONDS)
    return WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def untrained_model(tokenizer: "WhisperTokenizer") -> "WhisperForConditionalGeneration":
    """A random Whisper of 0.36M parameters whose generation config knows the languages and tasks."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    token_id = tokenizer.convert_tokens_to_ids
    end = token_id("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=CHUNK_SECONDS * 50,  # 100 frames per second, halved by the stride-2 convolution
        max_target_positions=448,  # as the real checkpoints, so the course's generation_max_length 128 fits
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        decoder_start_token_id=token_id("<|startoftranscript|>"),
        suppress_tokens=[],
        begin_suppress_tokens=[
            token_id("Ġ"),
            end,
        ],  # as the real checkpoints: no leading space, no empty text
        # 0.02 (the default) keeps the convolution output far below the positional embedding; the loss then
        # stays flat for hundreds of steps. 0.1 (about 1 / sqrt(d_model)) lets it learn at once.
        init_std=0.1,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # Built from scratch, not `from_model_config`: a config marked as derived from the model config drops
    # lang_to_id and task_to_id on save/reload, and `generate(language=...)` then refuses to run.
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        begin_suppress_tokens=config.begin_suppress_tokens,
        suppress_tokens=[],
        max_length=config.max_target_positions,
        lang_to_id={f"<|{code}|>": token_id(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={task: token_id(f"<|{task}|>") for task in ("translate", "transcribe")},
        no_timestamps_token_id=token_id("<|notimestamps|>"),
        prev_sot_token_id=token_id("<|startofprev|>"),
        is_multilingual=True,
    )
    return model


def speech_examples(processor, waveforms: list[np.ndarray], texts: list[str], language: str) -> list[dict]:
    """Turn 16 kHz waveforms and their transcripts into `{"input_features", "labels"}` training rows."""
    processor.tokenizer.set_prefix_tokens(language=language, task="transcribe")
    features = processor.feature_extractor(waveforms, sampling_rate=SAMPLE_RATE, return_tensors="np")
    labels = processor.tokenizer(texts).input_ids
    return [
        {"input_features": input_features, "labels": label_ids}
        for input_features, label_ids in zip(features.input_features, labels, strict=True)
    ]


def train(model, rows: list[dict], output_dir: str, learning_rate: float, epochs: float) -> list[float]:
    """Train on CPU in fp32 (linear decay, 10 % warm-up, batch 16), alike on every machine; return the logged losses."""
    from hw import speech, training
    from hw.config import TrainConfig

    settings = TrainConfig(
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        eval_strategy="no",
        logging_steps=25,
        seed=0,
        precision="fp32",
        group_by_length=False,
    )
    trainer = training.build_trainer(
        model,
        settings,
        Path(output_dir),
        train_dataset=rows,
        eval_dataset=None,
        data_collator=speech.SpeechCollator(model.config.decoder_start_token_id),
        processing_class=None,
        seq2seq=True,
        # A ratio below 1 (TrainConfig counts whole steps); nothing to save; the CPU even beside a GPU.
        warmup_steps=0.1,
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=True,
    )
    trainer.add_callback(_progress_log())
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _progress_log():
    """A callback that logs the step and the last loss five times a training: building the base takes minutes
    on a busy CPU, and the asset build hides the Trainer's own output."""
    from transformers import TrainerCallback

    class ProgressLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            every = max(args.logging_steps, state.max_steps // 5 // args.logging_steps * args.logging_steps)
            if "loss" in (logs or {}) and state.global_step % every == 0:
                logger.info("step %d/%d, loss %.3f", state.global_step, state.max_steps, logs["loss"])

    return ProgressLog()


def transcribe(model, processor, waveforms: list[np.ndarray], language: str) -> list[str]:
    """Greedy transcripts of 16 kHz waveforms (`speech.transcribe`), the model switched to eval mode first."""
    from hw import speech

    # At most 12 units of one token each: 40 new tokens bound what a confused model can ramble.
    decoding = speech.Decoding(language, batch_size=64, max_new_tokens=40)
    return speech.transcribe(model.eval(), processor, waveforms, decoding)


def build_model(directory: Path) -> None:
    """Write a processor and a tiny Whisper pretrained on every unit in `PRETRAINING_VOICE`."""
    import torch

    logger.info(
        "pretraining the tiny Whisper base on %d synthetic sentences per language (about a minute on a quiet CPU)",
        PRETRAINING_SENTENCES,
    )
    threads = torch.get_num_threads()
    # 64-wide matrices gain little from a second thread and lose several times over when other work shares
    # the cores (measured under load 6 on 2 cores: one thread builds in 73 s, two were not done in 17 min).
    torch.set_num_threads(1)
    try:
        processor = build_processor()
        processor.save_pretrained(directory)  # before `speech_examples` sets a language on the tokenizer
        model = untrained_model(processor.tokenizer)
        with tempfile.TemporaryDirectory() as scratch:
            rows = _pretraining_rows(processor)
            losses = train(model, rows, scratch, PRETRAINING_LEARNING_RATE, PRETRAINING_EPOCHS)
    finally:
        torch.set_num_threads(threads)
    logger.info("tiny Whisper base pretrained: loss %.3f -> %.3f", losses[0], losses[-1])
    model.save_pretrained(directory)


def _pretraining_rows(processor: "WhisperProcessor") -> list[dict]:
    """`PRETRAINING_SENTENCES` per language spoken in `PRETRAINING_VOICE`, as shuffled training rows."""
    rows = []
    for index, language in enumerate(LANGUAGE_UNITS):
        texts = sentences(language, PRETRAINING_SENTENCES, seed=100 + index)
        first_seed = index * PRETRAINING_SENTENCES  # one seed per clip
        waveforms = [
            synthesize(text, language, PRETRAINING_VOICE, first_seed + offset)
            for offset, text in enumerate(texts)
        ]
        rows += speech_examples(processor, waveforms, texts, language)
    random.Random(0).shuffle(rows)
    return rows
