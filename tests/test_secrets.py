"""Secrets and safety: a Hub token never reaches a file or the console, remote code stays off unless a config
turns it on (and the report says so), weights are saved as safetensors, and nothing unpickles with `torch.load`."""

import ast
import re
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from typer.testing import CliRunner

import hw
from hw import config, report, summary
from hw.cli import HOMEWORKS, app
from hw.errors import ConfigError
from tests.test_report import _fake_run

FAKE_TOKEN = "hf_FAKEsecret0123456789abcdef"
runner = CliRunner()


@pytest.fixture(scope="module")
def token_runs(tmp_path_factory: pytest.TempPathFactory, offline_session: Path) -> tuple[Path, str]:
    """Tiny yelp and tang runs and `hw report` with a Hub token in the environment: their folder and console."""
    home = tmp_path_factory.mktemp("token-home")
    commands = [
        ["yelp", "--tiny", "--max-train-samples", "64", "--max-eval-samples", "32"],
        ["tang", "--tiny", "--max-train-samples", "32", "--max-eval-samples", "4", "--max-new-tokens", "8"],
        ["report"],
        ["yelp", "--tiny", "--set", f"model.hub_token={FAKE_TOKEN}"],  # refused: configs hold no tokens
    ]
    console = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        patch.setenv("HF_TOKEN", FAKE_TOKEN)
        patch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
        assert huggingface_hub.get_token() == FAKE_TOKEN  # the token was there to leak
        for command in commands:
            result = runner.invoke(app, command)
            assert result.exit_code == (2 if "--set" in command else 0), result.output
            console.append(result.stdout + result.stderr)
    return home, "\n".join(console)


def test_a_hub_token_in_the_environment_reaches_no_file_and_no_console(token_runs: tuple[Path, str]) -> None:
    home, console = token_runs
    written = [path for path in home.rglob("*") if path.is_file()]
    names = {path.name for path in written}
    # every kind of artifact was written and is scanned, binary ones (weights, pickles, figures) included
    for name in ("config.yaml", "env.json", "run.log", "metrics.json", "samples.jsonl", "trainer_state.json"):
        assert name in names
    assert {
        "summary.md",
        "model.safetensors",
        "adapter_model.safetensors",
        "training_args.bin",
        "optimizer.pt",
    } <= names
    kinds = {
        (path.parent.name, path.suffix) for path in written
    }  # fragments/<homework>/<run>.md, figures alike
    assert {("yelp", ".md"), ("tang", ".md"), ("yelp", ".png")} <= kinds
    leaking = [str(path) for path in written if FAKE_TOKEN.encode() in path.read_bytes()]
    assert leaking == []
    assert (
        "model.hub_token: unknown key; a Hub token is read only from the HF_TOKEN environment variable"
        in console
    )
    assert FAKE_TOKEN not in console
    assert len(list((home / "runs").glob("*/*"))) == 2, "the refused command left a run directory"


def test_no_config_key_may_hold_a_token() -> None:
    for key in ("model.hub_token", "token", "train.hub_token", "data.token"):
        with pytest.raises(ConfigError, match=re.escape(f"{key}: unknown key; a Hub token is read only")):
            _load("yelp", "yelp", [f"{key}={FAKE_TOKEN}"])


def _load(homework: str, variant: str, overrides: list[str]):
    import importlib

    task = importlib.import_module(f"hw.tasks.{homework}")
    return config.load(getattr(task, HOMEWORKS[homework][2]), homework, variant, overrides=overrides)


@pytest.mark.parametrize(
    ("homework", "variant"),
    [(homework, variant) for homework in HOMEWORKS for variant in config.variants(homework)],
)
def test_every_packaged_config_keeps_remote_code_off(homework: str, variant: str) -> None:
    assert _load(homework, variant, []).model.trust_remote_code is False


def test_the_report_says_when_remote_code_was_allowed(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, "run", "yelp", tiny=False, accuracy=0.5)
    settings = yaml.safe_load((run_dir / "config.yaml").read_text())
    fragment = report.write_fragment(run_dir, tmp_path / "reports").read_text()
    assert "trust_remote_code was ON" not in fragment
    settings["model"]["trust_remote_code"] = True
    (run_dir / "config.yaml").write_text(yaml.safe_dump(settings))
    fragment = report.write_fragment(run_dir, tmp_path / "reports").read_text()
    assert (
        "- **trust_remote_code was ON: Python code shipped with the model's repository was allowed to run.**"
        in fragment
    )
    assert "trust_remote_code was ON" in summary.assemble(tmp_path / "reports").path.read_text()


def test_whisper_refuses_remote_code_it_would_never_run() -> None:
    with pytest.raises(
        ConfigError, match=r"model\.trust_remote_code: hw whisper loads transformers' own Whisper"
    ):
        _load("whisper", "zh", ["model.trust_remote_code=true"])


def test_saved_weights_are_safetensors_only(token_runs: tuple[Path, str]) -> None:
    home, _ = token_runs
    model_dirs = sorted(home.glob("runs/*/*/model")) + sorted(home.glob("runs/*/*/checkpoints/checkpoint-*"))
    assert len(model_dirs) >= 4
    for directory in model_dirs:
        assert list(directory.glob("*.safetensors")), directory
        # Trainer pickles its TrainingArguments beside the weights; nothing in hw or from_pretrained reads it
        assert {path.name for path in directory.glob("*.bin")} <= {"training_args.bin"}, directory


def unsafe_calls(source: str) -> list[str]:
    """`torch.load` calls without a literal `weights_only=True`, and literal `trust_remote_code=True`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        name = ast.unparse(node.func)
        if name in ("torch.load", "load") or name.endswith(".torch.load"):
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        remote = keywords.get("trust_remote_code")
        if isinstance(remote, ast.Constant) and remote.value is True:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_detector_finds_unsafe_calls() -> None:
    source = (
        "import torch\nfrom torch import load\n"
        "torch.load('a.pt')\ntorch.load('b.pt', weights_only=False)\nload('c.pt')\n"
        "torch.load('d.pt', weights_only=True)\nAutoModel.from_pretrained('x', trust_remote_code=True)\n"
    )
    assert unsafe_calls(source) == [
        "line 3: torch.load('a.pt')",
        "line 4: torch.load('b.pt', weights_only=False)",
        "line 5: load('c.pt')",
        "line 7: AutoModel.from_pretrained('x', trust_remote_code=True)",
    ]


def test_the_package_never_unpickles_nor_hardcodes_remote_code() -> None:
    package = Path(hw.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) > 20
    found = {str(path.relative_to(package)): unsafe_calls(path.read_text(encoding="utf-8")) for path in files}
    assert {path: calls for path, calls in found.items() if calls} == {}
