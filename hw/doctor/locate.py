"""Where a model or dataset would load from without downloading anything, and how many parameters a model holds.

Local names follow the runs' own rules (`hw.sources`); sizes come from the local copy of a model (safetensors
headers), else from the Hub's metadata when it is reachable, else from `KNOWN_MODELS`.
"""

import json
import math
from pathlib import Path
from typing import Literal

from hw import sources, tiny, weight_checks
from hw.errors import HwError

Status = Literal["ok", "warn", "fail"]
Size = tuple[int, float, str]  # parameters, stored bytes per parameter, where the count came from
TINY_DATA = "tiny synthetic data, built offline"

# Parameters and bytes per parameter as stored on the Hub, of the course's default models, for when neither a
# local copy nor the Hub can say. Exact counts are the arithmetic of each model's config.json (embeddings +
# layers × per-layer weights): bert-base-cased 22,665,216 + 12 × 7,087,872 + pooler 590,592; whisper-large-v2
# encoder 636,784,640 + decoder 906,520,320; Llama-2-7B 2 × 32,000 × 4,096 + 32 × 202,383,360 + 4,096. The two
# Traditional-Chinese 7B models are Llama-2-7B (TAIDE) and Mistral-7B (Breeze) layers with vocabularies extended
# to about 56k and 62k tokens (their model cards), so their counts are rounded.
KNOWN_MODELS: dict[str, tuple[int, int]] = {
    "bert-base-cased": (108_310_272, 4),
    "distilbert-base-uncased": (66_362_880, 4),  # + the course's classifier head and LoRA = 67,584,004
    "openai/whisper-small": (241_734_912, 4),
    "openai/whisper-large-v2": (1_543_304_960, 4),
    "NousResearch/Llama-2-7b-chat-hf": (6_738_415_616, 2),
    "taide/TAIDE-LX-7B-Chat": (6_940_000_000, 2),
    "MediaTek-Research/Breeze-7B-Instruct-v0_1": (7_490_000_000, 2),
}

# The architecture keys of the same models' config.json files (what `hw.doctor.memory` reads), for when neither a
# local copy nor the Hub cache holds one, from each model's config.json (the two Traditional-Chinese vocabularies
# as noted above, about 56k and 62k).
_WHISPER = {
    "is_encoder_decoder": True,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "vocab_size": 51865,
}
_LLAMA = {"hidden_size": 4096, "num_hidden_layers": 32, "architectures": ["LlamaForCausalLM"]}
KNOWN_CONFIGS: dict[str, dict] = {
    "bert-base-cased": {"hidden_size": 768, "num_hidden_layers": 12, "max_position_embeddings": 512},
    "distilbert-base-uncased": {"dim": 768, "n_layers": 6, "max_position_embeddings": 512},
    "openai/whisper-small": {"d_model": 768, "encoder_layers": 12, "decoder_layers": 12, **_WHISPER},
    "openai/whisper-large-v2": {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 32, **_WHISPER},
    "NousResearch/Llama-2-7b-chat-hf": {**_LLAMA, "max_position_embeddings": 4096, "vocab_size": 32000},
    "taide/TAIDE-LX-7B-Chat": {**_LLAMA, "max_position_embeddings": 4096, "vocab_size": 56064},
    "MediaTek-Research/Breeze-7B-Instruct-v0_1": {
        **_LLAMA,
        "architectures": ["MistralForCausalLM"],
        "max_position_embeddings": 32768,
        "vocab_size": 61952,
    },
}

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1}  # safetensors dtype names


def safetensors_size(path: Path) -> tuple[int, int]:
    """Parameters and bytes of tensor data in one `.safetensors` file, read from its JSON header alone."""
    tensors, _ = weight_checks.safetensors_header(path)
    parameters = sum(math.prod(tensor["shape"]) for tensor in tensors.values())
    return parameters, sum(
        end - start for start, end in (tensor["data_offsets"] for tensor in tensors.values())
    )


def _size_of_files(files: list[Path], where: str) -> Size | None:
    sizes = [safetensors_size(path) for path in files if path.suffix == ".safetensors"]
    parameters = sum(count for count, _ in sizes)
    if not parameters:
        return None
    return parameters, sum(data for _, data in sizes) / parameters, f"safetensors header in {where}"


def locate_model(name: str, revision: str, key: str) -> tuple[Status, str, Size | None]:
    """Whether a model loads without a download: `tiny:NAME`, a local directory, the Hub cache, else the Hub (which
    a failure there says how to download from, for `key`)."""
    if name.startswith(tiny.PREFIX):
        return "ok", "tiny asset, built offline on first use", None
    if sources.is_local(name):
        path = Path(name).expanduser()
        problem = sources.saved_model_problem(path, name)
        if not problem:  # what the run refuses before loading: a weight file that is not whole
            try:
                weight_checks.require_whole(path, repr(name))
            except HwError as error:
                problem = str(error)
        if problem:
            return "fail", problem, None
        return "ok", f"local directory {path}", _size_of_files(sorted(path.glob("*.safetensors")), "it")
    cached = _cached_weights(name, revision)
    if cached:
        problem = weight_checks.cache_problem(cached[0].parent, name, revision)
        if problem:
            return "fail", problem, None
        return "ok", f"in the Hugging Face cache ({cached[0].parent})", _size_of_files(cached, "the cache")
    status, where, size = _on_the_hub("model", name, revision)
    if status == "fail":
        where += "; use " + sources.HOW_TO_DOWNLOAD["model"].format(name=name, key=key)
    return status, where, size


def locate_checkpoint(name: str, key: str) -> tuple[Status, str]:
    """Whether a `--checkpoint` (or `corrector.checkpoint`) loads without a download: a local model, adapter or run
    folder; else a Hub id's snapshot in the Hub cache (`snapshot_download`, as the run resolves it); else the Hub."""
    from huggingface_hub import snapshot_download

    if sources.is_local(name):
        try:
            return "ok", f"local directory {sources.resolve_checkpoint(name, key)}"
        except HwError as error:
            return "fail", str(error)
    try:
        return "ok", f"in the Hugging Face cache ({snapshot_download(name, local_files_only=True)})"
    except Exception:  # not cached (or no valid id): the Hub says whether the run could download it
        return _on_the_hub("model", name, "main")[:2]


def model_config(name: str, revision: str) -> dict | None:
    """A model's config.json without loading it: a local directory's, the Hub cache's, else `KNOWN_CONFIGS`'."""
    if name.startswith(tiny.PREFIX):
        return None
    if sources.is_local(name):
        found: Path | str | None = Path(name).expanduser() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(name, "config.json", revision=revision)
        except ValueError:  # HFValidationError: no valid Hub id, so nothing of it can be cached
            found = None
    if isinstance(found, (str, Path)) and Path(found).is_file():
        return json.loads(Path(found).read_text())
    return KNOWN_CONFIGS.get(name)


def _cached_weights(name: str, revision: str) -> list[Path] | None:
    """The cached weight files of a Hub model, or None when any is missing (a config alone does not load)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        try:
            found = try_to_load_from_cache(name, filename, revision=revision)
        except ValueError:  # HFValidationError: no valid Hub id, so nothing of it can be cached
            return None
        return Path(found) if isinstance(found, str) else None

    for single in ("model.safetensors", "pytorch_model.bin"):
        if cached(single):
            return [cached(single)]
    index = cached("model.safetensors.index.json")
    if index is None:
        return None
    shards = [cached(shard) for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return None if None in shards else shards


def _on_the_hub(kind: str, name: str, revision: str) -> tuple[Status, str, Size | None]:
    """Not cached: offline that is the end; online, one metadata request says whether a download will work."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return "fail", f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1", None
    api = HfApi()
    lookup = api.model_info if kind == "model" else api.dataset_info
    try:
        info = lookup(name, revision=revision, timeout=10)
    except Exception as error:  # unreachable, missing, gated or private: none of them downloads
        return "fail", f"not cached, and the Hub did not answer for it ({type(error).__name__})", None
    weights = getattr(info, "safetensors", None)
    size = None
    if weights and weights.total:
        stored = sum(count * _DTYPE_BYTES.get(dtype, 4) for dtype, count in weights.parameters.items())
        size = (weights.total, stored / weights.total, "the Hub's safetensors metadata")
    gated = (
        " (gated: accept its licence on the Hub and set HF_TOKEN)" if getattr(info, "gated", False) else ""
    )
    return "warn", f"not cached: the run downloads it from the Hub{gated}", size


def locate_dataset(name: str, revision: str) -> tuple[Status, str]:
    """Whether a dataset loads without a download: `tiny:NAME`, a local folder, the datasets or Hub cache."""
    if name.startswith(tiny.PREFIX):
        return "ok", TINY_DATA
    if sources.is_local(name):
        path = Path(name).expanduser()
        problem = sources.dataset_folder_problem(path, name)
        return ("fail", problem) if problem else ("ok", f"local path {path}")
    import datasets
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    prepared = Path(datasets.config.HF_DATASETS_CACHE) / name.replace("/", "___")
    snapshots = (
        Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=name, repo_type="dataset") / "snapshots"
    )
    for cached in (prepared, snapshots):
        if cached.is_dir() and any(cached.iterdir()):
            return "ok", f"cached ({cached})"
    status, where, _ = _on_the_hub("dataset", name, revision)
    return status, where
