"""`hw atc` score stage: the ASR × corrector matrix of each evaluation set, and the sample rows."""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw import runs
from hw.config import ReferenceRun
from hw.metrics import asr
from hw.tasks.atc.config import ASR_SYSTEMS

CORRECTORS = ("none", "base", "rag", "fine_tuned")
CORRECTOR_NAMES = {
    "none": "none",
    "base": "base LLM, homework prompt",
    "rag": "base LLM + retrieved examples",
    "fine_tuned": "fine-tuned LLM",
}
ASR_NAMES = dict(zip(ASR_SYSTEMS, ("zero-shot", "fine-tuned"), strict=True))
MATRIX_COLUMNS = ["ASR", "Corrector", "WER", "Mean utterance WER", "S", "D", "I", "Reference words",
                  "Better", "Worse", "Unchanged", "Fallbacks"]  # fmt: skip


@dataclass(frozen=True)
class ScoreInput:
    """What `score` reads."""

    normalizer: str
    samples_seed: int
    references: tuple[ReferenceRun, ...]
    """The published figures shown under each matrix (`reference` and `matrix_reference`)."""
    transcripts: str
    """The `transcribe` stage's key."""
    corrections: str | None
    """The `correct` stage's key; None without a corrector (the matrix has the `none` column only)."""


def cell_name(evaluation_set: str, system: str, corrector: str, metric: str = "wer") -> str:
    """The metrics.json key of one cell: `atco2/zero_shot/fine_tuned/wer`."""
    return f"{evaluation_set}/{system}/{corrector}/{metric}"


def score(inputs: ScoreInput, transcripts_dir: Path, corrections_dir: Path | None, folder: Path) -> None:
    """Write `scores.json` and `samples.jsonl` from the transcripts and their corrections.

    `final` holds the corpus WER of every cell (`cell_name`); the tables add the mean of per-utterance WER,
    S/D/I, the better/worse/unchanged shares and the fallbacks, with the published figures under each matrix.
    """
    normalizer = inputs.normalizer
    transcripts = runs.read_jsonl(transcripts_dir / "transcripts.jsonl")
    answers = _by_clip(runs.read_jsonl(corrections_dir / "corrections.jsonl")) if corrections_dir else {}
    systems = [system for system in ASR_SYSTEMS if system in transcripts[0]]
    correctors = [name for name in CORRECTORS if name == "none" or any(key[3] == name for key in answers)]
    final, tables = {}, []
    for evaluation_set in dict.fromkeys(row["set"] for row in transcripts):
        rows = [row for row in transcripts if row["set"] == evaluation_set]
        references = [row["reference"] for row in rows]
        matrix = []
        for system in systems:
            uncorrected = asr.score([row[system] for row in rows], references, normalizer)
            for corrector in correctors:
                corrected = (
                    [answers[_clip(row, system, corrector)] for row in rows] if corrector != "none" else []
                )
                result = (
                    asr.score([row["answer"] for row in corrected], references, normalizer)
                    if corrected
                    else uncorrected
                )
                final[cell_name(evaluation_set, system, corrector)] = result.wer
                matrix.append(_matrix_row(system, corrector, result, uncorrected, corrected))
        matrix += _reference_rows(inputs.references, evaluation_set)
        title = (
            f"{evaluation_set}: ASR × corrector ({len(rows)} clips, normalizer {normalizer}; WER = errors / "
            "reference words; Better/Worse/Unchanged: utterances whose error count the corrector lowered, raised or kept)"
        )
        tables.append({"title": title, "columns": MATRIX_COLUMNS, "rows": matrix})
    runs.write_json(folder / "scores.json", {"final": final, "tables": tables})
    runs.write_jsonl(
        folder / "samples.jsonl", _samples(transcripts, answers, systems, correctors, inputs.samples_seed)
    )


def _by_clip(corrections: list[dict]) -> dict[tuple[str, int, str, str], dict]:
    """Corrections keyed by clip and cell: (set, position in the set, ASR, corrector).

    The position, not the file name, identifies a clip: audio stored as bytes may have no path (every such
    clip is named `(embedded bytes)`), segments cut from one recording may share its path, and a dict keyed on
    a repeated name keeps only its last row, giving every clip of that name the same correction.
    """
    answers = {(row["set"], row["index"], row["asr"], row["corrector"]): row for row in corrections}
    assert len(answers) == len(corrections), "one correction per clip and cell"
    return answers


def _clip(transcript: dict, system: str, corrector: str) -> tuple[str, int, str, str]:
    """The `_by_clip` key of one transcript's correction."""
    return transcript["set"], transcript["index"], system, corrector


def _errors(utterance: asr.UtteranceScore) -> int:
    return utterance.substitutions + utterance.deletions + utterance.insertions


def _matrix_row(
    system: str, corrector: str, result: asr.AsrScore, uncorrected: asr.AsrScore, corrected: list[dict]
) -> list[Any]:
    """One matrix row; the better/worse/unchanged shares compare each utterance's errors with the ASR's own."""
    shares: list[Any] = ["—"] * 3
    fallbacks: Any = "—"
    if corrected:
        pairs = list(zip(result.per_utterance, uncorrected.per_utterance, strict=True))
        better = sum(_errors(after) < _errors(before) for after, before in pairs) / len(pairs)
        worse = sum(_errors(after) > _errors(before) for after, before in pairs) / len(pairs)
        shares = [better, worse, 1 - better - worse]
        fallbacks = sum(row["fallback"] for row in corrected)
    return [ASR_NAMES[system], CORRECTOR_NAMES[corrector], result.wer, result.mean_utterance_wer,
            result.substitutions, result.deletions, result.insertions, result.reference_words, *shares, fallbacks]  # fmt: skip


def _reference_rows(reference: tuple[ReferenceRun, ...], evaluation_set: str) -> list[list[Any]]:
    """The homework's published figures for this set, as rows under the run's (keys `set/asr/corrector/metric`)."""
    rows = []
    for run in reference:
        figures: dict[tuple[str, str], dict[str, float]] = {}
        for row in run.rows:
            for key, value in row.items():
                parts = key.split("/")
                if len(parts) == 4 and parts[0] == evaluation_set:
                    figures.setdefault((parts[1], parts[2]), {})[parts[3]] = value
        for (system, corrector), values in figures.items():
            rows.append([f"{ASR_NAMES.get(system, system)} ({run.source})", CORRECTOR_NAMES.get(corrector, corrector),
                         values.get("wer", "—"), values.get("mean_utterance_wer", "—"), *["—"] * 8])  # fmt: skip
    return rows


def _samples(
    transcripts: list[dict], answers: dict, systems: list[str], correctors: list[str], seed: int
) -> list[dict[str, Any]]:
    """Per clip: audio id, reference, each ASR hypothesis and each correction of it, in a seeded random order."""
    samples = []
    for row in transcripts:
        sample = {"set": row["set"], "audio_id": row["audio_id"], "reference": row["reference"]}
        for system in systems:
            sample[system] = row[system]
            for corrector in correctors[1:]:
                sample[f"{system}+{corrector}"] = answers[_clip(row, system, corrector)]["answer"]
        samples.append(sample)
    random.Random(seed).shuffle(samples)
    return samples
