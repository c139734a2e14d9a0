"""Sharing a finished tiny run: `hw export` (a standalone merged model plain transformers loads) and `hw push`
(to a stand-in for the Hub at `HfApi`, the network boundary: nothing here reaches the Hub)."""

import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from tests.invoking import invoke, one_line_error

SENTENCES = ["It was good.", "Not a fan, don't recommed.", "This one is a pass."]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny `hw yelp --variant imdb-lora` run (a LoRA adapter in its model/ folder)."""
    root = tmp_path_factory.mktemp("share")
    invoke(["yelp", "--tiny", "--variant", "imdb-lora", "--max-train-samples", "64", "--max-eval-samples", "32",
            "--output-dir", str(root / "run"), "--reports-dir", str(root / "reports")])  # fmt: skip
    return root / "run"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _run_logits(run_dir: Path) -> list[float]:
    """The run's own adapter on its base, through `hw.models` as `hw yelp --eval-only` loads it."""
    import torch

    from hw import models
    from hw.config import ModelConfig

    training = json.loads((run_dir / "run.json").read_text())["training"]
    weights = models.resolve(ModelConfig(**training["model"]), str(run_dir / "model"))
    loaded = models.classifier(weights, training["data"]["label_names"])
    model = models.for_inference(loaded.model, "fp32")
    with torch.no_grad():
        return (
            model(**loaded.processor(SENTENCES, return_tensors="pt", padding=True)).logits.flatten().tolist()
        )


def test_export_writes_a_standalone_model_that_plain_transformers_loads(
    lora_run: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    before = _snapshot(lora_run)
    out = tmp_path / "exported"
    assert f"exported: {out}" in invoke(["export", str(lora_run), "--out", str(out)])
    assert _snapshot(lora_run) == before  # the run is only read
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert not list(tmp_path.glob(".*partial"))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer(SENTENCES, return_tensors="pt", padding=True)).logits
    assert logits.flatten().tolist() == pytest.approx(_run_logits(lora_run), abs=1e-5)  # the adapter, merged
    labels = [result["label"] for result in pipeline("text-classification", model=str(out))(SENTENCES)]
    assert labels == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert set(labels) <= {"Negative", "Positive"}
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "TINY — not a real result" in card.text


def test_export_of_a_k_bit_trained_adapter_says_it_merges_into_the_full_precision_base(
    lora_run: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from hw.cli import app

    copy = tmp_path / "run"
    shutil.copytree(lora_run, copy)
    manifest = json.loads((copy / "run.json").read_text())
    manifest["training"]["quantization"] = "4bit"
    (copy / "run.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["export", str(copy), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (
        "hw: the adapter was trained on a 4bit base; it is merged into the base reloaded in full precision"
        in (result.stderr)
    )


def test_export_refuses_a_used_out_folder_or_one_inside_the_run(lora_run: Path, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    assert one_line_error(["export", str(lora_run), "--out", str(tmp_path / "used")]) == (
        f"--out {str(tmp_path / 'used')!r} exists and is not an empty folder; give a new folder"
    )
    assert "lies inside the run" in one_line_error(
        ["export", str(lora_run), "--out", str(lora_run / "merged")]
    )
    assert not (lora_run / "merged").exists()
    assert "is not a run directory (no run.json)" in one_line_error(["export", str(tmp_path), "--out", "x"])


TOKEN = "hf_TestSecretToken12345"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The Hub's HTTP API replaced at `HfApi` (the network boundary, unreachable here): every repository creation
    and commit `hw push` asks for is recorded, with the bytes of each file as uploaded."""
    from huggingface_hub import HfApi

    calls: list[dict] = []

    def create_repo(self, repo_id, **options):
        calls.append({"call": "create_repo", "repo_id": repo_id, "token": self.token, **options})
        kind = "datasets/" if options.get("repo_type") == "dataset" else ""
        return f"https://huggingface.co/{kind}{repo_id}"

    def create_commit(self, repo_id, operations, **options):
        files = {}
        for operation in operations:
            with operation.as_file() as handle:
                files[operation.path_in_repo] = handle.read()
        calls.append({"call": "create_commit", "repo_id": repo_id, "files": files, **options})

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return calls


def _token_nowhere(*roots: Path, output: str) -> None:
    """The token appears in no file under `roots` and not in the command's output."""
    assert TOKEN not in output
    for root in roots:
        for path in root.rglob("*"):
            assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def test_push_uploads_the_adapter_and_its_card_in_one_commit(
    lora_run: Path, hub: list[dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from typer.testing import CliRunner

    from hw.cli import app

    before = _snapshot(lora_run)
    result = CliRunner().invoke(app, ["push", str(lora_run), "--repo-id", "alice/imdb-lora", "--private"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "pushed: https://huggingface.co/alice/imdb-lora\n"
    repo, commit = hub
    assert repo == {"call": "create_repo", "repo_id": "alice/imdb-lora", "token": TOKEN, "private": True,
                    "exist_ok": True}  # fmt: skip
    assert commit["repo_type"] == "model" and commit["commit_message"] == f"hw push of run {lora_run.name}"
    files = commit["files"]
    assert (
        files["adapter_model.safetensors"] == (lora_run / "model" / "adapter_model.safetensors").read_bytes()
    )
    assert {"adapter_config.json", "tokenizer.json", "README.md"} <= set(files)
    pushed_card = ModelCard(files["README.md"].decode())
    assert pushed_card.data.library_name == "peft" and "TINY — not a real result" in pushed_card.text
    assert _snapshot(lora_run) == before  # the run is only read
    _token_nowhere(lora_run, tmp_path, Path(os.environ["HF_HOME"]), output=result.output + caplog.text)


def test_push_merged_uploads_a_standalone_model_staged_outside_the_run(
    lora_run: Path, hub: list[dict]
) -> None:
    before = _snapshot(lora_run)
    invoke(["push", str(lora_run), "--repo-id", "alice/imdb-merged", "--merged"])
    files = hub[1]["files"]
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert ModelCard(files["README.md"].decode()).data.library_name == "transformers"
    assert hub[0]["private"] is False and _snapshot(lora_run) == before


def test_push_with_data_uploads_the_audiofolder_but_not_the_local_records(
    lora_run: Path, hub: list[dict], tmp_path: Path
) -> None:
    data = tmp_path / "mine"
    (data / "train").mkdir(parents=True)
    (data / "train" / "metadata.csv").write_text("file_name,transcription\nclip.wav,你好\n")
    (data / "train" / "clip.wav").write_bytes(b"RIFF")
    (data / "log.jsonl").write_text('{"media": "/home/alice/talk.mp4"}\n')
    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    manifest = json.loads((run / "run.json").read_text())
    manifest["training"]["data"]["dataset"] = str(data)
    (run / "run.json").write_text(json.dumps(manifest))
    output = invoke(["push", str(run), "--repo-id", "alice/mine", "--with-data"])
    assert "pushed: https://huggingface.co/datasets/alice/mine" in output
    dataset_commit = hub[3]
    assert hub[2]["repo_type"] == "dataset" and dataset_commit["repo_type"] == "dataset"
    assert set(dataset_commit["files"]) == {"train/metadata.csv", "train/clip.wav"}


def test_push_refuses_offline_without_token_or_with_a_bad_id_in_one_line(
    lora_run: Path, hub: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "is not a local audiofolder" in one_line_error(
        ["push", str(lora_run), "--repo-id", "alice/x", "--with-data"]
    )
    assert "is not ORG/NAME" in one_line_error(["push", str(lora_run), "--repo-id", "no-namespace"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE is set" in one_line_error(["push", str(lora_run), "--repo-id", "alice/x"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN")
    assert "environment variable HF_TOKEN" in one_line_error(["push", str(lora_run), "--repo-id", "alice/x"])
    assert hub == []  # nothing reached the Hub


def test_a_hub_refusal_is_one_line_with_the_token_masked(
    lora_run: Path, hub: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import HfApi

    def refuse(self, repo_id, **options):
        raise PermissionError(f"403 Forbidden: token {TOKEN} cannot write to {repo_id}")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    message = one_line_error(["push", str(lora_run), "--repo-id", "bob/x"])
    assert message.startswith(
        "hw push to 'bob/x' failed (PermissionError: 403 Forbidden: token *** cannot write"
    )


@pytest.fixture
def hub_cache(lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hub cache (as HF_HUB_CACHE points at, read by huggingface_hub at import) holding the run's adapter as
    `alice/imdb-lora`: `models--alice--imdb-lora/snapshots/<revision>/…` and `refs/main`, as a download leaves it."""
    from huggingface_hub import constants

    repository = tmp_path / "hub" / "models--alice--imdb-lora"
    shutil.copytree(lora_run / "model", repository / "snapshots" / "0123abcd")
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repository


def test_a_hub_id_checkpoint_resolves_through_the_hub_cache_offline(
    lora_run: Path, hub_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored"
    invoke(["yelp", "--tiny", "--variant", "imdb-lora", "--eval-only", "--checkpoint", "alice/imdb-lora",
            "--max-eval-samples", "32", "--output-dir", str(out), "--reports-dir", str(tmp_path / "reports")])  # fmt: skip
    scored, trained = (json.loads((run / "metrics.json").read_text()) for run in (out, lora_run))
    assert scored["weights"] == "checkpoint alice/imdb-lora"
    assert scored["final"]["accuracy"] == trained["final"]["accuracy"]  # the same adapter on the same clips
    doctor = invoke(["doctor", "yelp", "--variant", "imdb-lora", "--tiny", "--eval-only",
                     "--checkpoint", "alice/imdb-lora"])  # fmt: skip
    assert (
        f"model alice/imdb-lora (--checkpoint): in the Hugging Face cache ({hub_cache / 'snapshots'}"
        in doctor
    )


def test_a_hub_id_checkpoint_is_checked_like_a_folder_and_an_unknown_one_fails_in_one_line(
    hub_cache: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from hw.cli import app

    args = ["yelp", "--tiny", "--variant", "imdb-lora", "--eval-only", "--output-dir", str(tmp_path / "x")]
    assert one_line_error([*args, "--checkpoint", "alice/unknown"]) == (
        "--checkpoint 'alice/unknown' is no folder here, nor loadable from the Hugging Face Hub (not in the local "
        "cache, and the "
        "Hub is unreachable or HF_HUB_OFFLINE=1); use `hf download alice/unknown --local-dir DIR` where the Hub "
        "is reachable, then give DIR to --checkpoint"
    )
    weights = next((hub_cache / "snapshots" / "0123abcd").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # a cut download
    assert "is damaged" in one_line_error([*args, "--checkpoint", "alice/imdb-lora"])
    doctor = CliRunner().invoke(
        app, ["doctor", "yelp", "--tiny", "--eval-only", "--checkpoint", "alice/unknown"]
    )
    assert doctor.exit_code == 1
    assert "model alice/unknown (--checkpoint): not in the Hugging Face cache" in doctor.output
