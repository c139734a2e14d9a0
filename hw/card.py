"""The model card (`README.md` in the Hub's format) of a run's saved model, written from the run's own files.

Metadata and body come from `run.json` (homework, variant, command, training settings) and `metrics.json` (the
`RunRecord`): every number in a card traces to a file, as in the report. Imports no torch.
"""

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hw import config, manifest, sources, tiny
from hw.record import RunRecord
from hw.report_format import number, table

FILE = "README.md"
# The Hub's pipeline tag and language of each homework's model (whisper's language is its `language` setting).
PIPELINES = {
    "yelp": "text-classification",
    "qa": "question-answering",
    "whisper": "automatic-speech-recognition",
    "atc": "automatic-speech-recognition",
    "tang": "text-generation",
}
LANGUAGES = {"yelp": "en", "qa": "en", "atc": "en", "tang": "zh"}
TINY_WARNING = "**TINY — not a real result.**"
# Settings a reader needs to reproduce the training, in this order; the full set is in the run's config.yaml.
_HYPERPARAMETERS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_steps",
    "lr_scheduler_type",
    "weight_decay",
    "precision",
    "seed",
)


def write(run_dir: Path, folder: Path | None = None, *, merged: bool = False) -> Path:
    """Write the card of the model in `folder` (default the run's `model/`) trained by the run in `run_dir`.

    Args:
        merged: the folder holds the run's adapter merged into its base (`hw export`), a plain transformers model.

    Returns:
        The card's path.
    """
    folder = folder or run_dir / "model"
    path = folder / FILE
    path.write_text(render(run_dir, adapter=not merged and (folder / "adapter_config.json").is_file()))
    return path


def render(run_dir: Path, *, adapter: bool) -> str:
    """The card's text: YAML metadata (checked by `huggingface_hub.ModelCard`) and a Markdown body."""
    run, record = manifest.read(run_dir), RunRecord.read(run_dir)
    training = run["training"]
    homework, base, dataset = run["homework"], training["model"]["name_or_path"], record.dataset
    pipeline = PIPELINES[homework]
    tags = ["hw", homework, run["variant"], *(["lora", "peft"] if adapter else []), *(["tiny"] * run["tiny"])]
    tags = list(dict.fromkeys(tags))  # `hw tang`'s default variant is `tang`
    data = ModelCardData(
        base_model=_hub_id(base),
        library_name="peft" if adapter else "transformers",
        pipeline_tag=pipeline,
        tags=tags,
        datasets=_hub_id(dataset),
        language=training.get("language") or LANGUAGES[homework],
        model_name=run_dir.name,
        eval_results=[
            EvalResult(
                task_type=pipeline,
                dataset_type=_shown(dataset),
                dataset_name=_shown(dataset),
                dataset_split=training["data"].get("eval_split"),
                metric_type=key.rsplit("/", 1)[-1].removeprefix("eval_").removeprefix("validation_"),
                metric_name=key,
                metric_value=value,
            )
            for key, value in record.final.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ],
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(run, record, run_dir, adapter)}")
    return str(card)


def _body(run: dict[str, Any], record: RunRecord, run_dir: Path, adapter: bool) -> str:
    training, homework = run["training"], run["homework"]
    purpose = (config.config_dir(homework) / f"{run['variant']}.yaml").read_text().splitlines()[0]
    base = _shown(training["model"]["name_or_path"])
    kind = f"A LoRA adapter (PEFT) on `{base}`" if adapter else f"A model fine-tuned from `{base}`"
    lines = [f"# {run_dir.name}", ""]
    if run["tiny"]:
        lines += [
            f"> {TINY_WARNING} Trained by `hw`'s offline tiny preset: a tiny random model on synthetic data, "
            "to test the pipeline. Its numbers say nothing about the homework.",
            "",
        ]
    lines += [
        f"{kind}, trained by `hw` for the homework `hw {homework}` "
        f"(variant `{run['variant']}`): {purpose.lstrip('# ')}",
        "",
        "Command that produced it:",
        "",
        f"```\n{run.get('command') or '(not recorded: a run from before hw kept its command line)'}\n```",
        "",
        "## Data",
        "",
        f"Dataset `{_shown(record.dataset)}`: "
        + ", ".join(f"{count:,} {split}" for split, count in record.data.items())
        + ".",
        "",
        "## Hyperparameters",
        "",
        table(["Setting", "Value"], _settings(training)),
        "",
        "## Results",
        "",
        f"Scored weights: {record.weights}.",
        "",
        table(["Metric", "Value"], [[key, number(value, key)] for key, value in record.final.items()]),
    ]
    if record.epochs:
        columns = list(record.epochs[0])
        rows = [[number(row.get(column), column) for column in columns] for row in record.epochs]
        lines += ["", "Every evaluation during training:", "", table(columns, rows)]
    return "\n".join(lines) + "\n"


def _settings(training: dict[str, Any]) -> list[list[str]]:
    """Rows of the training settings a reader needs (train, LoRA, quantization); None settings left out."""
    train = training.get("train", {})
    rows = [[f"train.{key}", str(train[key])] for key in _HYPERPARAMETERS if train.get(key) is not None]
    for key, value in (training.get("lora") or {}).items():
        rows.append([f"lora.{key}", ", ".join(map(str, value)) if isinstance(value, list) else str(value)])
    if training.get("quantization"):
        rows.append(["quantization", str(training["quantization"])])
    return rows


def _hub_id(name: str) -> str | None:
    """`name` when it is a Hub id (the card's metadata may only name those), else None."""
    return None if name.startswith(tiny.PREFIX) or sources.is_local(name) else name


def _shown(name: str) -> str:
    """A name as a card shows it: a Hub id or `tiny:` name whole, a local folder by its own name only."""
    return name if _hub_id(name) or name.startswith(tiny.PREFIX) else Path(name).name
