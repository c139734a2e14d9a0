"""Run directories and their artifacts: where a run writes, which process writes, atomic writes.

Under `torchrun` or `accelerate launch` every process runs the same command; the main process (rank 0) alone
writes artifacts, and the others agree with it on everything that names a file.
"""

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hw import disk
from hw.errors import HwError, Interrupted

Item = TypeVar("Item")
Result = TypeVar("Result")
PARTIAL_SUFFIX = ".partial"  # an atomic write in progress; a file with it was never finished


def world_size() -> int:
    """Processes running this command: `WORLD_SIZE`, set by torchrun and accelerate launch; 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's index among all processes of the run (0 for the main one and when alone)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its own machine, which is also the index of its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True in the process that writes the artifacts (rank 0), and in a run that is not distributed."""
    return rank() == 0


def _joined() -> bool:
    """Join the launcher's process group as the Trainer does (accelerate's `PartialState`); False when alone.

    Without CUDA the processes talk over gloo: `cpu=True` is what makes accelerate see them as distributed.
    The collectives below go to torch.distributed itself: every new `TrainingArguments` resets accelerate's
    state (the tiny builders' too), but the process group stays.
    """
    if world_size() == 1:
        return False
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())
    return True


def agreed(value: Item) -> Item:
    """The main process's `value`, on every process (a run directory named by the clock, say)."""
    if not _joined():
        return value
    from torch import distributed

    box = [value]
    distributed.broadcast_object_list(box, src=0)
    return box[0]


def any_process(flag: bool, device: Any) -> bool:
    """Whether `flag` is true in any process (all must stop at the same step, say); `device` holds the
    collective's tensor (the Trainer's `args.device`: CUDA for NCCL, CPU for gloo)."""
    if not _joined():  # alone, or `alone()`: a tiny asset's builder must not wait for the others
        return flag
    import torch
    from torch import distributed

    tensor = torch.tensor([int(flag)], device=device)
    distributed.all_reduce(tensor, op=distributed.ReduceOp.MAX)
    return bool(tensor.item())


def leave_process_group() -> None:
    """Wait until every process got here, then close the process group: left to the interpreter's exit,
    gloo's teardown races another process's and aborts one (SIGABRT) after a finished run."""
    if not _joined():
        return
    from torch import distributed

    distributed.barrier()
    distributed.destroy_process_group()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process of each machine runs the block first (and fills the caches); the others then read them."""
    if not _joined():
        yield
        return
    from torch import distributed

    if local_rank() != 0:
        distributed.barrier()
    yield
    if local_rank() == 0:
        distributed.barrier()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Hide the launcher from a block the main process runs by itself while the others wait.

    A Trainer inside (a tiny asset's builder) then trains alone instead of waiting for the other processes.
    """
    # Unset, not "0": accelerate takes any LOCAL_RANK for a launched process.
    saved = {
        name: os.environ.pop(name, None) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
    }
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def spread(work: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """`work` of every item, in order, each process doing every `world_size()`-th item; every process gets all.

    For work outside the Trainer (batched generation): n processes finish it in about 1/n of the time.
    """
    if not _joined():
        return [work(item) for item in items]
    from torch import distributed

    mine = [(index, work(item)) for index, item in enumerate(items) if index % world_size() == rank()]
    shares: list[Any] = [None] * world_size()
    distributed.all_gather_object(shares, mine)
    results = dict(pair for share in shares for pair in share)
    return [results[index] for index in range(len(items))]


def run_directory(homework: str, variant: str, *, runs_root: Path, tiny: bool) -> tuple[Path, Path | None]:
    """Create a new run's directory, `runs_root/<homework>/<variant>[-tiny]-<timestamp>`.

    Created exclusively: a second run started in the same second gets `-2`, a third `-3`, and so on, never the
    first one's directory. Called by the main process alone; the others agree on its name (`agreed`).

    Returns:
        The run directory, and the topmost folder created for it (for `removed_on_user_error`).
    """
    folder = runs_root / homework
    prefix = f"{variant}-tiny" if tiny else variant
    name = f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    created = topmost_missing(folder)
    with _folder_errors(folder / name, "run directory", "--output-dir"):
        folder.mkdir(parents=True, exist_ok=True)
        number = 1
        while True:
            run_dir = folder / (name if number == 1 else f"{name}-{number}")
            try:
                run_dir.mkdir()
            except FileExistsError:  # another run took it this second
                number += 1
                continue
            return run_dir, created or run_dir


def topmost_missing(directory: Path) -> Path | None:
    """The topmost folder of `directory` that does not exist yet: what creating it adds; None when it exists."""
    created = None if directory.exists() else directory
    while created is not None and not created.parent.exists():
        created = created.parent
    return created


def prepare(run_dir: Path) -> None:
    """Create the run directory, with a clear error when it cannot be written; drop a killed run's unfinished writes.

    Unfinished writes are files; a stage's unfinished folder stays, for its Trainer to resume from.
    """
    with _folder_errors(run_dir, "run directory", "--output-dir"):
        run_dir.mkdir(parents=True, exist_ok=True)
        _try_a_file_in(run_dir)
    if is_main_process():  # only the writer: another process's sweep could catch one of its writes in flight
        for unfinished in run_dir.rglob(f".*{PARTIAL_SUFFIX}"):
            # Files only: a stage's `.partial/` folder holds the checkpoints it resumes from (hw.stages).
            if not unfinished.is_dir():
                unfinished.unlink(missing_ok=True)


def require_writable(directory: Path, what: str, flag: str) -> None:
    """Fail with one line unless `directory` exists or could be created, and takes files; create nothing.

    For a folder written only at the end of a run (the reports): its problem shows before hours of training,
    and a run stopped by another user error leaves no empty folder behind.
    """
    with _folder_errors(directory, what, flag):
        nearest = next(folder for folder in (directory, *directory.parents) if folder.exists())
        if not nearest.is_dir():  # a file where a folder must go
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        _try_a_file_in(nearest)


def _try_a_file_in(directory: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
        pass


@contextlib.contextmanager
def _folder_errors(directory: Path, what: str, flag: str) -> Iterator[None]:
    """Turn an `OSError` about `directory` into one line naming it and the option that chose it."""
    try:
        yield
    except OSError as error:
        raise HwError(
            f"cannot write to {what} {str(directory)!r} ({error.strerror}); choose a writable {flag}"
        ) from None


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically, from the main process only (see `write_bytes`)."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically, from the main process only: a reader sees the old content or the new, never half.

    Other processes of a distributed run return at once: they hold the same results (the Trainer gathers them).

    Raises:
        HwError: the file cannot be written (disk full, read-only or missing folder, a folder in its place).
    """
    if not is_main_process():
        return
    temporary = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Mode 0o666 less the umask (mkstemp's 0600 would hide the run from a TA or a teammate in the group).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _unwritable(path, error) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        # The data, then the rename, on disk before this returns: after a power loss the name holds the old
        # content or the new, never an empty file. Windows cannot open a folder (nor needs to).
        if hasattr(os, "O_DIRECTORY"):
            folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _unwritable(path, error) from None
        raise


def partial_path(path: Path) -> Path:
    """A new hidden sibling of `path` to write before renaming it into place; `prepare` sweeps any a kill left."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def open_to_umask(directory: Path) -> None:
    """Widen the modes of `directory` and everything in it to what the umask gives a new file or folder.

    safetensors 0.8 writes its files 0600 whatever the umask (safetensors issue #782), so a TA or a teammate in
    the group could not load the weights. A mode is only ever widened, never narrowed.
    """
    mask = os.umask(0o777)  # reading the umask means setting it: the strictest value for that instant
    os.umask(mask)
    for path in (directory, *directory.rglob("*")):
        if path.is_symlink():  # chmod would follow it out of `directory`
            continue
        allowed = (0o777 if path.is_dir() else 0o666) & ~mask
        mode = path.stat().st_mode & 0o777
        if mode | allowed != mode:
            path.chmod(mode | allowed)


def _unwritable(path: Path, error: OSError) -> HwError:
    if disk.is_full(error, path.parent):
        return disk.full_error(path)
    return HwError(
        f"cannot write {str(path)!r} ({error.strerror or error}); free disk space, or choose a writable "
        "--output-dir / --reports-dir"
    )


@contextlib.contextmanager
def removed_on_user_error(
    directory: Path, created: Path | None, continue_with: str | None = None
) -> Iterator[None]:
    """Remove `created`, the topmost folder a command created for `directory` (`topmost_missing` before it did),
    when a user error stops it before any work was saved.

    A typo found in the first second then leaves nothing behind, not even an empty `runs/<homework>/`; a run
    that saved a checkpoint or finished a stage (`hw.stages`) keeps them, and its error ends with how to continue
    (`continue_with`, a command); one that wrote its record (metrics.json) is kept; a folder that existed before
    is never removed.
    """
    try:
        yield
    except Interrupted:
        raise  # its message says to continue with --resume in this directory
    except HwError as error:
        saved = _saved_work(directory)
        if saved and continue_with:
            # The same error (its type, its exit code), with what was kept and the way back to it.
            error.args = (
                f"{error}; {saved} kept in {directory}: once fixed, continue with: {continue_with}",
            )
        elif created is not None and not saved and not (directory / "metrics.json").exists():
            shutil.rmtree(created, ignore_errors=True)
        raise


def _saved_work(directory: Path) -> str | None:
    """What a stopped run saved that a continued one reads back: its finished stages or its checkpoints."""
    from hw import stages  # which imports this module

    done = stages.finished(directory / "stages")
    if done:
        return f"finished stage(s) {', '.join(done)}"
    return "checkpoints" if any(directory.glob("checkpoints/checkpoint-*")) else None


def write_json(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows `write_jsonl` wrote; blank lines skipped.

    Split at line feeds only: `str.splitlines()` also splits at U+0085, U+2028 and U+2029, which `write_jsonl`
    leaves raw inside strings (IMDB reviews hold U+0085).
    """
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
