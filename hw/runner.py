"""Run one homework from its loaded config: the run directory, its manifest, the process set-up, the task, and
the files and report fragment written from the task's `RunRecord` by the main process.

Heavy libraries (torch, transformers) are imported inside the functions: importing this module costs nothing.
"""

import contextlib
import dataclasses
import importlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hw import config, manifest, report, runs
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
    with manifest.tracked(run_dir), runs.removed_on_user_error(run_dir, created):
        runs.prepare(run_dir)
        report.check_writable(reports_dir)  # the fragment is written after training: fail before it
        manifest.start(run_dir, cfg.run, settings)  # first: whatever happens next, the run knows what it is
        runs.write_yaml(run_dir / "config.yaml", settings)
        runs.write_json(run_dir / "env.json", runs.environment(cfg.train.seed, runs.sources_of(settings)))
        _prepare_process(settings, tiny=cfg.run.tiny, seed=cfg.train.seed)
        started = time.perf_counter()
        with (
            logging_to(run_dir / "run.log"),
            interrupts.interruptible(run_dir, resumable=not cfg.run.eval_only),
        ):
            record: RunRecord = task.run(cfg, run_dir)
        if not runs.is_main_process():  # the main process writes the artifacts and the report
            return run_dir
        record = dataclasses.replace(record, wall_seconds=round(time.perf_counter() - started, 1))
        record.write(run_dir)
        fragment = report.write_fragment(run_dir, reports_dir)
    print(f"run: {run_dir}\nreport fragment: {fragment}")
    return run_dir


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
    """Build every `tiny:` model and dataset a config names, in lists too (atc's `data.eval_sets`); each only
    once: later calls find it built."""
    from hw import tiny
    from hw.tiny import assets

    values = settings.values() if isinstance(settings, dict) else settings
    for value in values:
        if isinstance(value, dict | list):
            build_tiny_assets(value)
        elif isinstance(value, str) and value.startswith(tiny.PREFIX):
            assets.materialize(value)


@contextlib.contextmanager
def logging_to(log_file: Path) -> Iterator[None]:
    """Log `hw` and the libraries to the console and (from the main process) to the run's own log file."""
    import datasets
    import transformers

    datasets.logging.set_verbosity_warning()
    transformers.logging.set_verbosity_warning()
    # Through our handlers, so its warnings land in run.log too and never hold a stale stderr.
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    files = [logging.FileHandler(log_file, encoding="utf-8")] if runs.is_main_process() else []
    handlers = [logging.StreamHandler(sys.stderr), *files]
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
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
