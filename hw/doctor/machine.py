"""What this machine offers a training run: CUDA devices, precisions, bitsandbytes, memory and cores."""

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


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
