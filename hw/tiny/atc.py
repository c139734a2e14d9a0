"""The tiny ATC preset: synthetic ATC phrases from a small grammar, spoken ATCOSIM- and ATCO2-like datasets, and a
tiny causal-LM corrector pretrained to copy ATC sentences.

The phrases use only the English units of the tiny Whisper (`hw.tiny.whisper`), so its pretrained base is the
zero-shot ASR. The datasets are spoken in voices it never heard, whose tones fall between the trained ones (see
`ATCOSIM_VOICE`): the zero-shot ASR then mishears some words the same way every time, the systematic errors a
corrector trained on (hypothesis → reference) pairs can learn to undo.
"""

import io
import random
from pathlib import Path

import numpy as np

from hw.generation import ATC_BASE_PROMPT, ATC_FINE_TUNED_PROMPT, ATC_RAG_PROMPT, raw_format, tokenize_example
from hw.tiny import whisper as tiny_whisper
from hw.tiny.causal_lm import pretrained_llama

AIRLINES = ("lufthansa", "speedbird", "swiss")
LETTERS = (
    "alfa",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "hotel",
    "kilo",
    "lima",
    "oscar",
    "papa",
    "tango",
    "zulu",
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STATIONS = ("tower", "ground", "approach")
SPLIT_SIZES = {"atcosim": {"train": 512, "test": 96}, "atco2": {"test": 96}}
# 1.3 mel steps up (the chord grid is 3 apart): tones fall between trained ones, nearer the trained tone, so the
# pretrained base hears most words right and mishears the rest the same way every time. Measured on the 512
# train phrases, word level: WER 0.43, 1,844 substitutions against 27 deletions and 4 insertions, and 90 % of
# the substitutions of a word are its commonest one (`one` → `heading`, `five` → `decimal`, `swiss` → `heading`).
ATCOSIM_VOICE = tiny_whisper.Voice(pitch_shift=1.3, unit_seconds=0.12)
# ATCO2 is recorded off the air: another speaker (pitch 1.2) and radio noise (0.02 RMS against 0.3 tones).
ATCO2_VOICE, ATCO2_NOISE = tiny_whisper.Voice(pitch_shift=1.2, unit_seconds=0.12), 0.02


def _digits(rng: random.Random, count: int) -> list[str]:
    return rng.choices(DIGITS, k=count)


def _instruction(rng: random.Random) -> list[str]:
    """One ATC instruction: a frequency change, a flight level, a heading, an altitude or a runway."""
    kind = rng.randrange(5)
    if kind == 0:  # `contact tower one three four decimal six`
        frequency = [
            "one",
            rng.choice(("one", "two", "three")),
            *_digits(rng, 1),
            "decimal",
            *_digits(rng, 1),
        ]
        return ["contact", rng.choice(("zurich", *STATIONS)), *frequency]
    if kind == 1:
        return [rng.choice(("climb", "descend")), "flight", "level", *_digits(rng, 3)]
    if kind == 2:
        return ["heading", *_digits(rng, 3)]
    if kind == 3:  # `descend four thousand five hundred`
        altitude = [rng.choice(DIGITS[1:]), "thousand"] + (
            [rng.choice(DIGITS[1:]), "hundred"] * rng.randrange(2)
        )
        return [rng.choice(("climb", "descend")), *altitude]
    return ["cleared", "runway", *_digits(rng, 2)]


def sentences(count: int, seed: int) -> list[str]:
    """`count` ATC phrases, `<callsign> <instruction>`, at most 12 words (the tiny Whisper's longest sentence)."""
    rng = random.Random(seed)
    phrases = []
    for _ in range(count):
        callsign = [rng.choice(AIRLINES), *_digits(rng, rng.randint(1, 3))]
        if rng.random() < 0.4:
            callsign.append(rng.choice(LETTERS))
        phrases.append(" ".join(callsign + _instruction(rng)))
    return phrases


SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
# What the tiny base says after the base prompt, like a chat model that explains instead of only answering.
BASE_ANSWER = "'{hypothesis}'\nExplanation: the sentence is correct."
PRETRAIN_COPIES, PRETRAIN_CHATS, PRETRAIN_EPOCHS = 1500, 300, 5
PRETRAIN_BATCH_SIZE, PRETRAIN_LEARNING_RATE = 16, 3e-3


def build_tokenizer():
    """A word-level tokenizer: every ATC word, template word and punctuation mark is one token, others `<unk>`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre_tokenizer = pre_tokenizers.Whitespace()  # `\w+|[^\w\s]+`: `[/INST]` is `[/`, `INST`, `]`
    # Filled with a word, so a quote next to a placeholder (`'{hypothesis}'`) is its own token.
    fields = {"hypothesis": "x", "reference": "x", "examples": ""}
    templates = [text.format(**fields) for text in (ATC_RAG_PROMPT, ATC_FINE_TUNED_PROMPT, BASE_ANSWER)]
    words = [piece for text in templates for piece, _ in pre_tokenizer.pre_tokenize_str(text)]
    words += tiny_whisper.LANGUAGE_UNITS["en"]
    vocabulary = {token: index for index, token in enumerate(dict.fromkeys([*SPECIAL_TOKENS, *words]))}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocabulary["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def build_corrector(directory: Path) -> None:
    """The tiny corrector base: ATC phrases copied through the fine-tuning prompt, pretrained and saved."""
    pretrained_llama(
        directory,
        build_tokenizer(),
        pretraining_examples,
        max_positions=512,
        epochs=PRETRAIN_EPOCHS,
        batch_size=PRETRAIN_BATCH_SIZE,
        learning_rate=PRETRAIN_LEARNING_RATE,
    )


def pretraining_examples(tokenizer) -> list[dict[str, list[int]]]:
    """Clean phrases copied through the fine-tuning prompt, and the base prompt answered chattily; answers only."""
    copy_format, chat_format = raw_format(ATC_FINE_TUNED_PROMPT), raw_format(ATC_BASE_PROMPT)
    examples = []
    rng = random.Random(52)
    # Random word strings rarely repeat a word, which lets attention learn to copy long before the grammar's
    # repeated digits could teach it (the loss on grammar phrases alone stayed on its plateau for 450 steps).
    scrambles = [
        " ".join(rng.choices(tiny_whisper.LANGUAGE_UNITS["en"], k=rng.randint(3, 12)))
        for _ in range(PRETRAIN_COPIES)
    ]
    for phrase in sentences(PRETRAIN_COPIES, seed=50) + scrambles:
        prompt = copy_format.template.format(user=copy_format.user.format(hypothesis=phrase))
        examples.append(tokenize_example(tokenizer, prompt, f" {phrase}{tokenizer.eos_token}"))
    for phrase in sentences(PRETRAIN_CHATS, seed=51):
        prompt = chat_format.user.format(hypothesis=phrase)
        answer = BASE_ANSWER.format(hypothesis=phrase)
        examples.append(tokenize_example(tokenizer, prompt, answer + tokenizer.eos_token))
    return examples


def build_dataset(directory: Path, corpus: str) -> None:
    """Write a `save_to_disk` dataset in the Hugging Face ATC schema: `id`, `audio` (wav bytes), `text`, `duration`.

    Args:
        directory: the folder to fill.
        corpus: `atcosim` (train and test, one voice) or `atco2` (test, another voice with noise).
    """
    import datasets

    # The Audio feature would encode through torchcodec (absent with CPU torch): the same bytes and path as a struct.
    audio = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    text, duration = datasets.Value("string"), datasets.Value("float32")
    features = datasets.Features({"id": text, "audio": audio, "text": text, "duration": duration})
    splits = {
        split: datasets.Dataset.from_dict(_spoken_split(corpus, split, size, split_seed), features=features)
        for split_seed, (split, size) in enumerate(SPLIT_SIZES[corpus].items())
    }
    datasets.DatasetDict(splits).save_to_disk(str(directory))


def _spoken_split(corpus: str, split: str, size: int, split_seed: int) -> dict[str, list]:
    """The columns of one split: phrases of their own seed, spoken in the corpus' voice, as wav bytes."""
    import soundfile

    voice, noise = (ATCOSIM_VOICE, 0.0) if corpus == "atcosim" else (ATCO2_VOICE, ATCO2_NOISE)
    columns: dict[str, list] = {"id": [], "audio": [], "text": [], "duration": []}
    for index, text in enumerate(sentences(size, seed=300 + 10 * split_seed + len(corpus))):
        seed = 10**5 * (split_seed + 1) + 10**4 * len(corpus) + index  # one seed per clip
        waveform = tiny_whisper.synthesize(text, "en", voice, seed)
        waveform += np.random.default_rng(seed).normal(0, noise, len(waveform)).astype(np.float32)
        buffer = io.BytesIO()
        soundfile.write(buffer, waveform, tiny_whisper.SAMPLE_RATE, format="WAV")
        name = f"{corpus}_{split}_{index:04d}"
        columns["id"].append(name)
        columns["audio"].append({"bytes": buffer.getvalue(), "path": f"{name}.wav"})
        columns["text"].append(text)
        columns["duration"].append(len(waveform) / tiny_whisper.SAMPLE_RATE)
    return columns
