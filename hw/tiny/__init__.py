"""The embedded offline default: tiny models and synthetic data, named `tiny:NAME` in a config.

A config names them as `tiny:NAME` (`model.name_or_path: tiny:bert-cased`, `data.dataset: tiny:yelp`);
`hw.tiny.assets.materialize` builds them before a run, and `resolve` turns the name into that local directory,
which the real loading code then reads unchanged. This module imports no builder, so `sources` can use it
while the builders use `speech` and `training`.
"""

import os
from pathlib import Path

from hw.errors import HwError

PREFIX = "tiny:"
# Bump when a builder changes what it writes, so caches from an older hw are not reused.
VERSION = 10


def cache_root() -> Path:
    """Where built tiny assets live: `$HW_CACHE`, else `~/.cache/hw`."""
    return Path(os.environ.get("HW_CACHE", Path.home() / ".cache" / "hw")) / "tiny"


def folder(name: str) -> Path:
    """The cache directory of asset `name` (without `tiny:`); versioned, so an older hw's build is not reused."""
    return cache_root() / f"{name}-v{VERSION}"


def resolve(name_or_path: str) -> str:
    """Turn a built `tiny:NAME` into its local directory; any other value is returned unchanged.

    Raises:
        HwError: the asset is not built yet (`hw` builds every asset a config names before the run).
    """
    if not name_or_path.startswith(PREFIX):
        return name_or_path
    directory = folder(name_or_path.removeprefix(PREFIX))
    if not directory.is_dir():
        raise HwError(
            f"tiny asset {name_or_path!r} is not built ({directory} is missing); hw builds the tiny assets a "
            f"config names before its run: outside one, call hw.tiny.assets.materialize({name_or_path!r}) first"
        )
    return str(directory)
