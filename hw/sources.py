"""Resolve a model or dataset named by Hub id, local path or `tiny:NAME`, failing early with a clear line.

Everything heavy (weights, data) is fetched by the real `from_pretrained` / `load_dataset` calls; this module
makes sure the name points at something loadable before any of that starts.
"""

import logging
from pathlib import Path
from typing import Any

from hw import tiny
from hw.errors import HwError

log = logging.getLogger(__name__)

_HOW_TO_DOWNLOAD = {
    "model": "`hf download {name} --local-dir DIR` where the Hub is reachable, then --set {key}=DIR",
    "dataset": "`datasets.load_dataset({name!r}).save_to_disk(DIR)` where the Hub is reachable, then --set {key}=DIR",
}


def resolve_model(name_or_path: str, revision: str = "main", key: str = "model.name_or_path") -> str:
    """Return something `from_pretrained` can load: a local directory or a Hub id known to resolve.

    A local directory must hold `config.json` (a model) or `adapter_config.json` (a PEFT adapter). A Hub id
    is checked by fetching its `config.json` (from the local cache when `HF_HUB_OFFLINE=1`).
    """
    name = tiny.materialize(name_or_path)
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        if not path.is_dir():
            raise HwError(
                f"{key}: {name_or_path!r} does not exist; give a directory saved with save_pretrained"
            )
        if not any((path / marker).is_file() for marker in ("config.json", "adapter_config.json")):
            raise HwError(
                f"{key}: {name_or_path!r} is not a saved model (no config.json or adapter_config.json in it); "
                "point at the directory save_pretrained wrote"
            )
        return str(path)
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(name, "config.json", revision=revision)
    except Exception as error:  # offline, gated, missing repo or revision: all end the same way for the user
        raise _unreachable("model", name, key, error) from None
    return name


def resolve_checkpoint(path: str) -> str:
    """A saved model or adapter directory given by `--checkpoint`; a run directory means its `model/` folder."""
    candidate = Path(path).expanduser()
    if not candidate.is_dir():
        raise HwError(f"--checkpoint {path!r} does not exist; give a saved model, adapter or run directory")
    if (candidate / "model").is_dir():
        candidate = candidate / "model"
    return resolve_model(str(candidate), key="--checkpoint")


def load_dataset_dict(
    dataset: str, config_name: str | None = None, revision: str = "main", key: str = "data.dataset"
):
    """Load every split of a dataset from the Hub, a `save_to_disk` folder, or a folder of csv/json/parquet files."""
    import datasets

    name = tiny.materialize(dataset)
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        if not path.is_dir():
            raise HwError(f"{key}: {dataset!r} does not exist; give a dataset folder or a Hub id")
        if (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path))
        try:
            return datasets.load_dataset(str(path))
        except Exception as error:
            raise HwError(f"{key}: could not read the files in {dataset!r} ({_first_line(error)})") from None
    try:
        return datasets.load_dataset(name, config_name, revision=revision)
    except Exception as error:
        raise _unreachable("dataset", name, key, error) from None


def require_split(dataset_dict: Any, split: str, dataset: str, key: str) -> Any:
    """The named split, or a clear error listing the ones that exist."""
    if split not in dataset_dict:
        raise HwError(
            f"{key}: split {split!r} is not in dataset {dataset!r} (it has: {', '.join(dataset_dict)}); "
            f"set {key} to one of those"
        )
    return dataset_dict[split]


def require_columns(split: Any, columns: list[str], dataset: str) -> None:
    """Fail when a split lacks a column the homework reads."""
    missing = [column for column in columns if column not in split.column_names]
    if missing:
        raise HwError(
            f"dataset {dataset!r} lacks column(s) {', '.join(missing)} (it has: {', '.join(split.column_names)}); "
            "use data in the homework's schema"
        )


def _looks_like_path(name: str) -> bool:
    # A Hub id is `name` or `owner/name`; anything else with a separator or a leading dot is meant as a path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _unreachable(kind: str, name: str, key: str, error: Exception) -> HwError:
    reason = _first_line(error)
    how = _HOW_TO_DOWNLOAD[kind].format(name=name, key=key)
    return HwError(f"{kind} {name!r} could not be loaded from the Hugging Face Hub ({reason}); use {how}")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__
