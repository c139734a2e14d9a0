"""The ATC score stage joins each correction to its own clip by (set, position), never by the clip's file name."""

import json
from pathlib import Path

import pytest

from hw import runs
from hw.tasks.atc import score as atc_score

NAMELESS = "(embedded bytes)"  # what `speech.clip_name` gives every clip stored as bytes without a path


def _transcript(set_name: str, index: int, reference: str, hypothesis: str) -> dict:
    return {
        "set": set_name,
        "index": index,
        "audio_id": NAMELESS,
        "reference": reference,
        "zero_shot": hypothesis,
    }


def _correction(set_name: str, index: int, corrector: str, answer: str, fallback: bool = False) -> dict:
    return {"set": set_name, "index": index, "audio_id": NAMELESS, "asr": "zero_shot", "corrector": corrector,
            "raw": answer, "answer": answer, "fallback": fallback}  # fmt: skip


@pytest.fixture
def scored(tmp_path: Path) -> tuple[dict, list[dict]]:
    """Two nameless ATCOSIM clips and one ATCO2 clip at the same position 0, each corrected differently."""
    runs.write_jsonl(
        tmp_path / "transcripts.jsonl",
        [
            _transcript("atcosim", 0, "a b c d", "a b x d"),
            _transcript("atcosim", 1, "e f", "e"),
            _transcript("atco2", 0, "g h", "g"),
        ],
    )
    runs.write_jsonl(
        tmp_path / "corrections.jsonl",
        [
            _correction("atcosim", 0, "base", "a b c d"),
            _correction("atcosim", 1, "base", "e f g"),
            _correction("atco2", 0, "base", "g h"),
            _correction("atcosim", 0, "fine_tuned", "a b c d"),
            _correction("atcosim", 1, "fine_tuned", "e", fallback=True),
            _correction("atco2", 0, "fine_tuned", "x y z"),
        ],
    )
    inputs = atc_score.ScoreInput("none", samples_seed=0, references=(), transcripts="-", corrections="-")
    atc_score.score(inputs, tmp_path, tmp_path, tmp_path)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    return runs.read_json(tmp_path / "scores.json"), samples


def test_each_clip_is_scored_with_its_own_correction(scored) -> None:
    final, tables = scored[0]["final"], scored[0]["tables"]
    # ATCOSIM, 6 reference words. ASR: 1 substitution (x) + 1 deletion (f). Base: clip 0 right, clip 1 one
    # insertion (g); joined by file name, both clips would get "e f g": 3 S + 1 D on clip 0, 1 I on clip 1 = 5/6.
    # Fine-tuned: clip 0 right, clip 1 fell back to the ASR's "e", 1 deletion.
    assert final["atcosim/zero_shot/none/wer"] == pytest.approx(2 / 6)
    assert final["atcosim/zero_shot/base/wer"] == pytest.approx(1 / 6)
    assert final["atcosim/zero_shot/fine_tuned/wer"] == pytest.approx(1 / 6)
    # ATCO2 shares position 0 with ATCOSIM's first clip but has its own corrections: 1 D; 0; 2 S + 1 I.
    assert final["atco2/zero_shot/none/wer"] == pytest.approx(1 / 2)
    assert final["atco2/zero_shot/base/wer"] == 0
    assert final["atco2/zero_shot/fine_tuned/wer"] == pytest.approx(3 / 2)
    base, fine_tuned = tables[0]["rows"][1], tables[0]["rows"][2]
    assert base[8:] == [0.5, 0.0, 0.5, 0]  # better, worse, unchanged, fallbacks
    assert fine_tuned[8:] == [0.5, 0.0, 0.5, 1]


def test_samples_pair_each_clip_with_its_own_corrections(scored) -> None:
    by_reference = {sample["reference"]: sample for sample in scored[1]}
    assert sorted(by_reference) == ["a b c d", "e f", "g h"]
    assert [by_reference[text]["zero_shot+base"] for text in ("a b c d", "e f", "g h")] == [
        "a b c d",
        "e f g",
        "g h",
    ]
    assert by_reference["e f"]["audio_id"] == NAMELESS  # the name stays, as a label only
