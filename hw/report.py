"""Reports: a run's Markdown fragment and figure, written from its artifacts, and the fragment read back.

Every number in a report is read from a run's files. A fragment carries everything the summary shows as JSON in
a leading HTML comment, so `hw summary` renders it again (in either language) without torch or the run
directory, and ends with a closing comment, so a truncated one is known and left out. One fragment per run:
`fragments/<homework>/<run>.md`, so no run replaces another's.
"""

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from hw import figures, runs
from hw.record import RunRecord, Table
from hw.report_format import cell, number, table
from hw.report_text import label, title

_METADATA = re.compile(r"<!-- hw-fragment (\{.*?\}) -->\n", re.DOTALL)
END = "<!-- /hw-fragment -->"  # a fragment's last line: without it, the file was cut short
METADATA_KEYS = ("homework", "variant", "run", "tiny", "eval_only", "time", "reference", "rows", "final")
WRONG_SAMPLES, RIGHT_SAMPLES = 5, 2
# Sample columns a reader does not need: the scorer's normalized texts and the model's raw answer.
_HIDDEN_SAMPLE_COLUMNS = {"reference_normalized", "hypothesis_normalized", "raw_output"}
_QUANTIZED = {
    "8bit": "8-bit weights (bitsandbytes LLM.int8)",
    "4bit": "4-bit NF4 weights (double quantization)",
}


def write_fragment(run_dir: Path, reports_dir: Path) -> Path:
    """Render `reports/fragments/<homework>/<run>.md` and its figure from the run's artifacts."""
    settings = _read_yaml(run_dir / "config.yaml")
    record = RunRecord.read(run_dir)
    environment = runs.read_json(run_dir / "env.json")
    run = settings["run"]
    name = f"{run['homework']}/{run_dir.name}"
    figure = figures.plot(
        record.trainer_state,
        reports_dir / "figures" / f"{name}.png",
        homework=run["homework"],
        variant=run["variant"],
        run=run_dir.name,
        tiny=run["tiny"],
    )
    final, rows = record.final, record.epochs or [{"epoch": None, **record.final}]
    if settings.get("language") == "zh":  # normalized Chinese is scored per character: its WER is the CER
        final = {key: value for key, value in final.items() if key != "wer"}
        rows = [{key: value for key, value in row.items() if key != "wer"} for row in rows]
    metadata = {
        "homework": run["homework"],
        "variant": run["variant"],
        "run": run_dir.name,
        "tiny": run["tiny"],
        "eval_only": run["eval_only"],
        "scored": run.get("checkpoint"),
        "label": run.get("label"),
        "time": datetime.now().astimezone().isoformat(timespec="microseconds"),
        "seed": environment["seed"],
        "sizes": record.data,
        "reference": settings.get("reference", []),
        "rows": rows,
        "final": final,
        "headline": _headline(run["homework"], final),
        "details": _details(settings, record, environment),
        "notes": record.notes,
        "tables": record.tables,
        "samples": _chosen_samples(record.samples),
        "samples_file": _relative(run_dir / "samples.jsonl", reports_dir) if record.samples else None,
        "figure": _relative(figure, reports_dir) if figure else None,
        "environment": {"device": environment["device"], "packages": environment["packages"]},
    }
    heading = f"## {run['homework']} · {run['variant']} — {label('run', 'en')} `{run_dir.name}`"
    parts = [
        f"<!-- hw-fragment {json.dumps(metadata, ensure_ascii=False)} -->",
        heading,
        label("tiny_banner", "en") if run["tiny"] else "",
        variant_table([*reference_groups(metadata), (f"**{label('this_run', 'en')}**", rows)], "en"),
        render_run(metadata, "en", "../../"),
        END,
    ]
    path = reports_dir / "fragments" / f"{name}.md"
    runs.write_text(path, "\n\n".join(part for part in parts if part) + "\n")
    return path


def check_writable(reports_dir: Path) -> None:
    """Fail in one line, before a run starts, when its fragment or figure could not be written at its end."""
    for folder in ("fragments", "figures"):
        runs.require_writable(reports_dir / folder, "report folder", "--reports-dir")


class NotAFragment(Exception):
    """A file in `fragments/` that is not a whole hw fragment; the message says why."""


def read_fragment(path: Path) -> dict[str, Any]:
    """The metadata of a whole fragment; `NotAFragment` says why a file is not one."""
    try:  # -sig: a BOM, which some editors add when they save, is read as nothing
        text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise NotAFragment("not UTF-8 text: binary, or saved in another encoding") from None
    match = _METADATA.match(text)
    if not match:
        raise NotAFragment("not an hw report fragment: no hw-fragment header")
    try:
        metadata = json.loads(match.group(1))
    except json.JSONDecodeError as error:
        raise NotAFragment(f"damaged hw-fragment header: {error.msg}") from None
    missing = [key for key in METADATA_KEYS if key not in metadata] if isinstance(metadata, dict) else ["all"]
    if missing:
        raise NotAFragment(f"damaged hw-fragment header, or written by an older hw: no {', '.join(missing)}")
    if not text.rstrip().endswith(END):
        raise NotAFragment(f"incomplete: its last line is not {END} (cut short, or written by an older hw)")
    return metadata


def reference_groups(metadata: dict[str, Any]) -> list[tuple[str, list[dict]]]:
    """The published rows of a run's config, each group named by its source."""
    return [(reference["source"], reference["rows"]) for reference in metadata["reference"]]


def variant_table(groups: list[tuple[str, list[dict]]], locale: str) -> str:
    """A Markdown table with a Source column; the first row of each group names it; titles in words."""
    columns: list[str] = []
    for _, rows in groups:
        for row in rows:
            columns += [key for key in row if key not in columns and key != "step"]
    order = ["epoch", "training_loss", "validation_loss", "eval_loss"]
    columns.sort(key=lambda key: order.index(key) if key in order else len(order))
    cells = [
        [source if index == 0 else "", *(number(row.get(key), key) for key in columns)]
        for source, rows in groups
        for index, row in enumerate(rows)
    ]
    return table([label("source", locale), *(title(key, locale) for key in columns)], cells)


def render_run(metadata: dict[str, Any], locale: str, root: str) -> str:
    """What was run, the final metrics, notes, the run's own tables, samples and figure, in `locale`.

    Args:
        metadata: A fragment's metadata.
        locale: `en` or `zh`: the fixed labels' language.
        root: The path from the document to the reports folder (`../../` from a fragment, `` from the summary).
    """
    details, parts = metadata["details"], []
    lines = [
        f"- **{label('model', locale)}:** {details['model']} · **{label('weights', locale)}:** "
        f"{details['weights']} · **{label('precision', locale)}:** {details['precision']}",
        f"- **{label('data', locale)}:** {details['data']} — {_sizes(metadata['sizes'])} "
        f"{label('examples', locale)}",
    ]
    if details.get("training"):
        lines.append(f"- **{label('training', locale)}:** {details['training']}")
    if details.get("lora"):
        lines.append(f"- **LoRA:** {details['lora']}")
    if details.get("parameters"):
        trainable, total = details["parameters"]
        lines.append(
            f"- **{label('parameters', locale)}:** {trainable:,} {label('trainable_of', locale)} {total:,}"
        )
    if details.get("trust_remote_code"):
        lines.append(f"- **{label('trust_remote_code', locale)}**")
    lines.append(
        f"- **{label('hardware', locale)}:** {details['hardware']} · **{label('time', locale)}:** "
        f"{number(details['seconds'], value_kind='seconds')} · **{label('seed', locale)}:** {metadata['seed']} · "
        f"{details['versions']}"
    )
    parts.append("\n".join(lines))
    final = [
        f"{title(key, locale)} {number(value, key)}"
        for key, value in metadata["final"].items()
        if "/" not in key
    ]
    if final:  # hw atc's cells (`set/asr/corrector/metric`) are in its matrices below
        parts.append(f"**{label('final', locale)}:** " + " · ".join(final))
    parts += [f"> **{label('note', locale)}:** {note}" for note in metadata["notes"]]
    parts += [_own_table(own) for own in metadata["tables"]]
    parts.append(_samples_part(metadata, locale, root))
    if metadata["figure"]:
        parts.append(f"![{label('curves', locale)}]({root}{metadata['figure']})")
    return "\n\n".join(part for part in parts if part)


def _headline(homework: str, final: dict[str, Any]) -> str | None:
    """The metric of the summary's glance table: the task's first (CER for Chinese), or for hw atc the one the
    homework leads with, the fine-tuned Whisper's ATCOSIM WER."""
    if homework == "atc":
        return next((key for key in final if key.startswith("atcosim/fine_tuned/none/")), None)
    return next(iter(final), None)


def _details(settings: dict, record: RunRecord, environment: dict) -> dict[str, Any]:
    """The facts of the "what was run" lines, in words and numbers that read the same in either language."""
    model, train, packages = settings.get("model", {}), settings.get("train", {}), environment["packages"]
    details: dict[str, Any] = {
        "model": model.get("name_or_path"),
        "weights": record.weights,
        "precision": _precision(settings, environment),
        "data": record.dataset or _data_of(settings),
        "hardware": environment["device"] + _processes(environment),
        "seconds": record.wall_seconds,
        "versions": f"hw {packages.get('hw')}, transformers {packages.get('transformers')}, "
        f"torch {packages.get('torch')}",
        "trust_remote_code": bool(model.get("trust_remote_code")),
    }
    if not settings["run"]["eval_only"]:
        details["training"] = (
            f"lr {train.get('learning_rate')}, batch {train.get('per_device_train_batch_size')} × accumulation "
            f"{train.get('gradient_accumulation_steps')}, {train.get('num_train_epochs')} epochs, weight decay "
            f"{train.get('weight_decay')}"
        )
        lora = settings.get("lora")
        if lora:
            details["lora"] = (
                f"r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']} on {', '.join(lora['target_modules'])}"
            )
    if record.model:
        details["parameters"] = [record.model["trainable_parameters"], record.model["total_parameters"]]
    return details


def _precision(settings: dict, environment: dict) -> str:
    """What ran: `fp32`, `fp16`, `bf16`, or quantized weights and the precision LoRA computes in."""
    ran = environment.get(
        "precision", settings.get("train", {}).get("precision")
    )  # runs before hw recorded it
    quantization = settings.get("quantization", "none")
    if quantization == "none":
        return ran
    if not environment.get("cuda"):
        return (
            f"{ran} ({quantization} asked: bitsandbytes needs CUDA, so the weights loaded in full precision)"
        )
    return f"{_QUANTIZED[quantization]}, computing in {ran}"


def _data_of(settings: dict) -> str:
    """The data as the config names it, when the task's record names none (a folder of the course's files)."""
    data = settings.get("data", {})
    named = data.get("dataset") or data.get("directory") or data.get("test_file")
    return str(named) if named else "—"


def _processes(environment: dict) -> str:
    """` × 2 processes` for a distributed run (torchrun, accelerate launch); nothing for a single process."""
    size = environment.get("world_size", 1)  # env.json of runs before hw recorded it has no world_size
    return f" × {size} processes" if size > 1 else ""


def _sizes(sizes: dict[str, int]) -> str:
    return " / ".join(f"{count:,} {split}" for split, count in sizes.items())


def _own_table(own: Table) -> str:
    rows = [
        [cell(value, column) for value, column in zip(row, own["columns"], strict=False)]
        for row in own["rows"]
    ]
    return f"**{own['title']}**\n\n" + table(own["columns"], rows)


def _error(sample: dict[str, Any]) -> float:
    """How wrong one prediction is, 0 when right: its CER or WER, 1 − its score, stars apart, or not `correct`."""
    for key in ("cer", "wer"):
        if isinstance(sample.get(key), int | float):
            return float(sample[key])
    for key, scale in (("f1", 100), ("char_f1", 1)):
        if isinstance(sample.get(key), int | float):
            return 1 - sample[key] / scale
    stars = [str(sample.get(key, "")).split(" ")[0] for key in ("label", "prediction")]
    if all(star.isdigit() for star in stars):  # yelp: "5 stars" read as "1 star" is worse than as "4 stars"
        return abs(int(stars[0]) - int(stars[1]))
    return 0.0 if sample.get("correct", True) else 1.0


def _chosen_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Up to 5 wrong predictions, largest error first, and 2 right ones, without the columns nobody reads."""
    hidden = _HIDDEN_SAMPLE_COLUMNS | {"correct"}  # the table's heading says it
    shown = [{key: value for key, value in row.items() if key not in hidden} for row in samples]
    errors = [_error(row) for row in samples]
    wrong = sorted(
        (pair for pair in zip(errors, shown, strict=True) if pair[0] > 0), key=lambda pair: -pair[0]
    )
    right = [row for error, row in zip(errors, shown, strict=True) if error == 0]
    return {
        "wrong": [row for _, row in wrong[:WRONG_SAMPLES]],
        "right": right[:RIGHT_SAMPLES],
        "total": len(samples),
    }


def _samples_part(metadata: dict[str, Any], locale: str, root: str) -> str:
    samples, parts = metadata["samples"], []
    for key in ("wrong", "right"):
        rows = samples[key]
        if rows:
            columns = list(dict.fromkeys(column for row in rows for column in row))
            cells = [[cell(row.get(column, ""), column) for column in columns] for row in rows]
            heading = (
                f"**{label(key, locale)}** ({len(rows)} {label('of_samples', locale)} {samples['total']:,})"
            )
            parts.append(heading + "\n\n" + table(columns, cells))
    if metadata["samples_file"]:
        parts.append(f"[{label('all_samples', locale)}: samples.jsonl]({root}{metadata['samples_file']})")
    return "\n\n".join(parts)


def _relative(path: Path, reports_dir: Path) -> str:
    """`path` as a link from the reports folder (POSIX separators, which Markdown links need)."""
    return Path(os.path.relpath(path, reports_dir)).as_posix()


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))
