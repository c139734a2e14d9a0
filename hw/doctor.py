"""Preflight of a run: what this machine offers, what a homework's config needs, and whether the two meet.

Nothing heavy happens here: no model is loaded and, with `HF_HUB_OFFLINE=1`, no network is touched. Sizes come
from the local copy of a model (safetensors headers), else from the Hub's metadata when it is reachable, else
from `KNOWN_MODELS`; every estimate below is rough arithmetic, documented where it is made.
"""

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hw import tiny
from hw.config import LoraConfig, ModelConfig, TrainConfig
from hw.sources import HOW_TO_DOWNLOAD  # the same advice as a failed run gives

GB = 1e9

# Parameters and bytes per parameter as stored on the Hub, of the course's default models, for when neither a
# local copy nor the Hub can say. Exact counts are the arithmetic of each model's config.json (embeddings +
# layers × per-layer weights): bert-base-cased 22,665,216 + 12 × 7,087,872 + pooler 590,592; whisper-large-v2
# encoder 636,784,640 + decoder 906,520,320; Llama-2-7B 2 × 32,000 × 4,096 + 32 × 202,383,360 + 4,096. The two
# Traditional-Chinese 7B models are Llama-2-7B (TAIDE) and Mistral-7B (Breeze) layers with vocabularies extended
# to about 56k and 62k tokens (their model cards), so their counts are rounded.
KNOWN_MODELS: dict[str, tuple[int, int]] = {
    "bert-base-cased": (108_310_272, 4),
    "distilbert-base-uncased": (66_362_880, 4),  # + the course's classifier head and LoRA = 67,584,004
    "openai/whisper-small": (241_734_912, 4),
    "openai/whisper-large-v2": (1_543_304_960, 4),
    "NousResearch/Llama-2-7b-chat-hf": (6_738_415_616, 2),
    "taide/TAIDE-LX-7B-Chat": (6_940_000_000, 2),
    "MediaTek-Research/Breeze-7B-Instruct-v0_1": (7_490_000_000, 2),
}

# Bytes per parameter while training with AdamW: weights + gradients + two moment estimates. Mixed precision
# keeps the same 16 (2 + 2 half-precision weights and gradients, 4 + 4 + 4 fp32 master weights and moments;
# Rajbhandari et al. 2020, ZeRO, section 3.1).
TRAINING_BYTES = 16
# Bytes per parameter in a Trainer checkpoint: fp32 weights (4) + AdamW's two fp32 moments in optimizer.pt (8).
CHECKPOINT_BYTES = 12
# Upper bound on the share of a model LoRA trains: the course's largest, the IMDB classifier with its head trained
# in full, is 1,221,124 of 67,584,004 = 1.8 %; whisper's r 4 on q/v is 0.13 %, tang's r 8 on 7 projections 0.3 %.
LORA_SHARE = 0.02
# Bytes per frozen parameter once bitsandbytes quantized it (NF4 is 4 bits; LLM.int8() is 8).
QUANTIZED_BYTES = {"4bit": 0.5, "8bit": 1.0}
# Activations, CUDA context and allocator slack on top of the weights and training states: a rule of thumb,
# not a measurement; the real figure grows with batch size and sequence length.
HEADROOM = 1.2

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1}  # safetensors dtype names

Status = Literal["ok", "warn", "fail"]
_TINY_DATA = "tiny synthetic data, built offline"
Size = tuple[int, float, str]  # parameters, stored bytes per parameter, where the count came from


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    status: Status
    """`ok` (✓), `warn` (!, the run works but read this) or `fail` (✗, the run cannot work)."""
    topic: str
    """What was checked: `gpu`, `memory`, `disk`, `model`, `data`, …"""
    text: str


@dataclass(frozen=True)
class Gpu:
    """One CUDA device."""

    name: str
    total_bytes: int
    free_bytes: int
    capability: str


@dataclass(frozen=True)
class Machine:
    """What this machine offers a training run."""

    torch: str
    cpu_count: int
    memory_available_bytes: int
    gpus: list[Gpu]
    bf16: bool
    fp16: bool
    bitsandbytes: str
    """`usable (VERSION)`, `installed (VERSION) but needs CUDA`, `not installed` or why it fails."""
    bitsandbytes_usable: bool


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


@dataclass(frozen=True)
class Diagnosis:
    """Everything `hw doctor` found; `ok` is False when any check failed."""

    machine: Machine
    homework: str | None
    variant: str | None
    checks: list[Check]
    models: list[ModelNeed] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)


def checkpoint_bytes(parameters: int, *, full_fine_tune: bool, save_total_limit: int) -> float:
    """Disk a training run fills: `save_total_limit` Trainer checkpoints plus the final saved model.

    A full fine-tune checkpoint holds every weight and its optimizer state (12 bytes per parameter) and the final
    model 4 more; a LoRA run saves only its adapters, at most `LORA_SHARE` of the parameters.
    """
    trained = parameters if full_fine_tune else parameters * LORA_SHARE
    return trained * (CHECKPOINT_BYTES * save_total_limit + 4)


def training_memory_bytes(parameters: int, *, full_fine_tune: bool, frozen_bytes: float) -> float:
    """Device memory a training run needs at least: training states of what is trained, the frozen rest, headroom.

    Args:
        parameters: the model's parameters.
        full_fine_tune: every parameter trains; otherwise LoRA trains at most `LORA_SHARE` of them.
        frozen_bytes: bytes per frozen parameter (0.5 in 4-bit, 1 in 8-bit, else as stored).
    """
    if full_fine_tune:
        return HEADROOM * parameters * TRAINING_BYTES
    trained = parameters * LORA_SHARE
    return HEADROOM * (parameters * frozen_bytes + trained * TRAINING_BYTES)


def inspect_machine() -> Machine:
    """CUDA devices, precision support, bitsandbytes and memory of this machine (imports torch, loads nothing)."""
    import torch

    gpus = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        major, minor = torch.cuda.get_device_capability(index)
        gpus.append(Gpu(torch.cuda.get_device_name(index), total, free, f"{major}.{minor}"))
    bitsandbytes, usable = _bitsandbytes(bool(gpus))
    return Machine(
        torch=torch.__version__,
        cpu_count=os.cpu_count() or 1,
        memory_available_bytes=_memory_available(),
        gpus=gpus,
        bf16=bool(gpus) and torch.cuda.is_bf16_supported(),
        fp16=bool(gpus),
        bitsandbytes=bitsandbytes,
        bitsandbytes_usable=usable,
    )


def _bitsandbytes(cuda: bool) -> tuple[str, bool]:
    """Whether 8-bit and 4-bit loading will really happen: installed, importable, and a 4-bit round trip on CUDA."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "not installed", False
    try:
        import bitsandbytes
    except Exception as error:  # a broken build fails in many ways; any of them means no quantization
        return f"installed but does not import ({type(error).__name__}: {str(error)[:80]})", False
    version = getattr(bitsandbytes, "__version__", "?")
    if not cuda:
        return f"installed ({version}) but needs CUDA", False
    try:
        import torch
        from bitsandbytes import functional

        functional.quantize_4bit(torch.ones(64, device="cuda", dtype=torch.float16))
    except Exception as error:
        return f"installed ({version}) but a 4-bit test failed ({type(error).__name__})", False
    return f"usable ({version})", True


def _memory_available() -> int:
    """MemAvailable from /proc/meminfo (Linux), else all physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def safetensors_size(path: Path) -> tuple[int, int]:
    """Parameters and bytes of tensor data in one `.safetensors` file, read from its JSON header alone."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))  # the format opens with the header's length, u64 LE
        header = json.loads(handle.read(length))
    tensors = [value for name, value in header.items() if name != "__metadata__"]
    parameters = sum(math.prod(tensor["shape"]) for tensor in tensors)
    return parameters, sum(tensor["data_offsets"][1] - tensor["data_offsets"][0] for tensor in tensors)


def _size_of_files(files: list[Path], where: str) -> Size | None:
    sizes = [safetensors_size(path) for path in files if path.suffix == ".safetensors"]
    parameters = sum(count for count, _ in sizes)
    if not parameters:
        return None
    return parameters, sum(data for _, data in sizes) / parameters, f"safetensors header in {where}"


def _locate_model(name: str, revision: str) -> tuple[Status, str, Size | None]:
    """Whether a model loads without a download: `tiny:NAME`, a local directory, the Hub cache, else the Hub."""
    if name.startswith(tiny.PREFIX):
        return "ok", "tiny asset, built offline on first use", None
    path = Path(name).expanduser()
    if path.exists() or not _is_repo_id(name):
        if not path.is_dir():
            return "fail", f"directory {str(path)!r} does not exist", None
        if not any((path / marker).is_file() for marker in ("config.json", "adapter_config.json")):
            return (
                "fail",
                f"{str(path)!r} holds no config.json or adapter_config.json: not a saved model",
                None,
            )
        return "ok", f"local directory {path}", _size_of_files(sorted(path.glob("*.safetensors")), "it")
    cached = _cached_weights(name, revision)
    if cached:
        return "ok", f"in the Hugging Face cache ({cached[0].parent})", _size_of_files(cached, "the cache")
    return _on_the_hub("model", name, revision)


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except ValueError:  # HFValidationError: a path, not `owner/name`
        return False
    return True


def _cached_weights(name: str, revision: str) -> list[Path] | None:
    """The cached weight files of a Hub model, or None when any is missing (a config alone does not load)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(name, filename, revision=revision)
        return Path(found) if isinstance(found, str) else None

    for single in ("model.safetensors", "pytorch_model.bin"):
        if cached(single):
            return [cached(single)]
    index = cached("model.safetensors.index.json")
    if index is None:
        return None
    shards = [cached(shard) for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return None if None in shards else shards


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _on_the_hub(kind: str, name: str, revision: str) -> tuple[Status, str, Size | None]:
    """Not cached: offline that is the end; online, one metadata request says whether a download will work."""
    from huggingface_hub import HfApi, constants

    if _offline():
        return "fail", f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1", None
    api = HfApi()
    lookup = api.model_info if kind == "model" else api.dataset_info
    try:
        info = lookup(name, revision=revision, timeout=10)
    except Exception as error:  # unreachable, missing, gated or private: none of them downloads
        return "fail", f"not cached, and the Hub did not answer for it ({type(error).__name__})", None
    weights = getattr(info, "safetensors", None)
    size = None
    if weights and weights.total:
        stored = sum(count * _DTYPE_BYTES.get(dtype, 4) for dtype, count in weights.parameters.items())
        size = (weights.total, stored / weights.total, "the Hub's safetensors metadata")
    gated = (
        " (gated: accept its licence on the Hub and set HF_TOKEN)" if getattr(info, "gated", False) else ""
    )
    return "warn", f"not cached: the run downloads it from the Hub{gated}", size


def _locate_dataset(name: str, revision: str) -> tuple[Status, str]:
    """Whether a dataset loads without a download: `tiny:NAME`, a local path, the datasets or Hub cache."""
    if name.startswith(tiny.PREFIX):
        return "ok", _TINY_DATA
    path = Path(name).expanduser()
    if path.exists() or not _is_repo_id(name):
        return ("ok", f"local path {path}") if path.exists() else ("fail", f"{str(path)!r} does not exist")
    import datasets
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    prepared = Path(datasets.config.HF_DATASETS_CACHE) / name.replace("/", "___")
    snapshots = (
        Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=name, repo_type="dataset") / "snapshots"
    )
    for cached in (prepared, snapshots):
        if cached.is_dir() and any(cached.iterdir()):
            return "ok", f"cached ({cached})"
    status, where, _ = _on_the_hub("dataset", name, revision)
    return status, where


# Fields whose value applies to every model in the same group and below (`lora: null` means a full fine-tune).
_CONTEXT_FIELDS = ("train", "lora", "quantization", "load_in_8bit")


def _walk(node: Any, prefix: str, context: dict[str, Any], found: dict[str, list]) -> None:
    """Collect every ModelConfig (with the training settings around it) and every data group of a config."""
    values = {spec.name: getattr(node, spec.name) for spec in dataclasses.fields(node)}
    own = {name: values[name] for name in _CONTEXT_FIELDS if name in values}
    context = {**context, **own}
    if any(_is_source_field(name) for name in values):
        found["data"].append((prefix, values))
    for name, value in values.items():
        if isinstance(value, ModelConfig):
            found["models"].append((f"{prefix}{name}.name_or_path", value, context))
        elif dataclasses.is_dataclass(value) and name != "run":
            _walk(value, f"{prefix}{name}.", context, found)
        elif isinstance(value, list):  # e.g. a list of evaluation sets, each naming its dataset
            for index, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    _walk(item, f"{prefix}{name}[{index}].", context, found)


def _is_dataset_field(name: str) -> bool:
    """A Hub id or local dataset: `dataset`, or a named one such as `eval_dataset`."""
    return name == "dataset" or name.endswith("_dataset")


def _is_source_field(name: str) -> bool:
    """Where a homework reads its data: a dataset, a folder (`directory`) or a file (`train_file`)."""
    return _is_dataset_field(name) or name == "directory" or name.endswith("_file")


def _model_need(key: str, model: ModelConfig, context: dict[str, Any]) -> ModelNeed:
    availability, where, size = _locate_model(model.name_or_path, model.revision)
    if size is None and model.name_or_path in KNOWN_MODELS:
        parameters, stored = KNOWN_MODELS[model.name_or_path]
        size = (parameters, stored, "hw's table of the course's models")
    parameters, stored, source = size or (None, 4.0, "unknown")
    train = context.get("train")
    quantization = context.get("quantization") or ("8bit" if context.get("load_in_8bit") else "none")
    return ModelNeed(
        key=key,
        name=model.name_or_path,
        availability=availability,
        where=where,
        parameters=parameters,
        stored_bytes=stored,
        size_source=source,
        full_fine_tune=not isinstance(context.get("lora"), LoraConfig),
        quantization=quantization,
        save_total_limit=train.save_total_limit if isinstance(train, TrainConfig) else 0,
        precision=train.precision if isinstance(train, TrainConfig) else "auto",
    )


def _model_checks(need: ModelNeed) -> list[Check]:
    text = f"model {need.name} ({need.key}): {need.where}"
    if need.availability == "fail" and _is_repo_id(need.name):
        text += "; use " + HOW_TO_DOWNLOAD["model"].format(name=need.name, key=need.key)
    checks = [Check(need.availability, "model", text)]
    if need.parameters is None and not need.name.startswith(tiny.PREFIX):
        checks.append(
            Check("warn", "size", f"size of {need.name} unknown: its memory and disk are not estimated")
        )
    return checks


def _data_checks(prefix: str, values: dict[str, Any]) -> list[Check]:
    """A dataset id or path must resolve; a group of local paths needs at least one of them set."""
    checks = []
    for name, value in values.items():
        if not _is_source_field(name) or value is None:
            continue
        if _is_dataset_field(name):
            status, where = _locate_dataset(value, values.get("revision") or "main")
            if status == "fail" and _is_repo_id(value):
                where += "; " + _dataset_advice(value, f"{prefix}{name}")
        elif value.startswith(tiny.PREFIX):
            status, where = "ok", _TINY_DATA
        else:  # a file or folder the homework reads directly, never from the Hub
            status, where = (
                ("ok", "found") if Path(value).expanduser().exists() else ("fail", "does not exist")
            )
        checks.append(Check(status, "data", f"data {value} ({prefix}{name}): {where}"))
    if not checks:
        keys = [f"{prefix}{name}" for name in values if _is_source_field(name)]
        checks.append(
            Check("fail", "data", f"no data given: set one of {', '.join(keys)} (--set {keys[0]}=PATH)")
        )
    return checks


def _dataset_advice(name: str, key: str) -> str:
    """The download advice of `hw.sources`; a list item (`data.eval_sets[1].dataset`) has no `--set` of its own."""
    if "[" not in key:
        return "use " + HOW_TO_DOWNLOAD["dataset"].format(name=name, key=key)
    return (
        f"save it where the Hub is reachable (`datasets.load_dataset({name!r}).save_to_disk(DIR)`) "
        f"and put DIR in {key} of a --config file"
    )


def machine_checks(machine: Machine) -> list[Check]:
    """The machine's own lines: CPU and memory, each GPU with its precisions, bitsandbytes."""
    checks = [
        Check(
            "ok",
            "machine",
            f"torch {machine.torch}, {machine.cpu_count} CPU cores, "
            f"{machine.memory_available_bytes / GB:.1f} GB of memory available",
        )
    ]
    for index, gpu in enumerate(machine.gpus):
        precisions = "bf16 and fp16" if machine.bf16 else "fp16 (no bf16)"
        checks.append(
            Check(
                "ok",
                "gpu",
                f"GPU {index}: {gpu.name}, {gpu.total_bytes / GB:.1f} GB ({gpu.free_bytes / GB:.1f} GB free), "
                f"compute capability {gpu.capability}, {precisions}",
            )
        )
    if not machine.gpus:
        checks.append(
            Check("warn", "gpu", "no CUDA GPU: training runs on the CPU in fp32, without bf16/fp16")
        )
    bitsandbytes = f"bitsandbytes {machine.bitsandbytes}"
    if machine.bitsandbytes_usable:
        checks.append(Check("ok", "bitsandbytes", f"{bitsandbytes}: 8-bit and 4-bit loading work"))
    else:
        checks.append(
            Check(
                "warn", "bitsandbytes", f"{bitsandbytes}: 8-bit and 4-bit loading fall back to full precision"
            )
        )
    return checks


def _precision_checks(need: ModelNeed, machine: Machine) -> list[Check]:
    """A precision or quantization the config asks for must exist here, or the run fails or silently changes."""
    checks = []
    if need.precision == "bf16" and not machine.bf16:
        checks.append(
            Check("fail", "precision", "train.precision is 'bf16' but no GPU here has bf16; set it to auto")
        )
    if need.precision == "fp16" and not machine.fp16:
        checks.append(
            Check("fail", "precision", "train.precision is 'fp16' but there is no CUDA GPU; set it to auto")
        )
    if need.quantization == "none":
        return checks
    asked = f"{need.name} is loaded in {need.quantization} with bitsandbytes"
    if machine.bitsandbytes_usable:
        checks.append(Check("ok", "quantization", f"{asked}: usable here"))
    elif machine.gpus:  # training.quantized_loading refuses to go on without it on CUDA
        checks.append(
            Check("fail", "quantization", f"{asked}, which is {machine.bitsandbytes}; pip install 'hw[gpu]'")
        )
    elif not need.name.startswith(tiny.PREFIX):  # a tiny model needs no quantization to fit
        checks.append(
            Check(
                "warn",
                "gpu",
                f"{asked}, which needs a CUDA GPU: on this CPU it loads unquantized "
                f"({_weights_text(need)}) and trains very slowly",
            )
        )
    return checks


def _weights_text(need: ModelNeed) -> str:
    if need.parameters is None:
        return "size unknown"
    return f"{need.parameters / 1e9:.2f} B parameters × {need.stored_bytes:g} bytes"


def _memory_need(need: ModelNeed, machine: Machine) -> float:
    quantized = need.quantization != "none" and machine.bitsandbytes_usable
    frozen = QUANTIZED_BYTES[need.quantization] if quantized else need.stored_bytes
    if not need.save_total_limit:  # no training group: the model only runs inference
        return HEADROOM * need.parameters * frozen
    return training_memory_bytes(need.parameters, full_fine_tune=need.full_fine_tune, frozen_bytes=frozen)


def _memory_checks(needs: list[ModelNeed], machine: Machine) -> list[Check]:
    """The largest model's need (stages train one after another) against GPU 0, or the memory of a CPU machine."""
    sized = [need for need in needs if need.parameters is not None]
    if not sized:
        return []
    need, required = max(((need, _memory_need(need, machine)) for need in sized), key=lambda pair: pair[1])
    how = (
        "full fine-tune, 16 bytes per parameter"
        if need.full_fine_tune
        else "LoRA: frozen weights + adapter states"
    )
    if machine.gpus:
        capacity, place = machine.gpus[0].total_bytes, f"GPU 0 has {machine.gpus[0].total_bytes / GB:.1f} GB"
    else:
        capacity, place = (
            machine.memory_available_bytes,
            f"{machine.memory_available_bytes / GB:.1f} GB available",
        )
    status: Status = "ok" if required <= capacity else "fail"
    text = f"memory: at least {required / GB:.1f} GB for {need.name} ({how}, +20 %); {place}"
    checks = [Check(status, "memory", text)]
    if machine.gpus and machine.gpus[0].free_bytes < required <= capacity:
        free = machine.gpus[0].free_bytes / GB
        checks.append(
            Check("warn", "memory", f"GPU 0 has only {free:.1f} GB free now: other processes hold the rest")
        )
    if not machine.gpus and need.parameters > 1e9 and not need.name.startswith(tiny.PREFIX):
        checks.append(
            Check("warn", "gpu", f"{need.name} has {need.parameters / 1e9:.1f} B parameters: use a GPU")
        )
    return checks


def _disk_checks(needs: list[ModelNeed], runs_root: Path) -> list[Check]:
    """Checkpoints go under the runs folder, downloads into the Hub cache; one budget when they share a disk."""
    from huggingface_hub import constants

    checkpoints = sum(
        checkpoint_bytes(
            need.parameters, full_fine_tune=need.full_fine_tune, save_total_limit=need.save_total_limit
        )
        for need in needs
        if need.parameters is not None and need.save_total_limit
    )
    downloads = sum(
        need.parameters * need.stored_bytes
        for need in needs
        if need.availability == "warn" and need.parameters is not None
    )
    budgets: dict[int, tuple[Path, list[str], float]] = {}
    for place, required, what in (
        (runs_root, checkpoints, "checkpoints"),
        (Path(constants.HF_HUB_CACHE), downloads, "downloads"),
    ):
        existing = _existing(place)
        where, parts, total = budgets.get(existing.stat().st_dev, (existing, [], 0.0))
        part = [f"{required / GB:.1f} GB of {what} in {place}"] if required else []
        budgets[existing.stat().st_dev] = (where, parts + part, total + required)
    checks = []
    for where, parts, required in budgets.values():
        free = shutil.disk_usage(where).free
        status: Status = "ok" if required <= free else "fail"
        needed = " + ".join(parts) if parts else "nothing large to store"
        checks.append(Check(status, "disk", f"disk: {needed}; {free / GB:.1f} GB free at {where}"))
    return checks


def _existing(path: Path) -> Path:
    """The nearest folder that exists at or above `path` (a run folder is created only when the run starts)."""
    path = path.expanduser().absolute()
    while not path.exists():
        path = path.parent
    return path


def diagnose(cfg: Any | None, runs_root: Path, machine: Machine | None = None) -> Diagnosis:
    """Check this machine, and, given a homework's config, whether its run can work here.

    Args:
        cfg: a loaded homework config (`hw.config.load`), or None to report the machine alone.
        runs_root: where the run's folder will be created (its disk is checked).
        machine: what `inspect_machine` returns; passed by tests to stand for another machine.
    """
    machine = machine or inspect_machine()
    checks = machine_checks(machine)
    if cfg is None:
        return Diagnosis(machine, None, None, checks)
    found: dict[str, list] = {"models": [], "data": []}
    _walk(cfg, "", {}, found)
    needs = [_model_need(key, model, context) for key, model, context in found["models"]]
    for need in needs:
        checks += _model_checks(need) + _precision_checks(need, machine)
    for prefix, values in found["data"]:
        checks += _data_checks(prefix, values)
    checks += _memory_checks(needs, machine) + _disk_checks(needs, runs_root)
    return Diagnosis(machine, cfg.run.homework, cfg.run.variant, checks, needs)


_MARKS = {"ok": "✓", "warn": "!", "fail": "✗"}


def render(diagnosis: Diagnosis) -> str:
    """The checklist: one ✓ / ! / ✗ line per check, then the verdict."""
    title = (
        "this machine"
        if diagnosis.homework is None
        else f"hw {diagnosis.homework}, variant {diagnosis.variant}"
    )
    lines = [f"hw doctor: {title}"]
    lines += [f"  {_MARKS[check.status]} {check.text}" for check in diagnosis.checks]
    failed = [check for check in diagnosis.checks if check.status == "fail"]
    if failed:
        lines.append(f"✗ this run cannot work here: {len(failed)} problem(s) marked ✗ above")
    elif diagnosis.homework is not None:
        lines.append("✓ this run can start here (read the ! lines)")
    return "\n".join(lines)


def to_json(diagnosis: Diagnosis) -> dict[str, Any]:
    """The diagnosis as one JSON-ready object: machine, homework, variant, checks, models and `ok`."""
    return {**dataclasses.asdict(diagnosis), "ok": diagnosis.ok}
