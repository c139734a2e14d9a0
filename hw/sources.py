"""Find a model and read a dataset named by Hub id, local path or built `tiny:NAME`, failing early and clearly.

Weights are fetched by the real `from_pretrained` calls; this module makes sure the name points at something
loadable before that starts, and holds the dataset readers (Hub, `save_to_disk`, data files; speech folders are
read by `hw.speech_sources`).
"""

import functools
import json
import logging
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from hw import runs, tiny, weight_checks
from hw.errors import HwError

log = logging.getLogger(__name__)

HOW_TO_DOWNLOAD = {
    "model": "`hf download {name} --local-dir DIR` where the Hub is reachable, then --set {key}=DIR",
    "checkpoint": "`hf download {name} --local-dir DIR` where the Hub is reachable, then give DIR to {key}",
    # the repository's files, not `load_dataset(...).save_to_disk`: that fails on a loading-script dataset
    "dataset": "`hf download {name} --repo-type dataset{options} --local-dir DIR` where the Hub is reachable, "
    "then --set {key}=DIR",
}


def dataset_download(name: str, key: str, revision: str = "main", data_dir: str | None = None) -> str:
    """How to fetch a Hub dataset on a connected machine and read it here: the advice every message gives."""
    options = (f" --revision {revision}" if revision != "main" else "") + (
        f" --include '{data_dir}/*'" if data_dir else ""
    )
    return HOW_TO_DOWNLOAD["dataset"].format(name=name, key=key, options=options)


def resolve_model(name_or_path: str, revision: str = "main", key: str = "model.name_or_path") -> str:
    """Return something `from_pretrained` can load: a local directory or a Hub id known to resolve.

    A local directory must hold `config.json` (a model) or `adapter_config.json` (a PEFT adapter). A Hub id
    is checked by fetching its `config.json` (from the local cache when `HF_HUB_OFFLINE=1`).
    """
    name = tiny.resolve(name_or_path)
    if is_local(name):
        path = Path(name).expanduser()
        problem = saved_model_problem(path, name_or_path)
        if problem:
            raise HwError(f"{key}: {problem}")
        return str(path)
    from huggingface_hub import hf_hub_download

    offline_unless_reachable()
    try:
        config = hf_hub_download(name, "config.json", revision=revision)
    except Exception as error:  # offline, gated, missing repo or revision: all end the same way for the user
        raise _unreachable("model", name, key, error) from None
    problem = weight_checks.cache_problem(Path(config).parent, name, revision)  # what is cached already
    if problem:
        raise HwError(f"{key} {name!r}: {problem}")
    return name


PROBE_SECONDS = 3.0  # a TCP connection takes well under a second wherever the Hub can be used at all


@functools.cache
def offline_unless_reachable() -> None:
    """Before the first Hub request: switch to offline mode (`HF_HUB_OFFLINE=1`) when the Hub cannot be reached.

    One short TCP connection to the endpoint (or to the proxy the environment names for it) decides. Without
    it, an unreachable Hub costs every request five retries with back-off (half a minute) before the error;
    offline, what is in the local cache loads and anything else fails at once with its one-line error.
    Checked once per process; with `HF_HUB_OFFLINE` already set nothing is probed.
    """
    import datasets
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    target = urllib.parse.urlsplit(
        proxy if proxy and not urllib.request.proxy_bypass(endpoint.hostname) else constants.ENDPOINT
    )
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((target.hostname, port), timeout=PROBE_SECONDS).close()
    except OSError as error:
        log.warning(
            "the Hugging Face Hub (%s) is unreachable (%s): working offline, from the local cache only",
            constants.ENDPOINT,
            error,
        )
        os.environ["HF_HUB_OFFLINE"] = "1"  # processes started from this one
        constants.HF_HUB_OFFLINE = True  # read at each request by huggingface_hub and transformers
        datasets.config.HF_HUB_OFFLINE = True  # datasets keeps its own copy


def saved_model_problem(path: Path, name_or_path: str) -> str | None:
    """Why `from_pretrained` cannot load a local directory, or None: it needs a readable config and weights."""
    if not path.is_dir():
        return f"{name_or_path!r} does not exist; give a directory saved with save_pretrained"
    markers = [
        path / marker for marker in ("config.json", "adapter_config.json") if (path / marker).is_file()
    ]
    if not markers:
        return (
            f"{name_or_path!r} is not a saved model (no config.json or adapter_config.json in it); "
            "point at the directory save_pretrained wrote"
        )
    try:
        json.loads(markers[0].read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"{str(markers[0])!r} is not valid JSON ({_first_line(error)}); save the model again"
    # `from_pretrained` reads these weight files (safetensors first); training_args.bin is no weight file.
    weights = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "adapter_model.bin")
    if not any(any(path.glob(pattern)) for pattern in weights):
        return (
            f"{name_or_path!r} holds no weights (no *.safetensors or *.bin model file); "
            "point at the directory save_pretrained wrote, not at a copy of its config"
        )
    return None


def resolve_checkpoint(path: str, key: str = "--checkpoint") -> str:
    """A saved model or adapter directory given by `--checkpoint`; a run directory means its `model/` folder; a Hub
    id (`ORG/NAME`, e.g. from `hw push`) means its snapshot in the Hub cache, downloaded unless HF_HUB_OFFLINE=1."""
    candidate = Path(path).expanduser()
    if (
        not candidate.is_dir() and not is_local(path) and path.count("/") == 1
    ):  # ORG/NAME, as `hw push` names it
        from huggingface_hub import snapshot_download

        try:
            candidate = Path(snapshot_download(path))
        except (
            Exception
        ) as error:  # offline and not cached, missing, gated: all end the same way for the user
            raise _unreachable("checkpoint", path, key, error) from None
    if not candidate.is_dir():
        raise HwError(
            f"{key} {path!r} does not exist; give a saved model, adapter or run directory, or a Hub id ORG/NAME"
        )
    if (candidate / "model").is_dir():
        candidate = candidate / "model"
    return resolve_model(str(candidate), key=key)


def checkpoint_base(path: str, model_key: str = "model") -> tuple[dict[str, str], str] | None:
    """The base an adapter checkpoint was trained on, and the file that says so.

    Its run's `config.yaml` (`model_key`'s name and revision, for a run directory), else the adapter's
    `adapter_config.json` (`base_model_name_or_path`); None for a full model, or anything unreadable (the
    checkpoint is checked when it is resolved).
    """
    import yaml

    folder = Path(path).expanduser()
    adapter = folder / "model" if (folder / "model").is_dir() else folder
    if not (adapter / "adapter_config.json").is_file():
        return None
    try:
        if (folder / "config.yaml").is_file():
            source = folder / "config.yaml"
            model = yaml.safe_load(source.read_text(encoding="utf-8"))
            for part in model_key.split("."):
                model = model[part]
            base = {key: model[key] for key in ("name_or_path", "revision") if key in model}
        else:
            source = adapter / "adapter_config.json"
            base = {"name_or_path": json.loads(source.read_text(encoding="utf-8"))["base_model_name_or_path"]}
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None
    if not all(isinstance(value, str) and value for value in base.values()) or "name_or_path" not in base:
        return None
    return base, str(source)


def load_dataset_dict(
    dataset: str,
    config_name: str | None = None,
    revision: str = "main",
    key: str = "data.dataset",
    data_dir: str | None = None,
):
    """Load every split of a dataset from the Hub, a `save_to_disk` folder, or a folder of csv/json/parquet files.

    Args:
        data_dir: subfolder whose files are read, on the Hub and in a local copy alike (the locale of
            Common Voice's parquet export, which has no configurations of its own).
    """
    import datasets

    name = tiny.resolve(dataset)
    path = Path(name).expanduser()
    if is_local(name):
        problem = dataset_folder_problem(path, dataset)
        if problem:
            raise HwError(f"{key}: {problem}")
        if (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path))
        folder = path / data_dir if data_dir else path
        if not folder.is_dir():
            raise HwError(
                f"data.data_dir: {data_dir!r} is not a folder of {dataset!r}; set it to the subfolder that "
                "holds the split files (e.g. the locale, fr), or to null"
            )
        _require_examples(folder, dataset, key)
        try:
            return datasets.load_dataset(str(path), data_dir=data_dir)
        except Exception as error:
            raise HwError(f"{key}: could not read the files in {dataset!r} ({_first_line(error)})") from None
    offline_unless_reachable()
    try:
        return datasets.load_dataset(name, config_name, revision=revision, data_dir=data_dir)
    except Exception as error:
        raise _unreachable("dataset", name, key, error, revision, data_dir) from None


# Data files `datasets` reads from a folder, and how many leading lines hold no example (a CSV header).
_DATA_FILES = {".csv": 1, ".tsv": 1, ".json": 0, ".jsonl": 0}


def _require_examples(folder: Path, dataset: str, key: str) -> None:
    """Fail on an empty data file in a folder, which `datasets` reports only as a generation error."""
    for file in sorted(folder.rglob("*")):
        skip = _DATA_FILES.get(file.suffix.lower())
        # 4 KiB is far beyond a header line: a larger file holds examples, and is not read here
        if skip is None or not file.is_file() or file.stat().st_size > 4096:
            continue
        lines = [
            line for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
        if len(lines) <= skip or lines[skip:] in (["[]"], ["{}"]):
            raise HwError(
                f"{key}: {str(file)!r} in dataset {dataset!r} holds no examples; give every split file at least one"
            )


def load_splits(data: Any, columns: list[str], need_train: bool) -> dict[str, Any]:
    """The `train` (when training) and `eval` splits of `data.dataset`, checked for `columns`, then cut.

    Args:
        data: a homework's data config: dataset, config_name, revision, train_split, eval_split,
            max_train_samples, max_eval_samples, shuffle_seed.
    """
    dataset_dict = load_dataset_dict(data.dataset, data.config_name, data.revision)
    wanted = {"train": (data.train_split, data.max_train_samples)} if need_train else {}
    wanted["eval"] = (data.eval_split, data.max_eval_samples)
    splits = {}
    for name, (split_name, limit) in wanted.items():
        split = require_split(dataset_dict, split_name, data.dataset, f"data.{name}_split")
        drop_damaged_caches(split)
        require_columns(split, columns, data.dataset)
        splits[name] = subset(split, limit, data.shuffle_seed)
    return splits


def subset(split: Any, limit: int | None, seed: int) -> Any:
    """`limit` rows drawn as the course draws them (`shuffle(seed).select(range(limit))`); None: every row."""
    return split if limit is None or limit >= len(split) else split.shuffle(seed=seed).select(range(limit))


def require_split(dataset_dict: Any, split: str, dataset: str, key: str) -> Any:
    """The named split, or a clear error listing the ones that exist."""
    if split not in dataset_dict:
        raise HwError(
            f"{key}: split {split!r} is not in dataset {dataset!r} (it has: {', '.join(dataset_dict)}); "
            f"set {key} to one of those"
        )
    if not len(dataset_dict[split]):
        raise HwError(
            f"{key}: split {split!r} of dataset {dataset!r} holds no examples; give it at least one"
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


def is_local(name: str) -> bool:
    """Whether a model or dataset name means a local path rather than a Hub id (the rule every loader follows)."""
    # A Hub id is `name` or `owner/name`; anything else with a separator or a leading dot is meant as a path.
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    return looks_like_path or Path(name).expanduser().exists()


def dataset_folder_problem(path: Path, dataset: str) -> str | None:
    """Why a local dataset cannot be read, or None: every reader takes a folder."""
    if path.is_file():
        return f"{dataset!r} is a file; give the folder that holds train/test files"
    return None if path.is_dir() else f"{dataset!r} does not exist; give a dataset folder or a Hub id"


def _unreachable(
    kind: str, name: str, key: str, error: Exception, revision: str = "main", data_dir: str | None = None
) -> HwError:
    reason = _first_line(error)
    if type(error).__name__ == "LocalEntryNotFoundError":  # its own text ends in generic advice, cut mid-word
        reason = "not in the local cache, and the Hub is unreachable or HF_HUB_OFFLINE=1"
    if kind == "checkpoint":  # `runs/x` may be a mistyped folder as well as a Hub id
        how = HOW_TO_DOWNLOAD["checkpoint"].format(name=name, key=key)
        return HwError(
            f"{key} {name!r} is no folder here, nor loadable from the Hugging Face Hub ({reason}); use {how}"
        )
    if kind == "model":
        how = HOW_TO_DOWNLOAD["model"].format(name=name, key=key)
    else:
        how = dataset_download(name, key, revision, data_dir)
    return HwError(f"{kind} {name!r} could not be loaded from the Hugging Face Hub ({reason}); use {how}")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text[0][:160]}" + ("…" if len(text[0]) > 160 else "")


def drop_damaged_caches(split: Any) -> None:
    """`drop_damaged_cache` of every file `datasets` cached beside `split` (shuffled indices, tokenized
    features…): any of them, cut short, stopped the run at the operation that read it back."""
    import datasets

    if split.cache_files and datasets.is_caching_enabled():  # else nothing is cached (an in-memory split)
        for cache_file in sorted(Path(split.cache_files[0]["filename"]).parent.glob("cache-*.arrow")):
            drop_damaged_cache(cache_file)


def drop_damaged_cache(cache_file: Path, rows: int | None = None) -> None:
    """Delete a `datasets` cache file that cannot be read back whole (cut by a kill, a full disk, a partial copy)
    or lacks `rows` rows, with one warning naming it: the `map` about to read it computes it again instead of
    failing with `OSError: Expected to be able to read …` or `ArrowInvalid`. A flipped bit in the values goes
    unseen. From the main process only: the others read what it rebuilt (`runs.main_process_first`)."""
    import datasets

    if not runs.is_main_process() or not cache_file.exists():
        return
    try:
        found = len(datasets.Dataset.from_file(str(cache_file)))
        why = None if rows is None or found == rows else f"{found} rows, not {rows}"
    except Exception as error:  # pyarrow's OSError or ArrowInvalid, whichever part was cut
        why = f"{type(error).__name__}: {str(error)[:120]}"
    if why:
        log.warning("rebuilding the damaged cache %s (%s)", cache_file, why)
        cache_file.unlink()
