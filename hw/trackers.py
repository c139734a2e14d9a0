"""Experiment trackers (`train.report_to`): checked before a run loads anything, TensorBoard in the run directory."""

import dataclasses
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers.integrations import TensorBoardCallback

from hw.config import TrainConfig
from hw.errors import HwError

# Trainer integrations whose Python module is named otherwise; the others import under their own name.
_TRACKER_MODULES = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "azure_ml": ("azureml",),
    "flyte": ("flytekit",),
}
# Trackers `hw` ships as an extra: `pip install 'hw[NAME]'`.
_TRACKER_EXTRAS = ("tensorboard", "wandb")


def check_trackers(cfg: Any) -> None:
    """Refuse, before any weights load, a `report_to` tracker the Trainer does not know or whose package is
    missing: the Trainer would fail only when it is built, after the data and the model.

    Raises:
        HwError: naming the tracker, the allowed ones, and the install command.
    """
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    for train in _train_configs(cfg):
        for name in train.report_to:
            if name in ("none", "all"):
                continue
            if name not in INTEGRATION_TO_CALLBACK:
                raise HwError(
                    f"train.report_to: {name!r} is not a tracker the Trainer knows; use none, all or "
                    f"{', '.join(INTEGRATION_TO_CALLBACK)}"
                )
            modules = _TRACKER_MODULES.get(name, (name,))
            if not any(importlib.util.find_spec(module) for module in modules):
                install = f"hw[{name}]" if name in _TRACKER_EXTRAS else modules[0]
                raise HwError(
                    f"train.report_to names {name}, which is not installed; run `pip install '{install}'` "
                    "or set train.report_to=[none]"
                )


def _train_configs(node: Any) -> Iterator[TrainConfig]:
    """Every `TrainConfig` in a config (atc has two: the ASR's and the corrector's)."""
    if isinstance(node, TrainConfig):
        yield node
    elif dataclasses.is_dataclass(node):
        for spec in dataclasses.fields(node):
            yield from _train_configs(getattr(node, spec.name))


class RunDirTensorBoard(TensorBoardCallback):
    """TensorBoard events in `logging_dir`: transformers 5 dropped `TrainingArguments.logging_dir` and writes
    to `TENSORBOARD_LOGGING_DIR` (process-wide) or `<output_dir>/runs/<date_host>` (inside checkpoints/)."""

    def __init__(self, logging_dir: Path) -> None:
        super().__init__()
        self.logging_dir = str(logging_dir)
