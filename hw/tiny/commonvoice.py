"""The tiny Common Voice: folders in the real release layout (`clips/*.mp3`, one TSV per split) spoken by the tiny
Whisper's homework voice."""

import csv
import hashlib
from pathlib import Path

from hw.errors import HwError
from hw.tiny import whisper

LOCALES = {"zh": "zh-CN", "fr": "fr"}
COLUMNS = (
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accent",
    "locale",
    "segment",
)
SPLIT_SIZES = {"train": 512, "dev": 64, "test": 64}
SAMPLE_RATE = 48_000  # Common Voice clips are 48 kHz mp3: the loader must resample


def build(directory: Path, language: str, split_sizes: dict[str, int] | None = None) -> None:
    """Write a Common Voice-style folder spoken in `whisper.HOMEWORK_VOICE`: `clips/*.mp3` and one TSV per split.

    Args:
        directory: the folder to fill (created if missing).
        language: `zh` (locale zh-CN) or `fr`.
        split_sizes: clips per split, `SPLIT_SIZES` by default.
    """
    import soundfile

    if language not in LOCALES:
        raise HwError(
            f"no tiny Common Voice for language {language!r}; available: {', '.join(LOCALES)}; "
            "pass --lang zh or --lang fr"
        )
    locale = LOCALES[language]
    (directory / "clips").mkdir(parents=True, exist_ok=True)
    speakers = [hashlib.sha512(f"tiny-speaker-{index}".encode()).hexdigest() for index in range(8)]
    clip_number = 0
    for split_seed, (split, size) in enumerate((split_sizes or SPLIT_SIZES).items()):
        rows = [COLUMNS]
        for text in whisper.sentences(language, size, seed=1000 + split_seed):
            clip_number += 1
            name = f"common_voice_{locale}_{clip_number}.mp3"
            audio = whisper.synthesize(
                text, language, whisper.HOMEWORK_VOICE, 10**6 + clip_number, SAMPLE_RATE
            )
            soundfile.write(directory / "clips" / name, audio, SAMPLE_RATE, format="MP3")
            speaker = clip_number % len(speakers)
            gender = ("male", "female")[speaker % 2]
            rows.append((speakers[speaker], name, text, 2, 0, "twenties", gender, "", locale, ""))
        with open(directory / f"{split}.tsv", "w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(rows)
