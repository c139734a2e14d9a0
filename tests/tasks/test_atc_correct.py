"""The corrector's answer extraction on real raw Llama-2 outputs, and the retrieval of similar training pairs."""

import csv

import pytest

from hw.atc_text import normalize
from hw.generation import ATC_BASE_PROMPT, extract_answer
from hw.tasks.atc.correct import ATC_ROLE_PREFIXES, ATC_STOP_MARKERS, similar_pairs
from tests.shared_data import SHARED_DATA

HOMEWORK_FILE = SHARED_DATA / "atc" / "homework_transcripts" / "atco2_test_whisper_small_llama2_base.csv"


def _extract(raw: str, hypothesis: str = "") -> str:
    echo = ATC_BASE_PROMPT.format(hypothesis=hypothesis)
    return extract_answer(raw, echoes=[echo], stop_markers=ATC_STOP_MARKERS, role_prefixes=ATC_ROLE_PREFIXES)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\n'Hotel Whiskey Alpha, wind is calm.'\n\nAir traffic control sentence dictated by whisper:'x'",
         "Hotel Whiskey Alpha, wind is calm."),
        ("Corrected:  T-PATRIC 6868\n\nWhat does the air traffic control sentence mean?", "T-PATRIC 6868"),
        ("\nAir traffic control sentence dictated by whisper :'Taxi to 22.'\nExplanation: it was wrong", "Taxi to 22."),
        ("1 Nut, 125 report.\n\nYour turn!", "1 Nut, 125 report."),
        ("' swiss two one ' Explanation : the sentence is correct .", "swiss two one"),
        ("'\nExplanation: the sentence is correct.", ""),
        ("\nDO NOT SAY Hotel.\nSAY Hotel.", ""),
        ("", ""),
    ],
)  # fmt: skip
def test_extraction_hand_worked(raw, expected):
    assert _extract(raw) == expected


@pytest.mark.skipif(not HOMEWORK_FILE.is_file(), reason="shared ATC data not found")
def test_extraction_on_the_homework_raw_outputs():
    with HOMEWORK_FILE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    answers = [_extract(row["llm_raw_text"], row["whisper_text"]) for row in rows]
    # The homework sliced its answers by hand and dropped apostrophes: compare without them.
    agreeing = sum(
        normalize(answer.replace("'", "")) == normalize(row["llm_text"].replace("'", ""))
        for answer, row in zip(answers, rows, strict=True)
    )
    # Measured 841 / 870 agree; of the rest, the homework kept the prompt's "Air traffic control sentence
    # dictated by whisper :" in 14 answers, where the extraction keeps the sentence only.
    assert agreeing >= 840
    assert sum(not answer for answer in answers) == 11  # outputs with no answer at all: the caller falls back
    assert not any(
        answer.startswith(("Air traffic control sentence", "Corrected:", "DO NOT SAY")) for answer in answers
    )


def test_similar_pairs_ranks_by_shared_rare_words():
    # idf = ln(5 / (1 + df)) + 1: 1.51 for the words in two texts, 1.92 for swiss, speedbird, flight, level.
    # "lufthansa one" · pool 0 = 2 × 0.707 × 0.577 = 0.82, · pool 1 = 0.707 × 1.51 / 2.87 = 0.37,
    # · pool 3 = 0.707 × 1.51 / 3.46 = 0.31. "climb flight" · pool 3 = 0.71, · pool 2 = 0.38.
    pool = ["lufthansa one two", "swiss one two", "speedbird climb", "lufthansa climb flight level"]
    assert similar_pairs(["lufthansa one", "climb flight", "unknown words"], pool, k=2)[:2] == [
        [0, 1],
        [3, 2],
    ]
    assert len(similar_pairs(["a"], pool, k=10)[0]) == 4
