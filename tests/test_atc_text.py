"""Tests for hw.atc_text: hand-worked ATC cases, then the real ATCO2, UWB-ATCC and homework transcripts."""

import csv
import json
import re

import jiwer
import pytest

from hw.atc_text import digits_to_words, normalize, words_to_digits
from tests.shared_data import SHARED_DATA

ATC_DIR = SHARED_DATA / "atc" if (SHARED_DATA / "atc").is_dir() else None
needs_data = pytest.mark.skipif(ATC_DIR is None, reason="shared ATC data folder not found")
NUMBER = re.compile(r"\d+(?:\.\d+)?")

NORMALIZE_CASES = [
    ("Lufthansa Five Three, contact Zurich 134.6.", "lufthansa five three contact zurich 134.6"),
    ("[hes] roger <noise> uh climb [unk] (laughs) heading(-ding) #", "roger climb heading"),
    ("Alpha Juliet X-ray Whisky Niner fife", "alfa juliett xray whiskey nine five"),
    ("okay goodbye, ready for take off, stand by", "ok good bye ready for takeoff standby"),
    ("Dobrý den, that's it", "dobry den that s it"),
    ("climb 5,000 feet, runway 27, 134", "climb 5000 feet runway 27 134"),
    ("Lufthansa 4JA132. Mach.74", "lufthansa 4ja132 mach 74"),
    ("CSA One\n\nthree  four   ", "csa one three four"),
    ("one three two point five, holding point", "one three two decimal five holding point"),
    ("", ""),
    # Whisper's digit formatting, joined as spoken digits are: hyphenated groups and runs of single digits.
    ("Lufthansa 1 0, contact 121-855", "lufthansa 10 contact 121855"),
    ("runway 1-3, heading 2-7-0, squawk 7 0 0 0", "runway 13 heading 270 squawk 7000"),
    # Multi-digit groups apart stay apart (`5000` may be a quantity), and a decimal keeps its digits.
    ("climb 9 5000, turn 1 20, 1.0 5", "climb 9 5000 turn 1 20 1.0 5"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZE_CASES)
def test_normalize_hand_worked(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("spoken", "whisper"),
    [("one zero", "1 0"), ("one three", "1-3"), ("one two one eight five five", "121-855"),
     ("five three one eight", "5 3 1 8")],
)  # fmt: skip
def test_whisper_digits_score_as_the_spoken_reference(spoken, whisper):
    assert words_to_digits(normalize(whisper)) == words_to_digits(normalize(spoken))


@pytest.mark.parametrize("text", [text for text, _ in NORMALIZE_CASES])
def test_normalize_is_idempotent(text):
    assert normalize(normalize(text)) == normalize(text)


WORDS_TO_DIGITS_CASES = [
    (
        "lufthansa five three one eight contact zurich one three four decimal six",
        "lufthansa 5318 contact zurich 134.6",
    ),
    ("three thousand two hundred", "3200"),
    ("flight level three five zero", "flight level 350"),
    ("forty five", "45"),
    ("two hundred", "200"),
    ("one hundred", "100"),
    ("twenty five thousand", "25000"),
    ("rate fifteen hundred or more", "rate 1500 or more"),
    ("maintain one zero thousand feet", "maintain 10000 feet"),
    ("one twenty seven thirty seven", "12737"),
    ("heading two seven zero descend four thousand", "heading 270 descend 4000"),
    ("flight level three one zero one thousand five hundred or more", "flight level 310 1500 or more"),
    ("descending three hundred one thousand eight hundred", "descending 300 1800"),
    ("ready for takeoff three two thousand", "ready for takeoff 3 2000"),
    ("csa one delta zulu", "csa 1 delta zulu"),
    ("klm three hundred kilo", "klm 300 kilo"),
    ("one three two decimal five five zero", "132.550"),
    ("reduce to point seven two", "reduce to point 72"),
    ("holding point two four", "holding point 24"),
    ("one three four decimal correction one three three", "134 decimal correction 133"),
    ("lufthansa triple five", "lufthansa triple 5"),
    ("need a thousand feet", "need a thousand feet"),
    ("nine 5000 feet", "9 5000 feet"),
    ("15 hundred", "1500"),
    ("1 decimal 0", "1.0"),
    ("one three four decimal 6", "134.6"),
]


@pytest.mark.parametrize(("text", "expected"), WORDS_TO_DIGITS_CASES)
def test_words_to_digits_hand_worked(text, expected):
    assert words_to_digits(text) == expected


@pytest.mark.parametrize("text", [text for text, _ in WORDS_TO_DIGITS_CASES])
def test_words_to_digits_is_idempotent(text):
    converted = words_to_digits(text)
    assert words_to_digits(converted) == converted


def test_mixed_case_raw_text_goes_through_normalize_first():
    raw = "Lufthansa Four Juliet Alpha contact Munich one three two point five five zero, good bye"
    assert words_to_digits(normalize(raw)) == "lufthansa 4 juliett alfa contact munich 132.550 good bye"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("134.6", "one three four decimal six"),
        ("3200", "three thousand two hundred"),
        ("4000", "four thousand"),
        ("200", "two hundred"),
        ("11000", "eleven thousand"),
        ("25500", "twenty five thousand five hundred"),
        ("270", "two seven zero"),
        ("0400", "zero four zero zero"),
        ("100000", "one zero zero zero zero zero"),
        ("0", "zero"),
        ("100.5", "one zero zero decimal five"),
        ("csa 1 delta zulu flight level 350", "csa one delta zulu flight level three five zero"),
        ("dlh8hr", "dlh8hr"),
    ],
)
def test_digits_to_words_hand_worked(text, expected):
    assert digits_to_words(text) == expected


def test_words_to_digits_inverts_digits_to_words():
    # Every whole hundred up to 100 000 (the thousand/hundred branch), a sample of all other numbers.
    values = sorted(set(range(0, 100_001, 100)) | set(range(0, 100_001, 7)))
    numbers = [str(value) for value in values] + ["007", "0100", "118.1650", "0.5", "1000000"]
    assert [words_to_digits(digits_to_words(number)) for number in numbers] == numbers


def test_adjacent_digit_by_digit_numbers_merge_back():
    # Spoken digits carry no boundary: "one two three four" cannot tell 12 34 from 1234.
    assert words_to_digits(digits_to_words("12 34")) == "1234"
    assert words_to_digits(digits_to_words("300 1800")) == "300 1800"


def _file_index(file_name: str) -> int:
    """The utterance number of `atcosim_train12.wav` or `atcosim_train_12.wav` (the two files differ)."""
    match = re.search(r"(\d+)\.wav$", file_name)
    assert match, file_name
    return int(match.group(1))


def _read_homework_references(file_name: str) -> dict[int, str]:
    with open(ATC_DIR / "homework_transcripts" / file_name, newline="", encoding="utf-8") as handle:
        return {_file_index(row["file"]): row["correct_text"] for row in csv.DictReader(handle)}


@needs_data
def test_words_to_digits_reproduces_the_homework_converted_references():
    spoken = _read_homework_references("atcosim_train_whisper_small.csv")
    converted = _read_homework_references("atcosim_train_whisper_finetuned_converted.csv")
    assert spoken.keys() == converted.keys() and len(spoken) == 7638
    agreeing = sum(words_to_digits(normalize(spoken[key])) == normalize(converted[key]) for key in spoken)
    # Measured 7592 / 7638 = 0.9940. The 46 others differ by design: "fifteen hundred" → 1500 (homework:
    # "15 hundred"), separate items kept apart (homework: "flight level 3101500"), and a "decimal" with
    # no number before or after kept as a word (the homework dropped it).
    assert agreeing / len(spoken) >= 0.993


@needs_data
def test_converted_references_survive_digits_to_words_and_back():
    spoken = _read_homework_references("atcosim_train_whisper_small.csv")
    converted = [words_to_digits(normalize(text)) for text in spoken.values()]
    assert [words_to_digits(digits_to_words(text)) for text in converted] == converted


def _spoken_and_written(file_name: str) -> list[tuple[str, str]]:
    """(spoken, written) pairs in digit form; each turn (line) is converted alone, as one utterance."""
    records = json.loads((ATC_DIR / file_name).read_text(encoding="utf-8"))
    return [
        (
            " ".join(words_to_digits(normalize(turn)) for turn in record["full_ts"].split("\n")),
            normalize(record["short_ts"]),
        )
        for record in records
    ]


@needs_data
@pytest.mark.parametrize(
    ("file_name", "min_equal", "max_wer_before", "max_wer_after"),
    [
        # Measured 233 / 276 = 0.844 equal; WER 0.807 → 0.328.
        ("atco2_en_spoken_written_pairs.json", 0.84, 0.81, 0.33),
        # Measured 1935 / 2000 = 0.9675 equal; WER 0.900 → 0.156.
        ("uwb_atcc_spoken_written_pairs.json", 0.965, 0.91, 0.16),
    ],
)
def test_spoken_form_converts_to_the_written_numbers(file_name, min_equal, max_wer_before, max_wer_after):
    """Compare number tokens only: written callsigns (`1DZ`, `4JA`) are out of scope, their digits are not.

    The remaining mismatches are, on inspection, mostly errors of the written side ("flight level
    two eight zero to" written `28 000`, "one thousand or more" written `1040 more`).
    """
    pairs = _spoken_and_written(file_name)
    equal = sum(NUMBER.findall(spoken) == NUMBER.findall(written) for spoken, written in pairs)
    assert equal / len(pairs) >= min_equal
    records = json.loads((ATC_DIR / file_name).read_text(encoding="utf-8"))
    kept = [index for index, (_, written) in enumerate(pairs) if written]
    references = [pairs[index][1] for index in kept]
    wer_before = jiwer.wer(references, [normalize(records[index]["full_ts"]) for index in kept])
    wer_after = jiwer.wer(references, [pairs[index][0] for index in kept])
    assert max_wer_after < wer_before <= max_wer_before
    assert wer_after <= max_wer_after


@needs_data
def test_conversions_are_idempotent_on_every_real_text():
    texts = []
    for path in sorted((ATC_DIR / "homework_transcripts").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            texts += [value for row in csv.DictReader(handle) for key, value in row.items() if key != "file"]
    for path in sorted(ATC_DIR.glob("*_spoken_written_pairs.json")):
        texts += [record[key] for record in json.loads(path.read_text()) for key in ("full_ts", "short_ts")]
    assert len(texts) > 30_000
    normalized = [normalize(text) for text in texts]
    assert [normalize(text) for text in normalized] == normalized
    converted = [words_to_digits(text) for text in normalized]
    assert [words_to_digits(text) for text in converted] == converted
