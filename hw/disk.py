"""A full disk, whichever library's write found it: recognised, and told as one line saying how to go on."""

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from hw.errors import HwError

MB = 1024 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded")  # safetensors' Rust I/O error
# torch.save's zip writer says only that a write failed ("unexpected pos 83264 vs 83152"): a nearly full disk
# under the folder being written tells why.
_TORCH_WRITE_FAILED = ("unexpected pos", "file write failed", "iostream error")
_NEARLY_FULL = 64 * MB


def is_full(error: BaseException, directory: Path) -> bool:
    """Whether `error` (or one it was raised from or during) is a write that found the disk of `directory` full."""
    chain = _chain(error)
    if any(isinstance(link, OSError) and link.errno in _FULL for link in chain):
        return True
    messages = [str(link) for link in chain]
    if any(word in message for message in messages for word in _FULL_WORDS):
        return True
    torch_failed = any(word in message for message in messages for word in _TORCH_WRITE_FAILED)
    return torch_failed and free_bytes(directory) < _NEARLY_FULL


def _chain(error: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def free_bytes(directory: Path) -> int:
    """Free space on the disk of `directory` (or of its nearest existing parent)."""
    existing = next(folder for folder in (directory, *directory.parents) if folder.exists())
    return shutil.disk_usage(existing).free


def full_error(path: Path, needed: int = 0) -> HwError:
    """The one line of a full disk under `path`; `needed`: bytes the failed write is known to need (0: unknown)."""
    free = free_bytes(path)
    amount = f"at least {max(1, round((needed - free) / MB))} MB" if needed else "space"
    return HwError(
        f"cannot write {str(path)!r} (No space left on device; {free / MB:.1f} MB free); free {amount} or "
        "point --output-dir (--reports-dir for a report) elsewhere"
    )


@contextlib.contextmanager
def full_as_error(run_dir: Path) -> Iterator[None]:
    """Turn a full disk met in the block (a checkpoint, a model save, a cache) into one line, exit 2.

    The checkpoint whose save failed is deleted: it frees space, and only complete ones stay for `--resume`.
    """
    try:
        yield
    except HwError:
        raise
    except Exception as error:
        if not is_full(error, run_dir):
            raise
        from hw import training  # transformers: imported only when a save failed

        checkpoints = run_dir / "checkpoints"
        training.drop_incomplete_checkpoints(checkpoints)
        # Another save needs about as much as the biggest one that fits.
        needed = max((_size(folder) for folder in checkpoints.glob("checkpoint-*")), default=0)
        # The file that failed when the error names it (a features cache lives outside the run directory).
        named = [link.filename for link in _chain(error) if isinstance(link, OSError) and link.filename]
        raise full_error(Path(named[0]) if named else run_dir, needed) from None


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
