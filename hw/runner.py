"""Run one homework from its loaded config: the run directory, its manifest, the process set-up, the task, and
the files and report fragment written from the task's `RunRecord` by the main process.

Heavy libraries (torch, transformers) are imported inside the functions: importing this module costs nothing.
"""

import contextlib
import dataclasses
import importlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hw import card, config, disk, manifest, provenance, report, runs
from hw.errors import HwError
from hw.record import RunRecord

log = logging.getLogger(__name__)


def run_homework(
    cfg: Any,
    *,
    output_dir: Path | None = None,
    runs_root: Path = Path("runs"),
    reports_dir: Path = Path("reports"),
) -> Path:
    """Run the task of `cfg` in its own run directory, write what it found and its report fragment.

    Args:
        cfg: A homework's config from `config.load`; `cfg.run` names the homework and how it runs.
        output_dir: The run directory; default `runs_root/<homework>/<variant>[-tiny]-<timestamp>`.
        runs_root: Where runs go when no `output_dir` is given.
        reports_dir: Where the report fragment and its figure go.

    Returns:
        The run directory.
    """
    from hw import interrupts  # imports transformers
    from hw.trackers import check_trackers

    check_trackers(cfg)  # before the run directory, the data and the weights
    task = importlib.import_module(f"hw.tasks.{cfg.run.homework}")
    settings = config.to_dict(cfg)
    run_dir, created = manifest.run_directory(cfg.run, settings, output_dir=output_dir, runs_root=runs_root)
    # Status `finished` once the fragment is written, `failed` if anything raises.
    continue_with = interrupts.continue_command(run_dir, resume=not cfg.run.eval_only)
    with (
        manifest.tracked(run_dir),
        runs.removed_on_user_error(run_dir, created, continue_with),
        disk.full_as_error(run_dir),
    ):
        runs.prepare(run_dir)
        report.check_writable(reports_dir)  # the fragment is written after training: fail before it
        manifest.start(run_dir, cfg.run, settings)  # first: whatever happens next, the run knows what it is
        # A signal from here on ends in one line with the command that continues this run.
        with interrupts.interruptible(run_dir, resumable=not cfg.run.eval_only):
            runs.write_yaml(run_dir / "config.yaml", settings)
            environment = provenance.environment(cfg.train.seed, provenance.sources_of(settings))
            runs.write_json(
                run_dir / "env.json", environment | {"precision": _precision(cfg.train.precision)}
            )
            with logging_to(run_dir / "run.log"):  # from the tiny assets' build on: it may take a minute
                _prepare_process(settings, tiny=cfg.run.tiny, seed=cfg.train.seed)
                started = time.perf_counter()
                record: RunRecord = task.run(cfg, run_dir)
            if runs.is_main_process():  # the main process writes the artifacts and the report
                record = dataclasses.replace(record, wall_seconds=round(time.perf_counter() - started, 1))
                record.write(run_dir)
                if (run_dir / "model").is_dir():  # the model this run saved (an eval-only run saves none)
                    card.write(run_dir)
                fragment = report.write_fragment(run_dir, reports_dir)
    runs.leave_process_group()  # the others wait for the main process's last write (status `finished`)
    if runs.is_main_process():
        print(f"run: {run_dir}\nreport fragment: {fragment}")
    return run_dir


def _precision(asked: str) -> str:
    """What `train.precision` resolves to on this machine (`auto`: bf16 or fp16 on CUDA, fp32 on a CPU)."""
    from hw.training import precision_flags

    flags = precision_flags(asked)
    return "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"


def _prepare_process(settings: dict[str, Any], *, tiny: bool, seed: int) -> None:
    """Before the task: the tiny assets it names, built by one process; threads for tiny models; the seed."""
    import torch
    from transformers import set_seed

    # Built by one process: in the others, save_pretrained writes no weights, and the builders' Trainer waits.
    with runs.main_process_first(), runs.alone():
        build_tiny_assets(settings)
    if tiny:  # tiny models gain nothing from more threads, and lose several-fold on a busy machine
        torch.set_num_threads(1)
    # torch seeds itself at random at start-up: new heads and LoRA weights would differ from run to run.
    set_seed(seed)


def build_tiny_assets(settings: Any) -> None:
    """Build every `tiny:` model and dataset a config names; each only once: later calls find it built."""
    from hw.tiny import assets

    for name in tiny_assets(settings):
        assets.materialize(name)


def tiny_assets(settings: Any) -> list[str]:
    """Every `tiny:NAME` in settings (a config's dict, or a list of them), in lists too (atc's `data.eval_sets`)."""
    from hw import tiny

    values = settings.values() if isinstance(settings, dict) else settings
    names = []
    for value in values:
        if isinstance(value, dict | list):
            names += tiny_assets(value)
        elif isinstance(value, str) and value.startswith(tiny.PREFIX):
            names.append(value)
    return names


@contextlib.contextmanager
def logging_to(log_file: Path) -> Iterator[None]:
    """Log `hw` and the libraries to the console and (from the main process) to the run's own log file.

    Every record goes through these two handlers alone, once, as lines without terminal escapes.
    """
    import datasets
    import transformers
    from huggingface_hub.utils import logging as hub_logging

    datasets.logging.set_verbosity_warning()
    transformers.logging.set_verbosity_warning()
    # Through our handlers, so its warnings land in run.log too and never hold a stale stderr.
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    # huggingface_hub prints through a handler of its own and propagates too: every line would show twice.
    hub_root = hub_logging.get_logger()
    hub_handlers = list(hub_root.handlers)
    for handler in hub_handlers:
        hub_root.removeHandler(handler)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    replaced = None
    if runs.is_main_process() and log_file.is_symlink():  # appending would write wherever it points
        replaced = os.readlink(log_file)
        log_file.unlink()
    files = [_LogFile(log_file, encoding="utf-8")] if runs.is_main_process() else []
    handlers = [logging.StreamHandler(sys.stderr), *files]
    for handler in handlers:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        handler.addFilter(_load_report_in_one_line)
        root.addHandler(handler)
    if replaced is not None:
        log.warning(
            "%s was a symbolic link (to %s): replaced by a file of its own, the target untouched",
            log_file,
            replaced,
        )
    try:
        yield
    except HwError:
        raise  # the user reads its one line
    except Exception:
        # Into run.log too, the file users are asked to send; the console shows the traceback once, as Python
        # prints it on the way out.
        crash = log.makeRecord(log.name, logging.ERROR, __file__, 0, "unexpected error:", (), sys.exc_info())
        for handler in files:
            handler.handle(crash)
        raise
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        for handler in hub_handlers:
            hub_root.addHandler(handler)


class _LogFile(logging.FileHandler):
    """A log file opened without following a symbolic link: a link put there after the check fails to open."""

    def _open(self) -> Any:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        return open(os.open(self.baseFilename, flags, 0o666), "a", encoding=self.encoding)


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _PlainFormatter(logging.Formatter):
    """A formatter that drops terminal escapes (transformers colours its tables): run.log is read as text."""

    def format(self, record: logging.LogRecord) -> str:
        return _ESCAPES.sub("", super().format(record))


def _load_report_in_one_line(record: logging.LogRecord) -> bool:
    """Turn transformers' LOAD REPORT table (a dozen lines per model) into one line: which weights and why.

    Its rows read `key | STATUS | details`; the line keeps the statuses with their keys, e.g. `MISSING
    (newly initialised): classifier.bias, classifier.weight`, and drops the notes every report repeats.
    """
    message = record.getMessage()
    if "LOAD REPORT" not in message:
        return True
    lines = _ESCAPES.sub("", message).splitlines()
    keys_by_status: dict[str, list[str]] = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) >= 2 and cells[1].isupper() and cells[0] != "Key":
            keys_by_status.setdefault(cells[1], []).append(cells[0])
    meaning = {
        "MISSING": "newly initialised",
        "UNEXPECTED": "unused",
        "MISMATCH": "reinitialised, shape differs",
    }
    summary = "; ".join(
        f"{status}{f' ({meaning[status]})' if status in meaning else ''}: {', '.join(sorted(keys))}"
        for status, keys in keys_by_status.items()
    )
    model, _, source = lines[0].partition(" LOAD REPORT from: ")
    record.msg, record.args = f"{model} loaded from {source.strip()}: {summary or 'no key listed'}", ()
    return True
