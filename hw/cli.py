"""The `hw` command line: one command per homework plus `report` and `smoke`; this file is the registry.

Heavy libraries (torch, transformers) are imported inside the commands so `hw --help` answers at once.
"""

import contextlib
import importlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from hw.errors import HwError

# homework → (one-line description, example, config class in hw/tasks/<homework>.py); also the report order.
HOMEWORKS = {
    "yelp": (
        "Fine-tune bert-base-cased on Yelp reviews (5 stars); --variant imdb-lora for distilbert + LoRA on IMDB.",
        "hw yelp --tiny   |   hw yelp --variant yelp-full",
        "YelpConfig",
    ),
    "whisper": (
        "LoRA fine-tune openai/whisper-large-v2 (8-bit on CUDA) on Common Voice; score WER and CER (--lang zh|fr).",
        "hw whisper --lang zh --tiny   |   hw whisper --lang fr   |   hw whisper --lang zh --set data.dataset=DIR",
        "WhisperConfig",
    ),
}

# homework → (flag, help, default) when its variants are not called `--variant`.
VARIANT_OPTIONS = {"whisper": ("--lang", "Language of the speech: zh (Common Voice zh-CN) or fr.", "zh")}

app = typer.Typer(
    help="One command per homework of the fine-tuning course: train, evaluate, and write a report to hand in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML file merged over the packaged config.")
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override one config key: --set train.learning_rate=3e-5.")
]
TinyOption = Annotated[
    bool, typer.Option("--tiny", help="Offline tiny model and synthetic data (seconds, CPU).")
]
EvalOnlyOption = Annotated[
    bool, typer.Option("--eval-only", help="Skip training; score --checkpoint or the base.")
]
CheckpointOption = Annotated[
    str | None, typer.Option("--checkpoint", help="Saved model, adapter or run directory.")
]
OutputDirOption = Annotated[
    Path | None, typer.Option("--output-dir", help="Run directory [default: runs/...].")
]
ReportsDirOption = Annotated[
    Path, typer.Option("--reports-dir", help="Where report fragments and summary go.")
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue the newest run from its last checkpoint.")
]
TrainSamplesOption = Annotated[str | None, typer.Option("--max-train-samples", help="Number, or 'all'.")]
EvalSamplesOption = Annotated[str | None, typer.Option("--max-eval-samples", help="Number, or 'all'.")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed of model init and data order.")]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn an `HwError` into one line on stderr and exit code 2; anything else is a bug and keeps its traceback."""
    try:
        yield
    except HwError as error:
        typer.echo(f"hw: error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None


def _register(homework: str) -> None:
    """Add `hw <homework>` with the options every homework shares."""
    summary, example, _ = HOMEWORKS[homework]
    flag, flag_help, default = VARIANT_OPTIONS.get(
        homework, ("--variant", "Packaged config to start from.", None)
    )

    def command(
        variant: Annotated[str | None, typer.Option(flag, help=flag_help)] = default,
        config: ConfigOption = None,
        set: SetOption = None,
        tiny: TinyOption = False,
        eval_only: EvalOnlyOption = False,
        checkpoint: CheckpointOption = None,
        output_dir: OutputDirOption = None,
        reports_dir: ReportsDirOption = Path("reports"),
        resume: ResumeOption = False,
        max_train_samples: TrainSamplesOption = None,
        max_eval_samples: EvalSamplesOption = None,
        seed: SeedOption = None,
    ) -> None:
        with _user_errors():
            if homework in VARIANT_OPTIONS:
                _require_variant(homework, flag, variant)
            overrides = list(set or []) + _flag_overrides(max_train_samples, max_eval_samples, seed)
            run_options = {"tiny": tiny, "eval_only": eval_only, "checkpoint": checkpoint, "resume": resume}
            run_homework(
                homework, variant, config, overrides, run_options, output_dir, Path("runs"), reports_dir
            )

    app.command(name=homework, help=summary, epilog=f"Example: {example}")(command)


def _require_variant(homework: str, flag: str, variant: str | None) -> None:
    """A named variant option (`--lang`) gets an error in its own words: `--lang 'de' is not supported`."""
    from hw import config

    if variant not in config.variants(homework):
        choices = ", ".join(sorted(config.variants(homework)))
        raise HwError(f"{flag} {variant!r} is not supported by hw {homework}; choose one of: {choices}")


def _flag_overrides(
    max_train_samples: str | None, max_eval_samples: str | None, seed: int | None
) -> list[str]:
    overrides = [] if seed is None else [f"train.seed={seed}"]
    for key, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is None:
            continue
        if value != "all" and not value.isdigit():
            raise HwError(f"--{key.replace('_', '-')} must be a whole number or 'all', got {value!r}")
        overrides.append(f"data.{key}={'null' if value == 'all' else value}")
    return overrides


def run_homework(
    homework: str,
    variant: str | None,
    config_file: Path | None,
    overrides: list[str],
    run_options: dict,
    output_dir: Path | None,
    runs_root: Path,
    reports_dir: Path,
) -> Path:
    """Load the config, run the task in its own run directory, and write its report fragment."""
    from hw import config, report, runs

    task = importlib.import_module(f"hw.tasks.{homework}")
    schema = getattr(task, HOMEWORKS[homework][2])
    cfg = config.load(
        schema, homework, variant, config_file=config_file, overrides=overrides, run=run_options
    )
    if cfg.run.checkpoint is not None and not cfg.run.eval_only:
        raise HwError(
            "--checkpoint is only read with --eval-only; to keep training a saved model, "
            "use --set model.name_or_path=DIR"
        )
    run_dir = runs.run_directory(
        homework,
        cfg.run.variant,
        output_dir=output_dir,
        runs_root=runs_root,
        resume=cfg.run.resume,
        tiny=cfg.run.tiny,
    )
    runs.prepare(run_dir)
    settings = config.to_dict(cfg)
    runs.write_yaml(run_dir / "config.yaml", settings)
    runs.write_json(run_dir / "env.json", runs.environment(cfg.train.seed, runs.sources_of(settings)))
    started = time.perf_counter()
    with _logging_to(run_dir / "run.log"):
        task.run(cfg, run_dir)
    metrics = runs.read_json(run_dir / "metrics.json")
    runs.write_json(
        run_dir / "metrics.json", {**metrics, "wall_seconds": round(time.perf_counter() - started, 1)}
    )
    fragment = report.write_fragment(run_dir, reports_dir)
    typer.echo(f"run: {run_dir}\nreport fragment: {fragment}")
    return run_dir


@contextlib.contextmanager
def _logging_to(log_file: Path) -> Iterator[None]:
    """Log `hw` and the libraries to the console and to the run's own log file."""
    import datasets
    import transformers

    datasets.logging.set_verbosity_warning()
    transformers.logging.set_verbosity_warning()
    # Through our handlers, so its warnings land in run.log too and never hold a stale stderr.
    transformers.logging.disable_default_handler()
    transformers.logging.enable_propagation()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(log_file, encoding="utf-8")]
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


for _homework in HOMEWORKS:
    _register(_homework)


@app.command(epilog="Example: hw report --reports-dir reports")
def report(reports_dir: ReportsDirOption = Path("reports")) -> None:
    """Assemble every report fragment into reports/summary.md (the weekly summary)."""
    from hw import report as report_module

    with _user_errors():
        typer.echo(f"summary: {report_module.assemble(reports_dir)}")


@app.command(epilog="Example: hw smoke --workdir smoke")
def smoke(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the tiny runs and reports go.")] = Path(
        "smoke"
    ),
    only: Annotated[
        list[str] | None, typer.Option("--homework", help="Only this homework (repeatable).")
    ] = None,
) -> None:
    """Run every homework on the offline tiny preset, then assemble their summary (a few minutes on a CPU)."""
    from hw import config
    from hw import report as report_module

    with _user_errors():
        unknown = sorted(set(only or []) - set(HOMEWORKS))
        if unknown:
            raise HwError(f"--homework {unknown[0]!r} is not a homework; choose from: {', '.join(HOMEWORKS)}")
        for homework in only or HOMEWORKS:
            for variant in config.variants(homework):
                run_homework(
                    homework, variant, None, [], {"tiny": True}, None, workdir / "runs", workdir / "reports"
                )
        typer.echo(f"summary: {report_module.assemble(workdir / 'reports')}")


@app.command(
    name="whisper-dataset",
    epilog="Example: hw whisper-dataset talk.mp4 lecture.m4a --out data/mine --opencc s2twp",
)
def whisper_dataset(
    media: Annotated[list[Path], typer.Argument(help="Video or audio files (mp4, mkv, m4a, wav, mp3…).")],
    out: Annotated[
        Path, typer.Option("--out", help="Audiofolder to create or extend (train/, test/, log.jsonl).")
    ],
    model: Annotated[
        str, typer.Option("--model", help="Whisper that writes the labels.")
    ] = "ADT109119/whisper-small-zh-TW",
    lang: Annotated[str, typer.Option("--lang", help="Whisper language code of the speech.")] = "zh",
    segment_seconds: Annotated[float, typer.Option("--segment-seconds", help="Clip length.")] = 10.0,
    overlap_seconds: Annotated[
        float, typer.Option("--overlap-seconds", help="Overlap of consecutive clips.")
    ] = 2.0,
    test_ratio: Annotated[
        float, typer.Option("--test-ratio", help="Share of each medium's clips in test/.")
    ] = 0.33,
    seed: SeedOption = 42,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per generate call.")] = 16,
    opencc: Annotated[
        str | None, typer.Option("--opencc", help="OpenCC conversion of the labels, e.g. s2twp.")
    ] = None,
) -> None:
    """Cut your own recordings into overlapping 16 kHz clips, pseudo-label them with Whisper, write an audiofolder."""
    with _user_errors():
        from hw.tasks import whisper_dataset as builder

        options = builder.DatasetOptions(
            model=model,
            language=lang,
            segment_seconds=segment_seconds,
            overlap_seconds=overlap_seconds,
            test_ratio=test_ratio,
            seed=seed,
            batch_size=batch_size,
            opencc=opencc,
        )
        out.mkdir(parents=True, exist_ok=True)
        with _logging_to(out / "run.log"):
            counts = builder.build(media, out, options)
        typer.echo(
            f"{out}: {counts['processed']} media labelled ({counts['segments']} clips: {counts['train']} train, "
            f"{counts['test']} test), {counts['already_done']} already done, {counts['failed']} failed; "
            f"see {out / builder.LOG_NAME}"
        )


score_app = typer.Typer(help="Score existing predictions without a model.", no_args_is_help=True)
app.add_typer(score_app, name="score")


@score_app.command(name="asr", epilog="Example: hw score asr runs/whisper/zh-*/samples.jsonl --normalize zh")
def score_asr(
    file: Annotated[Path, typer.Argument(help="CSV (with a header row) or JSONL of transcripts.")],
    hyp_col: Annotated[str, typer.Option("--hyp-col", help="Column of the hypotheses.")] = "hypothesis",
    ref_col: Annotated[str, typer.Option("--ref-col", help="Column of the references.")] = "reference",
    normalize: Annotated[str, typer.Option("--normalize", help="none, basic or zh.")] = "basic",
    zh_convert: Annotated[
        str, typer.Option("--zh-convert", help="OpenCC conversion for zh: t2s, s2twp…")
    ] = "t2s",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """WER and CER (with substitutions, deletions, insertions) of a file of hypotheses and references."""
    import json

    from hw.metrics import asr

    with _user_errors():
        result = asr.score_file(file, hyp_col, ref_col, normalize, zh_convert)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(
        f"{result['utterances']} utterances, normalizer {normalize}: WER {result['wer']:.4f} "
        f"(S {result['substitutions']}, D {result['deletions']}, I {result['insertions']} of "
        f"{result['reference_words']} words), CER {result['cer']:.4f}, "
        f"sentence error rate {result['sentence_error_rate']:.4f}, mean utterance WER {result['mean_utterance_wer']:.4f}"
    )


def main() -> None:
    """Console-script entry point."""
    app()
