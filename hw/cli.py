"""The `hw` command line: one command per homework plus `report` and `smoke`; this file is the registry.

Heavy libraries (torch, transformers) are imported inside the commands so `hw --help` answers at once.
"""

import importlib
import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hw.cli_score import score_app
from hw.errors import HwError, user_errors

# homework → (one-line description, example, config class in hw/tasks/<homework>.py); in the summary's order
# too (passed to report.assemble).
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

# homework → (flag, help, default) when its variants are not called `--variant`.
VARIANT_OPTIONS = {
    "whisper": (
        "--lang",
        "Language of the speech (zh: Common Voice zh-CN, fr), or --variant zh-tw-full.",
        "zh",
    )
}

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


def _to(key: str) -> Any:
    """Turn an option's value into the `--set` override of one config key (as JSON, which YAML reads back)."""
    return lambda value: [f"{key}={json.dumps(str(value) if isinstance(value, Path) else value)}"]


def _decoding(flag: str, kind: type) -> tuple[Any, Any]:
    key = flag.removeprefix("--").replace("-", "_")
    return Annotated[kind | None, typer.Option(flag, help=f"Sets generation.{key}.")], _to(
        f"generation.{key}"
    )


def _sweep_overrides(items: list[str]) -> list[str]:
    """`--sweep temperature=0.1,0.7` → `eval.sweep.temperature=[0.1,0.7]`."""
    overrides = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise HwError(
                f"--sweep expects SETTING=V1,V2,..., got {item!r}; e.g. --sweep temperature=0.1,0.7,1.2"
            )
        overrides.append(f"eval.sweep.{key.strip().replace('-', '_')}=[{values}]")
    return overrides


# Options of one homework beyond the shared ones: parameter → (Annotated type, its `--set` overrides).
EXTRA_OPTIONS: dict[str, dict[str, tuple[Any, Any]]] = {
    "qa": {
        "squad_v2": (
            Annotated[
                bool | None,
                typer.Option(
                    "--squad-v2",
                    help="SQuAD 2.0 rules (unanswerable questions); with --set data.dataset=squad_v2.",
                ),
            ],
            _to("data.squad_v2"),
        ),
    },
    "atc": {
        "stage": (
            Annotated[
                str | None,
                typer.Option("--stage", help="Recompute this stage only (cached ones are reused)."),
            ],
            _to("stages.only"),
        ),
        "from_stage": (
            Annotated[
                str | None, typer.Option("--from-stage", help="Recompute this stage and every later one.")
            ],
            _to("stages.start"),
        ),
    },
    "tang": {
        "data": (
            Annotated[
                Path | None, typer.Option("--data", help="Folder with the course's Tang_*.json files.")
            ],
            _to("data.directory"),
        ),
        "temperature": _decoding("--temperature", float),
        "top_k": _decoding("--top-k", int),
        "top_p": _decoding("--top-p", float),
        "max_new_tokens": _decoding("--max-new-tokens", int),
        "num_beams": _decoding("--num-beams", int),
        "do_sample": (
            Annotated[bool | None, typer.Option("--do-sample/--greedy", help="Sample, or decode greedily.")],
            _to("generation.do_sample"),
        ),
        "sweep": (
            Annotated[
                list[str] | None, typer.Option("--sweep", help="Decoding grid, e.g. temperature=0.1,0.7,1.2.")
            ],
            _sweep_overrides,
        ),
    },
}


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
        **extra_values: Any,
    ) -> None:
        from hw import runner

        with user_errors():
            if homework in VARIANT_OPTIONS:
                _require_variant(homework, flag, variant)
            overrides = list(set_overrides or []) + _flag_overrides(max_train_samples, max_eval_samples, seed)
            for name, value in extra_values.items():
                overrides += [] if value is None else extra[name][1](value)
            run_options = {"tiny": tiny, "eval_only": eval_only, "checkpoint": checkpoint, "resume": resume}
            cfg = _load_config(homework, variant, config, overrides, run_options)
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


def _load_config(
    homework: str, variant: str | None, config_file: Path | None, overrides: list[str], run: dict[str, Any]
) -> Any:
    """The homework's frozen config: its packaged variant, `--config`, `--set` and the run options."""
    from hw import config

    schema = getattr(importlib.import_module(f"hw.tasks.{homework}"), HOMEWORKS[homework][2])
    return config.load(schema, homework, variant, config_file=config_file, overrides=overrides, run=run)


for _homework in HOMEWORKS:
    _register(_homework)


@app.command(epilog="Example: hw report --reports-dir reports")
def report(reports_dir: ReportsDirOption = Path("reports")) -> None:
    """Assemble every report fragment into reports/summary.md (the weekly summary)."""
    with user_errors():
        _assemble(reports_dir)


def _assemble(reports_dir: Path) -> None:
    """Assemble the summary; one warning line per file left out, and their count beside the summary's path."""
    from hw import report as report_module

    summary = report_module.assemble(reports_dir, list(HOMEWORKS))
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

    with user_errors():
        unknown = sorted(set(only or []) - set(HOMEWORKS))
        if unknown:
            raise HwError(f"--homework {unknown[0]!r} is not a homework; choose from: {', '.join(HOMEWORKS)}")
        for homework in only or HOMEWORKS:
            for variant in config.variants(homework):
                cfg = _load_config(homework, variant, None, [], {"tiny": True})
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
            f"{counts['test']} test), {counts['already_done']} already done, {counts['failed']} failed; "
            f"see {out / builder.LOG_NAME}"
        )


app.add_typer(score_app, name="score")


def main() -> None:
    """Console-script entry point."""
    app()
