"""Refuse, before any weights load or train, weights that do not fit the homework: a truncated weight file, the
wrong kind of model or adapter, an adapter trained on another base, too few positions for `data.max_length`, LoRA
targets it lacks."""

from __future__ import annotations

import difflib
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hw.errors import HwError

if TYPE_CHECKING:  # models imports this module to check what it loads
    from hw.config import LoraConfig
    from hw.models import Weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Family:
    """What one family loader of `hw.models` can load: a full model's head, an adapter's task, a base."""

    homeworks: str
    head: str
    """The end of a full model's architecture name (`config.json` `architectures`)."""
    task_types: tuple[str | None, ...]
    """`adapter_config.json` `task_type` values of adapters it applies (hw's Whisper adapters have none)."""
    loader: str
    """The transformers class that loads the base: a base fits when its config is one this class maps."""


FAMILIES = {
    "classifier": _Family(
        "hw yelp", "ForSequenceClassification", ("SEQ_CLS",), "AutoModelForSequenceClassification"
    ),
    "question_answering": _Family(
        "hw qa", "ForQuestionAnswering", ("QUESTION_ANS",), "AutoModelForQuestionAnswering"
    ),
    "whisper": _Family(
        "hw whisper (and hw atc's recognizer)",
        "WhisperForConditionalGeneration",
        (None, "SEQ_2_SEQ_LM"),
        "WhisperForConditionalGeneration",
    ),
    "causal_lm": _Family(
        "hw tang (and hw atc's corrector)", "ForCausalLM", ("CAUSAL_LM",), "AutoModelForCausalLM"
    ),
}
# Config keys that fix the shapes of the weights an adapter was trained against.
_SHAPE_KEYS = (
    "model_type",
    "hidden_size",
    "d_model",
    "num_hidden_layers",
    "encoder_layers",
    "decoder_layers",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


def torn_file(folder: Path, suffixes: tuple[str, ...]) -> tuple[Path, str] | None:
    """The first file of `folder` ending in one of `suffixes` that is not whole, and why; None when all are.

    Cheap enough for gigabytes: a safetensors file's header must account for its exact size, a torch file (a zip
    archive since torch 1.6) must end in a readable central directory, which a truncation cuts off.
    """
    for path in sorted(folder.iterdir()):
        if path.suffix not in suffixes or not path.is_file():
            continue
        why = _torn_safetensors(path) if path.suffix == ".safetensors" else _torn_zip(path)
        if why:
            return path, why
    return None


def require_whole(folder: Path, named: str) -> None:
    """Refuse a saved model or adapter whose safetensors files are not whole (a partial copy, a full disk).

    Only safetensors: a `.bin` given by a user may be a pre-zip torch pickle, which this cannot check.

    Raises:
        HwError: naming the first damaged file.
    """
    torn = torn_file(folder, (".safetensors",))
    if torn:
        raise HwError(
            f"{named}: {torn[0]} is damaged ({torn[1]}); copy or save the weights again, or give another copy"
        )


def cache_problem(snapshot: Path, name: str, revision: str) -> str | None:
    """Why the Hub cache's copy of model `name` (its snapshot folder) cannot load: a safetensors file that is not
    whole (a disk that filled, a copied cache); None when every one is."""
    torn = torn_file(snapshot, (".safetensors",))
    if torn is None:
        return None
    option = "" if revision == "main" else f" --revision {revision}"
    return (
        f"in the Hugging Face cache, but {torn[0]} is damaged ({torn[1]}); download it again: "
        f"hf download {name}{option} --force-download"
    )


def safetensors_header(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The tensor entries (dtype, shape, data_offsets) of a `.safetensors` file and the file size they imply, read
    from its header alone: the format opens with the header's length (u64, little-endian), then the header's JSON,
    then the tensors' data.

    Raises:
        ValueError: the file is too short for the header it announces, or that is no safetensors header.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if size < 8 or 8 + length > size:
            raise ValueError(f"{size} bytes, shorter than its header")
        try:
            header = json.loads(handle.read(length))
            tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
            end = max((entry["data_offsets"][1] for entry in tensors.values()), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise ValueError("its header is not a safetensors header") from None
    return tensors, 8 + length + end


def _torn_safetensors(path: Path) -> str | None:
    try:
        _, expected = safetensors_header(path)
    except ValueError as error:
        return str(error)
    size = path.stat().st_size
    return None if size == expected else f"{size} bytes where its header says {expected}"


def _torn_zip(path: Path) -> str | None:
    try:
        zipfile.ZipFile(path).close()  # reads the central directory at the end of the file only
    except (zipfile.BadZipFile, OSError):
        return f"{path.stat().st_size} bytes without a readable zip directory: cut short"
    return None


def model_config(weights: Weights) -> Any:
    """The transformers config of the model `weights` loads (a full checkpoint's, else the base's); no weights."""
    from transformers import AutoConfig

    name, revision = weights.loads_from
    return AutoConfig.from_pretrained(
        name, revision=revision, trust_remote_code=weights.model.trust_remote_code
    )


def require_family(weights: Weights, family: str) -> None:
    """Refuse a checkpoint or base that is not the kind `family` loads, reading only configs.

    Raises:
        HwError: a full model with another head, an adapter for another task, a base this family cannot build
            on, or an adapter trained on a base of other shapes than the configured one.
    """
    import transformers

    wanted = FAMILIES[family]
    named = _named(weights)
    if weights.checkpoint and not weights.adapter:
        found = _json(Path(weights.checkpoint) / "config.json").get("architectures") or []
        if found and not any(name.endswith(wanted.head) for name in found):
            raise HwError(
                f"{named} holds a {found[0]}; {wanted.homeworks} needs a {_head(wanted)} "
                "(give a model this homework saved)"
            )
        return
    if weights.adapter:
        adapter = _json(Path(weights.checkpoint) / "adapter_config.json")
        if adapter.get("task_type") not in wanted.task_types:
            raise HwError(
                f"{named} holds a PEFT adapter of task_type {adapter.get('task_type')}; {wanted.homeworks} needs "
                f"task_type {' or '.join(map(str, wanted.task_types))} (give an adapter this homework saved)"
            )
        _require_same_base(weights, adapter.get("base_model_name_or_path"), named)
    if weights.model.trust_remote_code:  # repository code brings classes transformers does not map
        return
    config = model_config(weights)
    loader = getattr(transformers, wanted.loader)
    mapping = getattr(loader, "_model_mapping", None)  # an Auto class maps configs; a model class has one
    if not (type(config) in mapping if mapping is not None else isinstance(config, loader.config_class)):
        raise HwError(
            f"{weights.key} {weights.model.name_or_path!r} holds a {config.model_type} model, which cannot be "
            f"built into a {_head(wanted)}; {wanted.homeworks} needs a base that can"
        )


def _require_same_base(weights: Weights, trained_on: str | None, named: str) -> None:
    """Refuse an adapter trained on a base whose shapes differ from the configured base's (a size-mismatch crash)."""
    from transformers import AutoConfig

    if not trained_on or trained_on in (weights.model.name_or_path, weights.base):
        return
    if Path(trained_on).expanduser().resolve() == Path(weights.base).expanduser().resolve():
        return
    try:
        theirs = AutoConfig.from_pretrained(trained_on).to_dict()
    except Exception:  # offline and never downloaded, or moved: the configured base may be a copy of it
        log.warning(
            "%s was trained on %s, which cannot be read here; assuming %s is the same model",
            named,
            trained_on,
            weights.model.name_or_path,
        )
        return
    ours = model_config(weights).to_dict()
    differing = [key for key in _SHAPE_KEYS if theirs.get(key) != ours.get(key)]
    if differing:
        key = differing[0]
        raise HwError(
            f"{named} is an adapter trained on base {trained_on!r}, but {weights.key} is "
            f"{weights.model.name_or_path!r} ({key} {theirs.get(key)} there, {ours.get(key)} here); "
            f"--set {weights.key}={trained_on}, or give an adapter trained on this base"
        )


def adapter_mismatch(weights: Weights, error: RuntimeError) -> HwError | None:
    """The one-line error for PEFT's size-mismatch crash, when `_require_same_base` could not compare beforehand
    (the base the adapter names cannot be read here); None for any other error."""
    found = re.search(
        r"size mismatch for (\S+): copying a param with shape torch.Size\((\[.*?\])\) from checkpoint, "
        r"the shape in current model is torch.Size\((\[.*?\])\)",
        str(error),
    )
    if found is None:
        return None
    parameter, theirs, ours = found.groups()
    trained_on = _json(Path(weights.checkpoint) / "adapter_config.json").get("base_model_name_or_path")
    return HwError(
        f"{_named(weights)} is an adapter trained on base {trained_on!r}, whose shapes differ from {weights.key} "
        f"{weights.model.name_or_path!r} ({parameter.removeprefix('base_model.model.')} {theirs} there, {ours} "
        f"here); --set {weights.key}=DIR of that base, or give an adapter trained on this base"
    )


def require_max_length(weights: Weights, max_length: int, family: str) -> None:
    """Refuse a `data.max_length` beyond the model's positions, once the model is known to be of `family`.

    Raises:
        HwError: if the model is not of `family` (`require_family`: that is the mistake to name first), or has
            fewer `max_position_embeddings` than `max_length`.
    """
    require_family(weights, family)
    limit = getattr(model_config(weights), "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        named = _named(weights) if weights.checkpoint else repr(weights.model.name_or_path)
        raise HwError(
            f"data.max_length: {max_length} is above the {limit} positions of {named} "
            f"(max_position_embeddings); set data.max_length to at most {limit}"
        )


def require_lora_targets(model: Any, lora: LoraConfig) -> None:
    """Refuse `target_modules` entries that name no module of `model` (PEFT matches a name or a dotted suffix).

    Raises:
        HwError: naming the missing entries, the model's linear layers, and close matches.
    """
    import torch

    names = [name for name, _ in model.named_modules()]
    missing = [
        target
        for target in lora.target_modules
        if target != "all-linear" and not any(name == target or name.endswith(f".{target}") for name in names)
    ]
    if not missing:
        return
    linear = dict.fromkeys(
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    )
    # A cutoff below difflib's 0.6: Llama's `q_proj` given to DistilBERT should suggest its `q_lin` (0.36).
    guesses = dict.fromkeys(
        guess for target in missing for guess in difflib.get_close_matches(target, linear, n=1, cutoff=0.35)
    )
    raise HwError(
        f"LoRA target_modules {', '.join(map(repr, missing))}: no such module in {type(model).__name__}, "
        f"whose linear modules are {', '.join(linear)}"
        + (f"; did you mean {', '.join(map(repr, guesses))}?" if guesses else "; choose from those")
    )


def _named(weights: Weights) -> str:
    return f"--checkpoint {weights.given!r}" if weights.given else repr(weights.checkpoint)


def _head(family: _Family) -> str:
    return family.head if family.head.startswith("Whisper") else f"…{family.head}"


def _json(path: Path) -> dict[str, Any]:
    # sources.resolve_model has already checked that the file parses
    return json.loads(path.read_text(encoding="utf-8"))
