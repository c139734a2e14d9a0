"""Options of the homework commands: those every homework shares, and each one's own with its `--set` overrides."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hw.errors import HwError

# homework → (flag, help, default) when its variants are not called `--variant`.
VARIANT_OPTIONS = {
    "whisper": (
        "--lang",
        "Language of the speech (zh: Common Voice zh-CN, fr), or --variant zh-tw-full.",
        "zh",
    )
}

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
OutputDirOption = Annotated[  # no [ ] in a help: rich reads `[default: …]` as markup and prints nothing
    Path | None, typer.Option("--output-dir", help="Run directory (default: runs/<homework>/<run>).")
]
ReportsDirOption = Annotated[
    Path, typer.Option("--reports-dir", help="Where report fragments and summary go.")
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue the newest run from its last checkpoint.")
]
TrainSamplesOption = Annotated[
    str | None, typer.Option("--max-train-samples", help="Number, or 'all' (also lifts the validation cap).")
]
EvalSamplesOption = Annotated[str | None, typer.Option("--max-eval-samples", help="Number, or 'all'.")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed of model init and data order.")]
LabelOption = Annotated[str | None, typer.Option("--label", help="What sets this run apart in the summary.")]


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
