"""The run manifest `run.json`: what a run is and where it stands, and which run directory a command may write.

A run writes its manifest before anything else and updates it atomically: homework, variant, the settings that
define what it trains, the weights an eval-only run scored, and its status (`running`, `finished` once its record
and report fragment are written, `failed` when it raised). Every command that reuses a run directory reads it
first, so a finished run is never overwritten and a run is resumed only with the settings it was trained with.
"""

import contextlib
import hashlib
import json
import re
import shlex
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import hw
from hw import runs
from hw.errors import HwError

FILE = "run.json"
# Top-level config keys that do not change what a run trains (how it is invoked, scored, decoded or reported);
# every other one (model, data, train, lora, quantization, prompt, corrector…) is a training key.
_NOT_TRAINING = {"run", "eval", "generation", "stages", "reference", "matrix_reference", "demo_sentences"}


def training_keys(settings: dict[str, Any]) -> dict[str, Any]:
    """The part of a config (`config.to_dict`) that defines what a run trains, as JSON data."""
    return json.loads(json.dumps({key: value for key, value in settings.items() if key not in _NOT_TRAINING}))


def read(run_dir: Path) -> dict[str, Any] | None:
    """The manifest of `run_dir`; None when it has none (no run, or a run from before manifests)."""
    path = run_dir / FILE
    if not path.is_file():
        return None
    try:
        return runs.read_json(path)
    except (ValueError, OSError) as error:
        raise HwError(
            f"{str(path)!r} is damaged ({error}); restore it, or start a new run in another --output-dir"
        ) from None


def status(run_dir: Path) -> str:
    """`running`, `finished` or `failed`.

    Runs from before manifests (hw 0.1.0) have no run.json: their metrics.json is written last, so one with it
    counts as finished, and one without it (or a folder holding no run) as unfinished, which `--resume` continues.
    """
    manifest = read(run_dir)
    if manifest is not None:
        return manifest["status"]
    return "finished" if (run_dir / "metrics.json").exists() else "running"


def start(run_dir: Path, options: Any, settings: dict[str, Any]) -> None:
    """Write the manifest of a run that starts, or resumes (which keeps its creation time), as `running`."""
    previous = read(run_dir)
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    canonical = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
    manifest = {
        "homework": options.homework,
        "variant": options.variant,
        "tiny": options.tiny,
        "eval_only": options.eval_only,
        # The weights an eval-only run scored, as given (None: the base model of `training.model`).
        "scored": options.checkpoint if options.eval_only else None,
        "label": options.label,
        # The command line that created the run (a resume keeps it), for its model card.
        "command": (previous or {}).get("command") or shlex.join(["hw", *sys.argv[1:]]),
        "status": "running",
        "config_hash": hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16],
        "training": training_keys(settings),
        "hw_version": hw.__version__,
        "created": previous["created"] if previous else now,
        "finished": None,
    }
    runs.write_json(run_dir / FILE, manifest)


@contextlib.contextmanager
def tracked(run_dir: Path) -> Iterator[None]:
    """Mark the run `finished` when the block (which ends with its report fragment) succeeds, `failed` when it
    raises; a manifest the block never wrote, or removed with its run directory, is left alone."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(
            HwError
        ):  # a full disk: the error that stopped the run says so, not this one
            _set_status(run_dir, "failed")
        raise
    _set_status(run_dir, "finished")


def _set_status(run_dir: Path, new: str) -> None:
    manifest = read(run_dir) if runs.is_main_process() else None
    if manifest is None:
        return
    finished = datetime.now().astimezone().isoformat(timespec="seconds") if new == "finished" else None
    runs.write_json(run_dir / FILE, {**manifest, "status": new, "finished": finished})


def run_directory(
    options: Any, settings: dict[str, Any], *, output_dir: Path | None, runs_root: Path
) -> tuple[Path, Path | None]:
    """The directory this command writes, and the topmost folder it creates there (None when it creates none).

    A new run gets a directory of its own (`runs.run_directory`) or `--output-dir`, unless that holds a finished
    run or an unfinished training run. `--resume` continues the newest unfinished run of the homework and variant,
    or `--output-dir`, only if it is that homework's and variant's, unfinished (`hw atc --stage/--from-stage` may
    recompute stages of a finished run) and trained with the same training keys.

    Decided by the main process, and agreed by the others: they would see the manifest it starts writing.

    Raises:
        HwError: the directory may not be written by this command (one line saying why and what to do).
    """
    decided: tuple[Path, Path | None] | HwError | None = None
    if runs.is_main_process():
        try:
            decided = _decided(options, settings, output_dir=output_dir, runs_root=runs_root)
        except HwError as error:  # every process stops with it
            decided = error
    decided = runs.agreed(decided)
    if isinstance(decided, HwError):
        raise decided
    return decided


def scored_run(checkpoint: str | None) -> dict[str, Any] | None:
    """The manifest of the run `--checkpoint` names; None for a bare model or adapter folder (or no checkpoint)."""
    folder = Path(checkpoint).expanduser() if checkpoint else None
    return read(folder) if folder is not None and folder.is_dir() else None


def _decided(
    options: Any, settings: dict[str, Any], *, output_dir: Path | None, runs_root: Path
) -> tuple[Path, Path | None]:
    scored = scored_run(options.checkpoint)
    if scored is not None and scored["homework"] != options.homework:
        raise HwError(
            f"--checkpoint {options.checkpoint!r} is a {_what(scored)} run; hw {options.homework} scores weights "
            f"of its own homework: give a {options.homework} run (or score this one with hw {scored['homework']})"
        )
    if options.resume:
        run_dir = output_dir if output_dir is not None else _newest_resumable(options, runs_root)
        _require_resumable(run_dir, options, settings)
        return run_dir, None
    if output_dir is None:
        return runs.run_directory(options.homework, options.variant, runs_root=runs_root, tiny=options.tiny)
    _require_free(output_dir, options)
    return output_dir, runs.topmost_missing(output_dir)


def _require_free(output_dir: Path, options: Any) -> None:
    """A new run may not write over a finished run, an unfinished training run, or the weights it scores."""
    if options.checkpoint is not None:
        scored = Path(options.checkpoint).expanduser().resolve()
        if scored == output_dir.resolve() or output_dir.resolve() in scored.parents:
            raise HwError(
                f"--output-dir {str(output_dir)!r} holds the weights --checkpoint scores; an eval-only run "
                "writes a new run directory: drop --output-dir or choose another one"
            )
    if status(output_dir) == "finished":
        raise HwError(
            f"--output-dir {str(output_dir)!r} already holds a finished run; choose another directory "
            f"(to score it: --eval-only --checkpoint {output_dir})"
        )
    manifest = read(output_dir)
    if manifest is not None and not manifest["eval_only"]:  # an unfinished eval-only run has nothing to lose
        raise HwError(
            f"--output-dir {str(output_dir)!r} holds an unfinished {_what(manifest)} run; continue it with "
            f"--resume --output-dir {output_dir}, or choose another directory"
        )


def _newest_resumable(options: Any, runs_root: Path) -> Path:
    """The newest unfinished training run of this homework and variant; else the newest run, which is refused."""
    prefix = f"{options.variant}-tiny" if options.tiny else options.variant
    folder = runs_root / options.homework
    # By name, numbers by value: `-2` after `-1` and before `-10` (`runs.run_directory` adds them in one second).
    earlier = sorted(
        folder.glob(f"{prefix}-2*"),
        key=lambda path: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)],
    )
    if not earlier:
        raise HwError(
            f"--resume: no earlier {prefix!r} run under {str(folder)!r}; "
            "start one without --resume or pass --output-dir"
        )
    for run_dir in reversed(earlier):
        manifest = read(run_dir) or {}
        if status(run_dir) != "finished" and not manifest.get("eval_only"):
            return run_dir
    return earlier[-1]  # finished: `_require_resumable` says so


def _require_resumable(run_dir: Path, options: Any, settings: dict[str, Any]) -> None:
    if not run_dir.is_dir():
        raise HwError(
            f"--resume --output-dir {str(run_dir)!r}: no such run directory; --resume only continues an "
            "existing run (drop --resume to start a new one there)"
        )
    manifest = read(run_dir)
    if manifest is not None:
        identity = ("homework", "variant", "tiny")
        if any(manifest[key] != getattr(options, key) for key in identity):
            raise HwError(
                f"run {str(run_dir)!r} is a {_what(manifest)} run, not {_what(vars(options))}; resume it "
                f"with hw {manifest['homework']} and its variant, or give --output-dir a run of this one"
            )
        if manifest["eval_only"]:
            raise HwError(
                f"run {str(run_dir)!r} is an eval-only run; nothing to resume (start a new run, or "
                "--eval-only --checkpoint with the weights it scored)"
            )
    stages = settings.get("stages") or {}
    recomputes = stages.get("only") or stages.get("start")  # hw atc's stages of a finished run
    if status(run_dir) == "finished" and not recomputes:
        raise HwError(
            f"run {str(run_dir)!r} is finished; nothing to resume (start a new run, or --eval-only "
            f"--checkpoint {run_dir})"
        )
    if manifest is not None:
        _require_same_training(run_dir, manifest["training"], training_keys(settings))


def _require_same_training(run_dir: Path, trained: dict[str, Any], now: dict[str, Any]) -> None:
    before, after = _flat(trained), _flat(now)
    differing = [
        f"{key}: {before.get(key)!r} in the run, {after.get(key)!r} now"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
    if differing:
        raise HwError(
            f"run {str(run_dir)!r} was trained with other settings ({'; '.join(differing)}); resume it with "
            "the same options, or start a new run"
        )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (`data.max_train_samples`); lists stay whole."""
    if not isinstance(value, dict):
        return {prefix.removesuffix("."): value}
    return {
        key: leaf for name, item in value.items() for key, leaf in _flat(item, f"{prefix}{name}.").items()
    }


def _what(run: dict[str, Any]) -> str:
    """`yelp (variant imdb-lora, tiny)`: what a run is, in words."""
    return f"{run['homework']} (variant {run['variant']}{', tiny' if run['tiny'] else ''})"
