"""Where the real public test data lives: `$HW_SHARED_DATA`, else `../shared/data` beside the checkout."""

import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("HW_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)
