"""The layers of a config, merged into one mapping: packaged YAML (and its `tiny:` block), the base an adapter
checkpoint was trained on, the user's `--config` file, `--set` overrides; a `run:` block, which the command-line
flags set, must agree with them."""

import copy
from pathlib import Path
from typing import Any

import yaml

from hw.errors import HwError


def merged(
    packaged: Path, *, tiny: bool, config_file: Path | None, overrides: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The packaged YAML, its `tiny:` block when `tiny`, then `config_file`, then `overrides` (`key.sub=value`);
    and, apart, what the user chose by `config_file` and `overrides` alone."""
    data = read_yaml(packaged)
    tiny_block = data.pop("tiny", {})
    if tiny:
        for key, value in tiny_block.items():
            _set_path(data, key, value)
    chosen: dict[str, Any] = {}
    if config_file is not None:
        user = read_yaml(config_file)
        user.pop("tiny", None)
        _merge(data, user)
        chosen = copy.deepcopy(user)
    for item in overrides:
        key, value = _parse_override(item)
        _set_path(data, key, value)
        _set_path(chosen, key, value)
    return data, chosen


def use_checkpoint_bases(data: dict[str, Any], run_checkpoint: str | None, chosen: dict[str, Any]) -> None:
    """Score an adapter checkpoint on the base it was trained on: its name (and revision) replace the packaged
    `model` of its section unless the user chose that model. `--checkpoint` adapts `model`; a section with its
    own `checkpoint` (atc's `corrector`) adapts that section's `model`."""
    from hw import sources

    checkpoints = {"model": run_checkpoint} | {
        f"{name}.model": section.get("checkpoint")
        for name, section in data.items()
        if isinstance(section, dict) and isinstance(section.get("model"), dict)
    }
    for model_key, checkpoint in checkpoints.items():
        found = sources.checkpoint_base(checkpoint, model_key) if isinstance(checkpoint, str) else None
        if found is None or _has_path(chosen, f"{model_key}.name_or_path"):
            continue
        for key, value in found[0].items():
            if not _has_path(chosen, f"{model_key}.{key}"):
                _set_path(data, f"{model_key}.{key}", value)


def _has_path(data: dict[str, Any], dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    if not isinstance(data, dict) or head not in data:
        return False
    return not rest or _has_path(data[head], rest)


def require_flags_agree(given: Any, flags: dict[str, Any]) -> None:
    """A `run:` block (`--config`, `--set run.…`) may only repeat what the flags say (a run's saved config.yaml
    holds one): the flags set the run options, and a differing value would be replaced without a word."""
    if given is None:
        return
    items = given.items() if isinstance(given, dict) else [("", given)]
    differing = [
        f"run.{key}={value!r} (the command line gives {flags[key]!r})"
        if key in flags
        else f"run.{key}={value!r}"
        for key, value in items
        if key not in flags or flags[key] != value
    ]
    if differing:
        raise HwError(
            f"{'; '.join(differing)}: run options are set by flags (the command, --variant or --lang, --tiny, "
            "--eval-only, --checkpoint, --resume), not by --set or --config; pass the flag, or drop the key"
        )


def read_yaml(path: Path) -> dict[str, Any]:
    if Path(path).is_dir():
        raise HwError(f"config file {str(path)!r} is a folder; pass a YAML file to --config")
    if not Path(path).is_file():
        raise HwError(f"config file not found: {str(path)!r}; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise HwError(
            f"config file {str(path)!r} is not UTF-8 text (byte {error.start}); re-save it as UTF-8"
        ) from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        problem = f" ({error.problem})" if getattr(error, "problem", None) else ""
        raise HwError(
            f"config file {str(path)!r} is not valid YAML{line}{problem}; fix the syntax and retry"
        ) from None
    if not isinstance(data, dict):
        raise HwError(
            f"config file {str(path)!r} must hold a mapping of keys to values, not {type(data).__name__}"
        )
    return data


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise HwError(f"--set expects KEY=VALUE, got {item!r}; e.g. --set train.learning_rate=3e-5")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return key.strip(), raw


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
