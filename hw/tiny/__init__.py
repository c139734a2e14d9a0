"""The embedded offline default: tiny models and synthetic data, built in seconds and cached on disk.

A config names them as `tiny:NAME` (`model.name_or_path: tiny:bert-cased`, `data.dataset: tiny:yelp`);
`materialize` turns the name into a local directory that the real loading code then reads unchanged.
"""

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from hw.errors import HwError

PREFIX = "tiny:"


def cache_root() -> Path:
    """Where built tiny assets live: `$HW_CACHE`, else `~/.cache/hw`."""
    return Path(os.environ.get("HW_CACHE", Path.home() / ".cache" / "hw")) / "tiny"


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return `cache_root()/name`, building it with `build(directory)` first if it is not there yet.

    The builder writes into a temporary sibling that is renamed into place only when complete, so an
    interrupted build never leaves a half-written asset behind.
    """
    target = cache_root() / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with _quietly():
            build(staging)
        staging.rename(target)
    except OSError:
        if not target.is_dir():  # another process may have finished the same build first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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


def materialize(name_or_path: str) -> str:
    """Turn `tiny:NAME` into the local directory of that asset; any other value is returned unchanged."""
    if not name_or_path.startswith(PREFIX):
        return name_or_path
    name = name_or_path.removeprefix(PREFIX)
    builders = _builders()
    if name not in builders:
        raise HwError(
            f"unknown tiny asset {name_or_path!r}; available: {', '.join(sorted(PREFIX + n for n in builders))}"
        )
    return str(build_once(f"{name}-v{VERSION}", builders[name]))


# Bump when a builder changes what it writes, so caches from an older hw are not reused.
VERSION = 10


def _builders() -> dict[str, Callable[[Path], None]]:
    """The registry of tiny assets, one line each; imports stay lazy so `hw --help` stays fast."""
    from hw.tiny import atc, causal_lm, classification, qa, whisper

    return {
        "bert-cased": partial(classification.build_encoder, architecture="bert", cased=True),
        "distilbert-uncased": partial(classification.build_encoder, architecture="distilbert", cased=False),
        "yelp": classification.build_yelp,
        "imdb": classification.build_imdb,
        "distilbert-qa": qa.build_encoder,
        "squad": qa.build_squad,
        "whisper": whisper.build_model,
        "commonvoice-zh": partial(whisper.build_commonvoice, language="zh"),
        "commonvoice-fr": partial(whisper.build_commonvoice, language="fr"),
        "tang-llama": causal_lm.build_model,
        "tang": causal_lm.build_poem_data,
        "atcosim": partial(atc.build_dataset, corpus="atcosim"),
        "atco2": partial(atc.build_dataset, corpus="atco2"),
        "atc-llama": atc.build_corrector,
    }
