"""Named pipeline stages cached in a run directory, each keyed by a hash of its inputs.

A stage's outputs live in `run_dir/stages/<name>/` with a `stage.json` naming the key they were computed
from. They are built in a sibling `.<name>-<key>.partial/` folder (kept across a killed run, so a Trainer can
resume from its checkpoints there) and renamed into place only once complete: a stage that looks finished is
finished.
"""

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw import runs

log = logging.getLogger(__name__)

MARKER = "stage.json"


@dataclass(frozen=True)
class StageResult:
    """Where a stage's outputs are, the key they were computed from, and whether this run computed them."""

    name: str
    key: str
    directory: Path
    computed: bool
    seconds: float


def stage_key(inputs: Any) -> str:
    """A short hash of a stage's inputs: its config section and its upstream stages' keys, as JSON."""
    text = json.dumps(inputs, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cached(stages_dir: Path, name: str, key: str) -> bool:
    """True when the stage's outputs exist and were computed from inputs with this key."""
    marker = stages_dir / name / MARKER
    return marker.is_file() and runs.read_json(marker).get("key") == key


def run_stage(
    stages_dir: Path, name: str, inputs: Any, build: Callable[[Path], None], *, force: bool = False
) -> StageResult:
    """Return the cached outputs of a stage, or build them with `build(folder)` and move them into place.

    Args:
        stages_dir: `run_dir/stages`.
        name: the stage's name, its folder's name.
        inputs: JSON-serializable description of everything the outputs depend on.
        build: writes the stage's outputs into the folder it is given.
        force: rebuild even when the cached outputs have the same key (`--stage`, `--from-stage`).
    """
    key = stage_key(inputs)
    target = stages_dir / name
    if not force and cached(stages_dir, name, key):
        log.info("stage %s: cached (key %s), not recomputed", name, key)
        return StageResult(
            name, key, target, computed=False, seconds=runs.read_json(target / MARKER)["seconds"]
        )
    partial = stages_dir / f".{name}-{key}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    log.info("stage %s: computing (key %s)", name, key)
    started = time.perf_counter()
    build(partial)
    seconds = round(time.perf_counter() - started, 2)
    runs.write_json(
        partial / MARKER,
        {"name": name, "key": key, "inputs": inputs, "seconds": seconds, "finished": time.time()},
    )
    _replace(partial, target)
    log.info("stage %s: done in %.1f s", name, seconds)
    return StageResult(name, key, target, computed=True, seconds=seconds)


def _replace(source: Path, target: Path) -> None:
    """Put `source` where `target` is; a kill in between leaves no target (recomputed), never a mix."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    source.rename(target)
    shutil.rmtree(old, ignore_errors=True)
