"""Build the tiny assets: the registry of builders, each asset built once and cached under `tiny.cache_root`."""

import contextlib
import io
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import filelock

from hw import runs, tiny
from hw.errors import HwError

log = logging.getLogger(__name__)


def build_once(target: Path, build: Callable[[Path], None], wait: bool = True) -> Path | None:
    """Return `target`, building it with `build(directory)` first if it is not there yet.

    The builder writes into a hidden sibling that is renamed into place only when complete, so an interrupted
    build never leaves a half-written asset behind. A file lock beside it makes another process that needs the
    same asset wait and then use this build; holding it, the staging folders left by killed builds are removed.
    Without `wait`, an asset another process is building is left to it: None is returned.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(target.with_name(f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            return None
        log.info("waiting for another process to finish building %s", target)
        lock.acquire()
    try:
        if not target.is_dir():
            _build(target, build)
    finally:
        lock.release()
    return target


def _build(target: Path, build: Callable[[Path], None]) -> None:
    """Build `target` through a staging sibling, with the lock held: any other staging folder is a killed build's."""
    for stale in target.parent.glob(f".{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = target.with_name(f".{target.name}-{secrets.token_hex(4)}")
    staging.mkdir()  # the umask's mode: mkdtemp's 0700 would hide the asset from the rest of the group
    log.info("building the tiny asset %s in %s (once per machine)", target.name, target.parent)
    started = time.perf_counter()
    try:
        with _quietly():
            build(staging)
        runs.open_to_umask(staging)  # weights saved by safetensors are 0600
        staging.rename(target)
        log.info("built %s in %.0f s", target.name, time.perf_counter() - started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Build without progress bars and with stdout (where the Trainer prints its loss dicts) set aside.

    A tiny asset builds in seconds: that output would only bury the run's first lines and the command's own
    output. The builders' log lines still reach the console and run.log.
    """
    import datasets
    from transformers.utils import logging

    shown = (logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled())
    logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if shown[0]:
            logging.enable_progress_bar()
        if shown[1]:
            datasets.enable_progress_bars()


def materialize(name_or_path: str, wait: bool = True) -> str:
    """Build `tiny:NAME` unless it is built, and return its local directory; any other value is returned unchanged.

    Without `wait`, an asset another process is building is left to it (see `build_once`).
    """
    if not name_or_path.startswith(tiny.PREFIX):
        return name_or_path
    name = name_or_path.removeprefix(tiny.PREFIX)
    builders = _builders()
    if name not in builders:
        raise HwError(
            f"unknown tiny asset {name_or_path!r}; available: {', '.join(sorted(tiny.PREFIX + n for n in builders))}"
        )
    return str(build_once(tiny.folder(name), builders[name], wait=wait))


@contextlib.contextmanager
def building_ahead(names: list[str]) -> Iterator[Path | None]:
    """Build the tiny assets `names` in a second process while this one runs; yield its log file, or None.

    The tiny runs use one thread, so on two cores or more a second process builds what later runs need
    (the tiny Whisper takes a minute) instead of leaving a core idle. Both take the assets in order, each
    leaving to the other one it is building (`build_once`'s lock): this process waits for it, the other
    moves on. If it fails, the runs build what they need themselves.
    """
    missing = [
        name for name in dict.fromkeys(names) if not tiny.folder(name.removeprefix(tiny.PREFIX)).is_dir()
    ]
    if len(os.sched_getaffinity(0)) < 2 or not missing:
        yield None
        return
    log_file = tiny.cache_root() / "built-ahead.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w", encoding="utf-8") as output:
        helper = subprocess.Popen(
            [sys.executable, "-m", __name__, *missing], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield log_file
    except BaseException:
        helper.terminate()  # an interrupted or failed smoke stops its helper too
        raise
    finally:
        code = helper.wait()
    if code != 0:
        print(
            f"hw: warning: building tiny assets ahead failed (exit {code}), see {log_file}", file=sys.stderr
        )


def _builders() -> dict[str, Callable[[Path], None]]:
    """The registry of tiny assets, one line each; imports stay lazy so `hw --help` stays fast."""
    from hw.tiny import atc, causal_lm, classification, commonvoice, qa, whisper

    return {
        "bert-cased": partial(classification.build_encoder, architecture="bert", cased=True),
        "distilbert-uncased": partial(classification.build_encoder, architecture="distilbert", cased=False),
        "yelp": classification.build_yelp,
        "imdb": classification.build_imdb,
        "distilbert-qa": qa.build_encoder,
        "squad": qa.build_squad,
        "whisper": whisper.build_model,
        "commonvoice-zh": partial(commonvoice.build, language="zh"),
        "commonvoice-fr": partial(commonvoice.build, language="fr"),
        "tang-llama": causal_lm.build_model,
        "tang": causal_lm.build_poem_data,
        "atcosim": partial(atc.build_dataset, corpus="atcosim"),
        "atco2": partial(atc.build_dataset, corpus="atco2"),
        "atc-llama": atc.build_corrector,
    }


if __name__ == "__main__":  # the helper process of `building_ahead`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(1)  # the other core is the main process's
    for asset in sys.argv[1:]:
        materialize(asset, wait=False)
