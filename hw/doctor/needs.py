"""What a homework's config needs, found by declared type: its models with their training settings, its data.

A `ModelConfig` field is a model, a `Dataset` or `DataPath` field is data, a `TrainConfig`, `LoraConfig` or
`Quantization` field is a setting of the models beside and below it, and a `Tokens` field (also inside a group
without a model, such as `data`) sets their sequence length. Renaming a field keeps its check.
"""

import dataclasses
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from hw import sources, tiny
from hw.config import DataSource, LoraConfig, ModelConfig, Quantization, TokenBound, TrainConfig
from hw.doctor.locate import (
    KNOWN_MODELS,
    TINY_DATA,
    Status,
    locate_checkpoint,
    locate_dataset,
    locate_model,
    model_config,
)
from hw.doctor.memory import Architecture, architecture


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    status: Status
    """`ok` (✓), `warn` (!, the run works but read this) or `fail` (✗, the run cannot work)."""
    topic: str
    """What was checked: `gpu`, `memory`, `disk`, `model`, `data`, …"""
    text: str


@dataclass(frozen=True)
class ModelNeed:
    """One model a run loads, and what it will cost."""

    key: str
    name: str
    availability: Status
    where: str
    """The local path, the cache entry, or why it is not available."""
    parameters: int | None
    stored_bytes: float
    """Bytes per parameter of the weights as stored (what a download costs)."""
    size_source: str
    full_fine_tune: bool
    quantization: str
    save_total_limit: int
    precision: str
    batch_size: int
    """`train.per_device_train_batch_size` (0 without a training group)."""
    architecture: Architecture | None
    """What its activations scale with, from its config.json; None when that is unknown."""


@dataclass(frozen=True)
class DataGroup:
    """The data fields of one config group (`data`, `data.eval_sets[1]`), with their declared kind."""

    prefix: str
    sources: dict[str, tuple[str | None, DataSource]]
    """Field name → (value, its `DataSource` marker)."""
    revision: str
    data_dir: str | None = None
    """The subfolder a Hub dataset is read from (`data.data_dir`), which its download advice names."""


def find(cfg: Any) -> tuple[list[ModelNeed], list[DataGroup]]:
    """Every model of a config (with the training settings around it) and every group of data fields."""
    models: list[tuple[str, ModelConfig, dict[str, Any]]] = []
    data: list[DataGroup] = []
    _walk(cfg, "", {}, models, data)
    return [_model_need(key, model, settings) for key, model, settings in models], data


def _walk(node: Any, prefix: str, settings: dict[str, Any], models: list, data: list[DataGroup]) -> None:
    hints = get_type_hints(type(node), include_extras=True)
    values = {spec.name: getattr(node, spec.name) for spec in dataclasses.fields(node)}
    # a setting applies to every model in the same group and below (`lora: null` means a full fine-tune)
    settings = {
        **settings,
        **{role: values[name] for name in values if (role := _setting(hints[name]))},
    }
    tokens = _token_bounds(node)
    if tokens:
        settings["tokens"] = max(tokens)
    marked = {name: (values[name], marker) for name in values if (marker := _marker(hints[name]))}
    if marked:
        data.append(DataGroup(prefix, marked, values.get("revision") or "main", values.get("data_dir")))
    for name, value in values.items():
        if isinstance(value, ModelConfig):
            models.append((f"{prefix}{name}.name_or_path", value, settings))
        elif dataclasses.is_dataclass(value):
            _walk(value, f"{prefix}{name}.", settings, models, data)
        elif isinstance(value, list):  # e.g. a list of evaluation sets, each naming its dataset
            for index, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    _walk(item, f"{prefix}{name}[{index}].", settings, models, data)


def _token_bounds(node: Any) -> list[int]:
    """The `Tokens` values of a group and of its sub-groups that hold no model of their own (`data`, `eval`)."""
    hints = get_type_hints(type(node), include_extras=True)
    found = []
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        if isinstance(value, int) and any(
            isinstance(meta, TokenBound) for meta in getattr(hints[spec.name], "__metadata__", ())
        ):
            found.append(value)
        elif dataclasses.is_dataclass(value) and not _holds_model(value):
            found += _token_bounds(value)
    return found


def _holds_model(node: Any) -> bool:
    return any(isinstance(getattr(node, spec.name), ModelConfig) for spec in dataclasses.fields(node))


def _members(hint: Any) -> tuple[Any, ...]:
    """The types a field may hold: the members of `X | None`, else the type itself."""
    return get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)


def _setting(hint: Any) -> str | None:
    """Which training setting a field's declared type makes it, if any."""
    declared = _members(hint)
    if TrainConfig in declared:
        return "train"
    if LoraConfig in declared:
        return "lora"
    if hint == Quantization:  # Literal equality ignores order, so an inline spelling of it counts too
        return "quantization"
    return None


def _marker(hint: Any) -> DataSource | None:
    """The `DataSource` marker of a `Dataset` or `DataPath` field (also inside `| None`)."""
    for member in _members(hint):
        if get_origin(member) is Annotated:
            return next((meta for meta in member.__metadata__ if isinstance(meta, DataSource)), None)
    return None


def _model_need(key: str, model: ModelConfig, settings: dict[str, Any]) -> ModelNeed:
    availability, where, size = locate_model(model.name_or_path, model.revision, key)
    if size is None and model.name_or_path in KNOWN_MODELS:
        parameters, stored = KNOWN_MODELS[model.name_or_path]
        size = (parameters, stored, "hw's table of the course's models")
    parameters, stored, source = size or (None, 4.0, "unknown")
    train = settings.get("train")
    config = model_config(model.name_or_path, model.revision)
    quantization = settings.get("quantization") or "none"
    return ModelNeed(
        key=key,
        name=model.name_or_path,
        availability=availability,
        where=where,
        parameters=parameters,
        stored_bytes=stored,
        size_source=source,
        full_fine_tune=not isinstance(settings.get("lora"), LoraConfig),
        quantization=quantization,
        save_total_limit=train.save_total_limit if isinstance(train, TrainConfig) else 0,
        precision=train.precision if isinstance(train, TrainConfig) else "auto",
        batch_size=train.per_device_train_batch_size if isinstance(train, TrainConfig) else 0,
        architecture=architecture(config, settings.get("tokens")) if config else None,
    )


def model_checks(need: ModelNeed) -> list[Check]:
    """Whether the model loads here (with the runs' own download advice where it is not), and whether its size is
    known."""
    checks = [Check(need.availability, "model", f"model {need.name} ({need.key}): {need.where}")]
    if need.parameters is None and not need.name.startswith(tiny.PREFIX):
        checks.append(
            Check("warn", "size", f"size of {need.name} unknown: its memory and disk are not estimated")
        )
    return checks


def checkpoint_checks(cfg: Any) -> list[Check]:
    """`--checkpoint` and hw atc's `corrector.checkpoint`, local folders or Hub ids, reported as models."""
    corrector = getattr(cfg, "corrector", None)
    named = {
        "--checkpoint": cfg.run.checkpoint,
        "corrector.checkpoint": getattr(corrector, "checkpoint", None),
    }
    checks = []
    for key, name in named.items():
        if name is None:
            continue
        availability, where = locate_checkpoint(name, key)
        text = (
            where if availability == "fail" and sources.is_local(name) else f"model {name} ({key}): {where}"
        )
        if availability == "fail" and not sources.is_local(name):
            text += "; use " + sources.HOW_TO_DOWNLOAD["checkpoint"].format(name=name, key=key)
        checks.append(Check(availability, "model", text))
    return checks


def data_checks(group: DataGroup) -> list[Check]:
    """A dataset id or path must resolve; a group of local paths needs at least one of them set."""
    checks = []
    for name, (value, marker) in group.sources.items():
        key = f"{group.prefix}{name}"
        if value is None:
            continue
        if marker.hub:
            status, where = locate_dataset(value, group.revision)
            if status == "fail" and not sources.is_local(value):
                where += "; " + _dataset_advice(value, key, group)
        elif value.startswith(tiny.PREFIX):
            status, where = "ok", TINY_DATA
        else:  # a file or folder the homework reads directly, never from the Hub
            found = Path(value).expanduser().exists()
            status, where = ("ok", "found") if found else ("fail", "does not exist")
        checks.append(Check(status, "data", f"data {value} ({key}): {where}"))
    if not checks:
        keys = [f"{group.prefix}{name}" for name in group.sources]
        checks.append(
            Check("fail", "data", f"no data given: set one of {', '.join(keys)} (--set {keys[0]}=PATH)")
        )
    return checks


def _dataset_advice(name: str, key: str, group: DataGroup) -> str:
    """The download advice of `hw.sources`; a list item (`data.eval_sets[1].dataset`) has no `--set` of its own."""
    advice = "use " + sources.dataset_download(name, key, group.revision, group.data_dir)
    if "[" not in key:
        return advice
    return advice.replace(f"then --set {key}=DIR", f"then put DIR in {key} of a --config file")
