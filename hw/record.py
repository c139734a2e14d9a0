"""The record of one run: what a task's `run()` returns, how it lies in the run directory, and how it reads back.

A task fills a `RunRecord`; the runner writes it (`write`) from the main process; the report reads it back
(`read`) by these declared fields. This module imports no torch, so `hw report` stays light.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from hw import runs

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.jsonl"
TRAINER_STATE_FILE = "trainer_state.json"
# Fields with a file of their own; every other field goes to metrics.json.
_OWN_FILES = {"samples": SAMPLES_FILE, "trainer_state": TRAINER_STATE_FILE}


class Table(TypedDict):
    """A table the report shows below the final metrics."""

    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """Everything a run found, in the order metrics.json lists it."""

    final: dict[str, Any]
    """Metrics of the scored weights: the report's **Final** line."""
    epochs: list[dict[str, Any]] = field(default_factory=list)
    """One row per evaluation (`training.evaluation_history`), the report's table; empty: one row of `final`."""
    weights: str
    """One sentence naming exactly the weights that were scored."""
    dataset: str
    """The data as the config names it (Hub id, folder or `tiny:NAME`): the report's **Data** line."""
    data: dict[str, int]
    """Examples (or clips, pairs) used per split."""
    model: dict[str, int] = field(default_factory=dict)
    """Parameter counts `trainable_parameters` and `total_parameters` (`training.parameter_counts`)."""
    tables: list[Table] = field(default_factory=list)
    """Further tables for the report, in order."""
    notes: list[str] = field(default_factory=list)
    """Sentences the report shows as notes (an overfitting warning, text conventions)."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    """Predictions beside their references, written to samples.jsonl; the report shows the first rows."""
    trainer_state: dict[str, Any] | None = None
    """The Trainer's state (`training.trainer_state`), written to trainer_state.json; None when none trained."""
    wall_seconds: float | None = None
    """Seconds the task ran, set by the runner."""

    def write(self, run_dir: Path) -> None:
        """Write metrics.json, and samples.jsonl and trainer_state.json when the run has them (main process only)."""
        if self.samples:
            runs.write_jsonl(run_dir / SAMPLES_FILE, self.samples)
        if self.trainer_state is not None:
            # Sorted as the Trainer's own checkpoints hold it (`TrainerState.save_to_json`).
            runs.write_json(run_dir / TRAINER_STATE_FILE, self.trainer_state, sort_keys=True)
        metrics = {
            spec.name: getattr(self, spec.name)
            for spec in dataclasses.fields(self)
            if spec.name not in _OWN_FILES
        }
        runs.write_json(run_dir / METRICS_FILE, metrics)

    @classmethod
    def read(cls, run_dir: Path) -> "RunRecord":
        """The record `write` left in `run_dir`."""
        samples, state = run_dir / SAMPLES_FILE, run_dir / TRAINER_STATE_FILE
        return cls(
            **runs.read_json(run_dir / METRICS_FILE),
            samples=runs.read_jsonl(samples) if samples.is_file() else [],
            trainer_state=runs.read_json(state) if state.is_file() else None,
        )
