"""`hw push`: upload a finished run's model (or its merged export) with its card, and its audiofolder, to the Hub.

The token comes from the environment (`HF_TOKEN`) only and goes to `HfApi` alone: it is never written, logged or
shown. The run is only read; a merged model is staged in a temporary folder.
"""

import os
import re
import tempfile
from pathlib import Path

from hw import card, export, sources, speech_sources
from hw.errors import HwError

# huggingface_hub's own truth values of HF_HUB_OFFLINE (`constants._is_true`), read when a push starts.
_TRUE = {"1", "ON", "YES", "TRUE"}
# Local records of `hw whisper-dataset`: file paths of the user's own media, and its log; never shared.
_PRIVATE_DATA_FILES = ("log.jsonl", "run.log")


def push(run_dir: Path, repo_id: str, *, private: bool, merged: bool, with_data: bool) -> list[str]:
    """Create (or reuse) the model repository `repo_id` and upload the run's model and card in one commit;
    with `with_data`, its `hw whisper-dataset` audiofolder to the dataset repository of the same id.

    Returns:
        The URLs of the repositories written.

    Raises:
        HwError: offline, no token, a bad repository id, a run without a model, data that is no local
            audiofolder, or the Hub refusing (its first line, the token masked).
    """
    from huggingface_hub import HfApi

    token = _token()
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise HwError(
            f"--repo-id {repo_id!r} is not ORG/NAME (e.g. alice/whisper-small-zh); give your namespace"
        )
    run, folder = export.saved_model(run_dir)
    data = _audiofolder(run) if with_data else None
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hw-push-") as staging:
        if merged:
            folder = Path(staging) / "model"
            export.export(run_dir, folder)
        text = card.render(run_dir, adapter=not merged and (folder / "adapter_config.json").is_file())
        try:
            urls = [str(api.create_repo(repo_id, private=private, exist_ok=True))]
            _commit(
                api, repo_id, "model", folder, {card.FILE: text.encode()}, f"hw push of run {run_dir.name}"
            )
            if data is not None:
                urls.append(
                    str(api.create_repo(repo_id, private=private, exist_ok=True, repo_type="dataset"))
                )
                _commit(
                    api, repo_id, "dataset", data, {}, f"hw push of the audiofolder of run {run_dir.name}"
                )
        except HwError:
            raise
        except Exception as error:  # HTTP, permissions, quota: one line, never the token
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0].replace(token, "***")
            raise HwError(
                f"hw push to {repo_id!r} failed ({type(error).__name__}: {reason[:200]}); check HF_TOKEN has write "
                "access to that namespace, then run hw push again (it is safe to repeat)"
            ) from None
    return urls


def _token() -> str:
    """HF_TOKEN from the environment; refused offline or without one."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        raise HwError(
            "hw push needs the Hugging Face Hub, but HF_HUB_OFFLINE is set; unset it where the Hub is reachable"
        )
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise HwError(
            "hw push needs a Hugging Face token with write access in the environment variable HF_TOKEN "
            "(create one at https://huggingface.co/settings/tokens); hw reads it from nowhere else"
        )
    return token


def _audiofolder(run: dict) -> Path:
    """The run's `data.dataset` when it is a local audiofolder (as `hw whisper-dataset` writes)."""
    dataset = run["training"].get("data", {}).get("dataset", "")
    path = Path(dataset).expanduser()
    if not (sources.is_local(dataset) and path.is_dir() and speech_sources.metadata_files(path)):
        raise HwError(
            f"--with-data: the run's data.dataset {dataset!r} is not a local audiofolder (metadata.csv with "
            "clips, as hw whisper-dataset writes); push only the model, or train on your audiofolder"
        )
    return path


def _commit(api, repo_id: str, repo_type: str, folder: Path, extra: dict[str, bytes], message: str) -> None:
    """One commit of every file under `folder` (but `hw`'s private records) plus the `extra` files' bytes."""
    from huggingface_hub import CommitOperationAdd

    files = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in (*_PRIVATE_DATA_FILES, *extra)
    ]
    operations = [CommitOperationAdd(path.relative_to(folder).as_posix(), str(path)) for path in files]
    operations += [CommitOperationAdd(name, content) for name, content in extra.items()]
    api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type)
