"""Named pipeline stages cached in a run directory, each keyed by a hash of its frozen input.

A stage is a function of one frozen dataclass holding exactly what it reads (upstream stages enter as their
keys), so its key is the hash of that object and nothing can change its outputs without changing the key. Its
outputs live in `run_dir/stages/<name>/` with a `stage.json` naming the key they were computed from and the size
(and hash) of every file, checked when read. They are built in a sibling `.<name>-<key>.partial/` folder (kept
across a killed run, so a Trainer can resume from its checkpoints there) and renamed into place only once
complete: a stage that looks finished is finished. Every build starts from its input's seed, so its outputs
never depend on which stages ran before it in the process.
"""

import dataclasses
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
# Version of stage.json and of the keys it holds: 1 hashed hand-kept dicts of config sections; 2 hashes the
# stage's frozen input. A marker of another version is never read as a match: its stage is recomputed.
FORMAT = 2
# Output files up to this size are hashed when written and when read (transcripts, pairs, metrics: a few ms);
# larger ones (weights) only have their size checked, which catches truncation without reading gigabytes.
_HASHED_BELOW = 4 * 2**20


@dataclass(frozen=True)
class StageResult:
    """Where a stage's outputs are, the key they were computed from, and whether this run computed them."""

    name: str
    key: str
    directory: Path
    computed: bool
    seconds: float


def describe(inputs: Any) -> dict[str, Any]:
    """A stage's frozen input as JSON-ready data: its class, the class's `VERSION` and every field.

    `VERSION` (1 when the class sets none) is the version of the stage's outputs: raising it recomputes the
    stage, and through the upstream keys every stage after it, on the same inputs.
    """
    assert dataclasses.is_dataclass(inputs) and type(inputs).__dataclass_params__.frozen, "a frozen dataclass"
    version = getattr(inputs, "VERSION", 1)
    return {"type": type(inputs).__name__, "version": version, "fields": dataclasses.asdict(inputs)}


def stage_seed(inputs: Any) -> int:
    """The seed a stage's build starts from: its input's `seed` (a property over a field: in the key), else 0.

    A stage that neither trains nor samples still starts from a fixed seed: a weight its checkpoint lacks is
    then drawn the same way in every process.
    """
    return getattr(inputs, "seed", 0)


def stage_key(inputs: Any) -> str:
    """A short hash of a stage's frozen input (`describe`), as JSON."""
    text = json.dumps(describe(inputs), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cached(stages_dir: Path, name: str, key: str) -> bool:
    """True when the stage's outputs exist, were computed, in this `FORMAT`, from inputs with this key, and are
    still the files `stage.json` lists; a damaged stage is recomputed with one warning naming it."""
    marker = stages_dir / name / MARKER
    if not marker.is_file():
        return False
    try:
        written = runs.read_json(marker)
    except (OSError, ValueError):
        log.warning("stage %s: %s is damaged; recomputing the stage", name, marker)
        return False
    if written.get("format") != FORMAT or written.get("key") != key:
        return False
    # Markers written before the file list existed have none: trusted, as they were then.
    damage = _damage(stages_dir / name, written.get("files", {}))
    if damage:
        log.warning("stage %s: %s; recomputing the stage", name, damage)
    return damage is None


def finished(stages_dir: Path) -> list[str]:
    """The stages whose outputs are in place under `stages_dir` (marker written), in the order they finished."""
    markers = sorted(stages_dir.glob(f"*/{MARKER}"), key=lambda marker: marker.stat().st_mtime)
    return [marker.parent.name for marker in markers]


def _inventory(folder: Path) -> dict[str, dict[str, Any]]:
    """Every output file under `folder` by relative path: its size, and its sha256 when under `_HASHED_BELOW`."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path != folder / MARKER:
            size = path.stat().st_size
            digest = {"sha256": _sha256(path)} if size < _HASHED_BELOW else {}
            found[path.relative_to(folder).as_posix()] = {"size": size, **digest}
    return found


def _damage(folder: Path, files: dict[str, dict[str, Any]]) -> str | None:
    """What differs between `folder` and the `files` its stage wrote (`_inventory`); None when nothing does."""
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{path} has {size} bytes where it had {expected['size']}"
        if "sha256" in expected and _sha256(path) != expected["sha256"]:
            return f"{path} changed since the stage wrote it (another sha256)"
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_stage(
    stages_dir: Path, name: str, inputs: Any, build: Callable[[Path], None], *, force: bool = False
) -> StageResult:
    """Return the cached outputs of a stage, or build them with `build(folder)` and move them into place.

    Args:
        stages_dir: `run_dir/stages`.
        name: the stage's name, its folder's name.
        inputs: frozen dataclass of everything the outputs depend on; folders and flags that do not change
            them (where upstream outputs are, `--resume`) are the caller's to pass to `build`.
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
    from transformers import set_seed  # here: reading a cached stage needs no ML library

    # The process was seeded once, and the stages before this one drew from it (a LoRA init, a dropout mask):
    # seeding here makes a stage recomputed with --from-stage give what the uninterrupted run gave.
    set_seed(stage_seed(inputs))
    started = time.perf_counter()
    build(partial)
    seconds = round(time.perf_counter() - started, 2)
    runs.write_json(
        partial / MARKER,
        {
            "format": FORMAT,
            "name": name,
            "key": key,
            "inputs": describe(inputs),
            "seconds": seconds,
            "finished": time.time(),
            "files": _inventory(partial),
        },
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
