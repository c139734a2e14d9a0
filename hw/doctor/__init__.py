"""Preflight of a run: what this machine offers, what a homework's config needs, and whether the two meet.

Nothing heavy happens here: no model is loaded and, with `HF_HUB_OFFLINE=1`, no network is touched. A config's
models and data are found by their declared types (`ModelConfig`, `Dataset`, `DataPath`), not by field names
(`needs.py`); every estimate below is rough arithmetic, documented where it is made.
"""

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw import tiny
from hw.doctor.locate import Status
from hw.doctor.machine import Machine, inspect_machine
from hw.doctor.memory import activation_bytes
from hw.doctor.needs import Check, ModelNeed, checkpoint_checks, data_checks, find, model_checks

GB = 1e9
ESTIMATE_LOW = 0.7  # the measured need may be this fraction of the estimate (tests/test_doctor.py)

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
# Activations, KV cache and CUDA context on top of the weights of a model that only runs inference: a rule of
# thumb, not a measurement. Training adds its activations instead (`hw.doctor.memory`).
HEADROOM = 1.2


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
    """Device memory of a training run's weights: training states of what is trained and the frozen rest.

    Args:
        parameters: the model's parameters.
        full_fine_tune: every parameter trains; otherwise LoRA trains at most `LORA_SHARE` of them.
        frozen_bytes: bytes per frozen parameter (0.5 in 4-bit, 1 in 8-bit, else as stored).
    """
    if full_fine_tune:
        return parameters * TRAINING_BYTES
    trained = parameters * LORA_SHARE
    return parameters * frozen_bytes + trained * TRAINING_BYTES


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
    elif machine.gpus:  # models.quantized_loading refuses to go on without it on CUDA
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


def _memory_need(need: ModelNeed, machine: Machine) -> tuple[float, float | None]:
    """Bytes of weights and training states, and of activations (None when the architecture is unknown)."""
    quantized = need.quantization != "none" and machine.bitsandbytes_usable
    frozen = QUANTIZED_BYTES[need.quantization] if quantized else need.stored_bytes
    if not need.save_total_limit:  # no training group: the model only runs inference
        return HEADROOM * need.parameters * frozen, 0.0
    weights = training_memory_bytes(need.parameters, full_fine_tune=need.full_fine_tune, frozen_bytes=frozen)
    if need.architecture is None:
        return weights, None
    # fp32 on a CPU; a GPU computes in half precision under `auto` and with k-bit weights
    half = need.precision in ("fp16", "bf16") or (machine.gpus and (need.precision == "auto" or quantized))
    # models.add_lora turns activation checkpointing on for a k-bit LoRA model, as QLoRA does
    checkpointing = quantized and not need.full_fine_tune
    return weights, activation_bytes(need.architecture, need.batch_size, 2 if half else 4, checkpointing)


def _memory_checks(needs: list[ModelNeed], machine: Machine) -> list[Check]:
    """The largest model's need (stages train one after another) against GPU 0, or the memory of a CPU machine."""
    sized = [need for need in needs if need.parameters is not None]
    if not sized:
        return []
    need, (weights, activations) = max(
        ((need, _memory_need(need, machine)) for need in sized), key=lambda pair: sum(filter(None, pair[1]))
    )
    required = weights + (activations or 0)
    how = (
        "full fine-tune, 16 bytes per parameter"
        if need.full_fine_tune
        else "LoRA: frozen weights + adapter states"
    )
    if activations is None:
        how += "; activations unknown: no config.json"
    elif activations:
        positions = " + ".join(str(positions) for _, positions in need.architecture.stacks)
        how += f" {weights / GB:.1f} GB, activations {activations / GB:.1f} GB at batch {need.batch_size} × {positions}"
        how += " positions"
    else:
        how = f"inference: weights + {HEADROOM - 1:.0%} headroom"
    if machine.gpus:
        capacity, place = machine.gpus[0].total_bytes, f"GPU 0 has {machine.gpus[0].total_bytes / GB:.1f} GB"
    else:
        capacity, place = (
            machine.memory_available_bytes,
            f"{machine.memory_available_bytes / GB:.1f} GB available",
        )
    # The estimate is checked to ±30 % (tests/test_doctor.py): only a need beyond that band is a certain failure.
    status: Status = (
        "ok" if required <= capacity else "warn" if required * ESTIMATE_LOW <= capacity else "fail"
    )
    text = f"memory: about {required / GB:.1f} GB for {need.name} ({how}); {place}"
    if status == "warn":
        text += "; within the estimate's ±30 %: it may not fit, lower train.per_device_train_batch_size if it does not"
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
    needs, data = find(cfg)
    for need in needs:
        checks += model_checks(need) + _precision_checks(need, machine)
    checks += checkpoint_checks(cfg)
    for group in data:
        checks += data_checks(group)
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
