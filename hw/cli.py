"""The `hw` command line and its registry; heavy libraries load inside commands, so `hw --help` is instant."""

import importlib
import inspect
import json
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from hw.cli_options import (
    EXTRA_OPTIONS,
    VARIANT_OPTIONS,
    CheckpointOption,
    ConfigOption,
    EvalOnlyOption,
    EvalSamplesOption,
    LabelOption,
    OutputDirOption,
    ReportsDirOption,
    ResumeOption,
    SeedOption,
    SetOption,
    TinyOption,
    TrainSamplesOption,
)
from hw.cli_predict import predict_app
from hw.cli_score import score_app
from hw.cli_share import share_app
from hw.errors import HwError, user_errors

# homework → (description, example, config class in hw/tasks/<homework>.py), in the summary's order too.
HOMEWORKS = {
    "yelp": (
        "Fine-tune bert-base-cased on Yelp reviews (5 stars); --variant imdb-lora for distilbert + LoRA on IMDB.",
        "hw yelp --tiny   |   hw yelp --variant yelp-full",
        "YelpConfig",
    ),
    "qa": (
        "Fine-tune distilbert-base-uncased for extractive QA on SQuAD v1.1 and score EM/F1; --squad-v2 for SQuAD 2.0.",
        "hw qa --tiny   |   hw qa   |   hw qa --variant qa-continue --set model.name_or_path=runs/qa/<run>/model",
        "QAConfig",
    ),
    "whisper": (
        "LoRA fine-tune openai/whisper-large-v2 (8-bit on CUDA) on Common Voice; score WER and CER (--lang zh|fr).",
        "hw whisper --lang zh --tiny   |   hw whisper --lang fr   |   hw whisper --lang zh --set data.dataset=DIR",
        "WhisperConfig",
    ),
    "atc": (
        "Fine-tune whisper-small on ATCOSIM, correct its transcripts with Llama-2 (base, RAG, QLoRA), score the matrix.",
        "hw atc --tiny   |   hw atc   |   hw atc --resume --from-stage correct",
        "AtcConfig",
    ),
    "tang": (
        "QLoRA-tune TAIDE-LX-7B-Chat (--variant tang-breeze: Breeze-7B) to continue Tang poems; score them offline.",
        "hw tang --data DIR   |   hw tang --tiny   |   hw tang --eval-only --checkpoint RUN --sweep temperature=0.1,0.7,1.2",
        "TangConfig",
    ),
}

app = typer.Typer(
    help="One command per homework of the fine-tuning course: train, evaluate, and write a report to hand in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register(homework: str) -> None:
    """Add `hw <homework>` with the options every homework shares, plus its own from EXTRA_OPTIONS."""
    summary, example, _ = HOMEWORKS[homework]
    extra = EXTRA_OPTIONS.get(homework, {})
    flag, flag_help, default = VARIANT_OPTIONS.get(
        homework, ("--variant", "Packaged config to start from.", None)
    )

    def command(
        variant: Annotated[
            str | None, typer.Option(*dict.fromkeys((flag, "--variant")), help=flag_help)
        ] = default,
        config: ConfigOption = None,
        set_overrides: SetOption = None,
        tiny: TinyOption = False,
        eval_only: EvalOnlyOption = False,
        checkpoint: CheckpointOption = None,
        output_dir: OutputDirOption = None,
        reports_dir: ReportsDirOption = Path("reports"),
        resume: ResumeOption = False,
        max_train_samples: TrainSamplesOption = None,
        max_eval_samples: EvalSamplesOption = None,
        seed: SeedOption = None,
        label: LabelOption = None,
        **extra_values: Any,
    ) -> None:
        from hw import runner

        with user_errors():
            if homework in VARIANT_OPTIONS:
                _require_variant(homework, flag, variant)
            flags = _flag_overrides(max_train_samples, max_eval_samples, seed, _schema(homework))
            overrides = list(set_overrides or []) + flags
            for name, value in extra_values.items():
                overrides += [] if value is None else extra[name][1](value)
            run_options = {"tiny": tiny, "eval_only": eval_only, "checkpoint": checkpoint, "resume": resume}
            cfg = _load_config(homework, variant, config, overrides, run_options | {"label": label})
            runner.run_homework(cfg, output_dir=output_dir, reports_dir=reports_dir)

    # Typer reads options from the signature: put the homework's own where `**extra_values` stands.
    signature = inspect.signature(command)
    shared = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    own = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, (annotation, _) in extra.items()
    ]
    command.__signature__ = signature.replace(parameters=shared + own)
    app.command(name=homework, help=summary, epilog=f"Example: {example}")(command)


def _require_variant(homework: str, flag: str, variant: str | None) -> None:
    """A named variant option (`--lang`) gets an error in its own words: `--lang 'de' is not supported`."""
    from hw import config

    if variant not in config.variants(homework):
        choices = ", ".join(sorted(config.variants(homework)))
        raise HwError(f"{flag} {variant!r} is not supported by hw {homework}; choose one of: {choices}")


def _flag_overrides(
    max_train_samples: str | None, max_eval_samples: str | None, seed: int | None, schema: type
) -> list[str]:
    overrides = [] if seed is None else [f"train.seed={seed}"]
    if max_train_samples == "all" and "max_validation_samples" in get_type_hints(
        get_type_hints(schema)["data"]
    ):
        # a full-data run tracks its validation loss on the whole validation split, as the course's did
        overrides.append("data.max_validation_samples=null")
    for key, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is None:
            continue
        if value != "all" and not value.isdigit():
            raise HwError(f"--{key.replace('_', '-')} must be a whole number or 'all', got {value!r}")
        overrides.append(f"data.{key}={'null' if value == 'all' else value}")
    return overrides


def _load_config(
    homework: str, variant: str | None, config_file: Path | None, overrides: list[str], run: dict[str, Any]
) -> Any:
    """The homework's frozen config: its packaged variant, `--config`, `--set` and the run options."""
    from hw import config

    schema = _schema(homework)
    return config.load(schema, homework, variant, config_file=config_file, overrides=overrides, run=run)


def _schema(homework: str) -> type:
    """The homework's top-level config class."""
    return getattr(importlib.import_module(f"hw.tasks.{homework}"), HOMEWORKS[homework][2])


for _homework in HOMEWORKS:
    _register(_homework)


@app.command(
    epilog="Example: hw report   |   hw report --runs latest --locale zh   |   hw report --only RUN RUN"
)
def report(
    reports_dir: ReportsDirOption = Path("reports"),
    runs_shown: Annotated[
        str, typer.Option("--runs", help="Runs per variant: all, or only the latest training run.")
    ] = "all",
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Show only this run (repeatable; its directory name).")
    ] = None,
    locale: Annotated[str, typer.Option("--locale", help="Language of titles and labels: en or zh.")] = "en",
) -> None:
    """Assemble every report fragment into reports/summary.md (the weekly summary)."""
    with user_errors():
        _assemble(reports_dir, runs_shown=runs_shown, only=only or [], locale=locale)


def _assemble(reports_dir: Path, **choices: Any) -> None:
    """Assemble the summary; one warning line per file left out, and their count beside the summary's path."""
    from hw import summary as summary_module

    summary = summary_module.assemble(reports_dir, list(HOMEWORKS), **choices)
    for skipped in summary.skipped:
        typer.echo(f"hw: warning: skipped {skipped}", err=True)
    count = len(summary.skipped)
    left_out = f" ({count} file{'s' if count > 1 else ''} of fragments/ skipped, see above)" if count else ""
    typer.echo(f"summary: {summary.path}{left_out}")


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
    from hw import config, runner
    from hw.tiny import assets

    with user_errors():
        unknown = sorted(set(only or []) - set(HOMEWORKS))
        if unknown:
            raise HwError(f"--homework {unknown[0]!r} is not a homework; choose from: {', '.join(HOMEWORKS)}")
        homeworks = [
            (homework, variant) for homework in only or HOMEWORKS for variant in config.variants(homework)
        ]
        configs = [
            _load_config(homework, variant, None, [], {"tiny": True}) for homework, variant in homeworks
        ]
        names = runner.tiny_assets([config.to_dict(cfg) for cfg in configs])
        with assets.building_ahead(names):  # its log: the tiny cache's built-ahead.log
            for cfg in configs:
                runner.run_homework(cfg, runs_root=workdir / "runs", reports_dir=workdir / "reports")
        _assemble(workdir / "reports")


@app.command(
    epilog="Example: hw doctor   |   hw doctor tang --set data.directory=DIR   |   hw doctor yelp --json"
)
def doctor(
    homework: Annotated[
        str | None, typer.Argument(help="Homework to check; without one, only the machine is reported.")
    ] = None,
    variant: Annotated[
        str | None, typer.Option("--variant", "--lang", help="Packaged config (whisper: the language).")
    ] = None,
    config: ConfigOption = None,
    set_overrides: SetOption = None,
    tiny: TinyOption = False,
    eval_only: EvalOnlyOption = False,
    checkpoint: CheckpointOption = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Where runs will be written (its disk is checked).")
    ] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Preflight before a long run: GPU, precision, bitsandbytes, memory, disk, models, data; exit 1 if it cannot work."""
    from hw import doctor as preflight

    with user_errors():
        cfg = None
        if homework is not None:
            if homework not in HOMEWORKS:
                raise HwError(f"unknown homework {homework!r}; choose one of: {', '.join(HOMEWORKS)}")
            variant = variant or VARIANT_OPTIONS.get(homework, (None, None, None))[2]
            run_options = {"tiny": tiny, "eval_only": eval_only, "checkpoint": checkpoint}
            cfg = _load_config(homework, variant, config, set_overrides or [], run_options)
        diagnosis = preflight.diagnose(cfg, output_dir)
    typer.echo(
        json.dumps(preflight.to_json(diagnosis), ensure_ascii=False)
        if as_json
        else preflight.render(diagnosis)
    )
    raise typer.Exit(0 if diagnosis.ok else 1)


@app.command(
    name="whisper-dataset",
    epilog="Example: hw whisper-dataset talk.mp4 lecture.m4a --out data/mine --opencc s2twp",
)
def whisper_dataset(
    media: Annotated[list[str], typer.Argument(help="Video or audio files, or URLs of videos or playlists.")],
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
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/test split of each medium.")] = 42,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per generate call.")] = 16,
    opencc: Annotated[
        str | None, typer.Option("--opencc", help="OpenCC conversion of the labels, e.g. s2twp.")
    ] = None,
) -> None:
    """Cut your own recordings into overlapping 16 kHz clips, pseudo-label them with Whisper, write an audiofolder."""
    with user_errors():
        from hw import runner, runs
        from hw.tasks.whisper import dataset as builder

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
        with runs.removed_on_user_error(out, runs.topmost_missing(out)):
            out.mkdir(parents=True, exist_ok=True)
            with runner.logging_to(out / "run.log"):
                counts = builder.build(media, out, options)
        typer.echo(
            f"{out}: {counts['processed']} media labelled ({counts['segments']} clips: {counts['train']} train, "
            f"{counts['test']} test), {counts['already_done']} already done, {counts['failed']} failed, "
            f"{counts['rejected']} clips rejected by Whisper's safeguards ({builder.REJECTED}/); "
            f"see {out / builder.LOG_NAME}"
        )


app.add_typer(score_app, name="score")
app.add_typer(share_app)  # its commands at the top level: hw export, hw push
app.add_typer(predict_app)  # hw predict


def main() -> None:
    """Console-script entry point."""
    app()
