"""Reports: render a run's Markdown fragment and figure from its artifacts, and assemble the weekly summary.

Every number in a report is read from a run's files. A fragment carries its table as JSON in a leading HTML
comment, so the summary can merge several runs of one homework into one comparison table without torch or
the run directories, and ends with a closing comment, so a truncated one is known and left out.
"""

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hw import figures, runs
from hw.errors import HwError
from hw.record import RunRecord, Table

COLUMN_TITLES = {
    "epoch": "Epoch",
    "training_loss": "Training Loss",
    "validation_loss": "Validation Loss",
    "accuracy": "Accuracy",
    "exact_match": "EM",
    "f1": "F1",
    "wer": "WER",
    "cer": "CER",
}
TINY_BANNER = (
    "> **Tiny offline preset — not a real result.** A tiny random model trained on synthetic data, to show that "
    "the pipeline runs and learns; its numbers say nothing about the homework."
)
_METADATA = re.compile(r"<!-- hw-fragment (\{.*?\}) -->\n", re.DOTALL)
END = "<!-- /hw-fragment -->"  # a fragment's last line: without it, the file was cut short
_METADATA_KEYS = ("homework", "variant", "run", "tiny", "reference", "rows", "environment")
_TABLE = re.compile(r"<!-- table -->.*?<!-- /table -->\n", re.DOTALL)
SAMPLE_ROWS = 5


def write_fragment(run_dir: Path, reports_dir: Path) -> Path:
    """Render `reports/fragments/<homework>-<variant>[-tiny].md` and its figure from the run's artifacts."""
    settings = _read_yaml(run_dir / "config.yaml")
    record = RunRecord.read(run_dir)
    environment = runs.read_json(run_dir / "env.json")
    run = settings["run"]
    name = f"{run['homework']}-{run['variant']}" + ("-tiny" if run["tiny"] else "")
    figure = figures.plot(
        record.trainer_state,
        reports_dir / "figures" / f"{name}.png",
        homework=run["homework"],
        variant=run["variant"],
        run=run_dir.name,
        tiny=run["tiny"],
    )
    rows = record.epochs or [{"epoch": None, **record.final}]
    metadata = {
        "homework": run["homework"],
        "variant": run["variant"],
        "run": run_dir.name,
        "tiny": run["tiny"],
        "reference": settings.get("reference", []),
        "rows": rows,
        "environment": {"device": environment["device"], "packages": environment["packages"]},
    }
    parts = [
        f"<!-- hw-fragment {json.dumps(metadata, ensure_ascii=False)} -->",
        f"## {run['homework']} · {run['variant']}{' (tiny preset)' if run['tiny'] else ''} — run `{run_dir.name}`",
        TINY_BANNER if run["tiny"] else "",
        _what_was_run(settings, record, environment),
        "<!-- table -->\n" + _table(_row_groups(metadata)) + "\n<!-- /table -->",
        "**Final:** " + " · ".join(f"{key} {_number(value)}" for key, value in record.final.items()),
        *(f"> **Note:** {note}" for note in record.notes),
        *(_extra_table(table) for table in record.tables),
        _samples(record.samples),
        f"![loss and metric curves](../figures/{figure.name})" if figure else "",
        END,
    ]
    path = reports_dir / "fragments" / f"{name}.md"
    runs.write_text(path, "\n\n".join(part for part in parts if part) + "\n")
    return path


def check_writable(reports_dir: Path) -> None:
    """Fail in one line, before a run starts, when its fragment or figure could not be written at its end."""
    for folder in ("fragments", "figures"):
        runs.require_writable(reports_dir / folder, "report folder", "--reports-dir")


class Summary(NamedTuple):
    """The assembled summary and one line per file of `fragments/` left out of it (which file, and why)."""

    path: Path
    skipped: list[str]


def assemble(reports_dir: Path, order: Sequence[str] = ()) -> Summary:
    """Merge every fragment into `reports/summary.md`: per homework one comparison table, then each run.

    A file of `fragments/` that is not a whole hw fragment (a user's notes, another encoding, binary, cut short)
    is left out and named in `Summary.skipped`: one bad file must not cost the whole summary.

    Args:
        reports_dir: Holds `fragments/`; the summary is written beside it.
        order: Homeworks in the summary's order (the CLI's registry); any others follow alphabetically.
    """
    fragments = sorted((reports_dir / "fragments").glob("*.md"))
    by_homework: dict[str, list[tuple[dict, str]]] = {}
    skipped = []
    for path in fragments:
        try:
            metadata, body = _parse_fragment(path)
        except _NotAFragment as reason:
            skipped.append(
                f"{str(path)!r} ({reason}; re-run its homework, or move the file out of fragments/)"
            )
            continue
        by_homework.setdefault(metadata["homework"], []).append((metadata, body))
    if not by_homework:
        others = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        raise HwError(
            f"no report fragments in {str(reports_dir / 'fragments')!r}{others}; run a homework first "
            "(e.g. hw yelp --tiny)"
        )
    homeworks = sorted(
        by_homework, key=lambda hw: (hw not in order, order.index(hw) if hw in order else 0, hw)
    )
    sections = ["# Weekly summary", "Contents: " + " · ".join(f"[{hw}](#{hw})" for hw in homeworks)]
    for homework in homeworks:
        entries = by_homework[homework]
        groups = _merged_groups([metadata for metadata, _ in entries])
        sections.append(f"## {homework}")
        if any(metadata["tiny"] for metadata, _ in entries):
            sections.append(TINY_BANNER.replace("A tiny", "Rows marked TINY come from a tiny"))
        sections.append(_table(groups))
        sections += [
            body.replace("](../figures/", "](figures/").replace("\n## ", "\n### ", 1) for _, body in entries
        ]
    sections.append(
        _environment_block([metadata for entries in by_homework.values() for metadata, _ in entries])
    )
    path = reports_dir / "summary.md"
    runs.write_text(path, "\n\n".join(sections) + "\n")
    return Summary(path, skipped)


class _NotAFragment(Exception):
    """A file in `fragments/` that is not a whole hw fragment; the message says why."""


def _parse_fragment(path: Path) -> tuple[dict, str]:
    """The fragment's metadata and its body (without the table, which the summary merges)."""
    try:  # -sig: a BOM, which some editors add when they save, is read as nothing
        text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise _NotAFragment("not UTF-8 text: binary, or saved in another encoding") from None
    match = _METADATA.match(text)
    if not match:
        raise _NotAFragment("not an hw report fragment: no hw-fragment header")
    try:
        metadata = json.loads(match.group(1))
    except json.JSONDecodeError as error:
        raise _NotAFragment(f"damaged hw-fragment header: {error.msg}") from None
    missing = (
        [key for key in _METADATA_KEYS if key not in metadata] if isinstance(metadata, dict) else ["all"]
    )
    if missing:
        raise _NotAFragment(f"damaged hw-fragment header: no {', '.join(missing)}")
    body = text[match.end() :].rstrip()
    if not body.endswith(END):
        raise _NotAFragment(f"incomplete: its last line is not {END} (cut short, or written by an older hw)")
    body = _TABLE.sub("", body.removesuffix(END)).strip()
    return metadata, "\n" + body


def _row_groups(metadata: dict) -> list[tuple[str, list[dict]]]:
    groups = [(reference["source"], reference["rows"]) for reference in metadata["reference"]]
    label = f"**this run** ({metadata['variant']}{', TINY' if metadata['tiny'] else ''})"
    return groups + [(label, metadata["rows"])]


def _merged_groups(fragments: list[dict]) -> list[tuple[str, list[dict]]]:
    """Reference rows once per source, then one row group per run."""
    groups, seen = [], set()
    for metadata in fragments:
        for reference in metadata["reference"]:
            if reference["source"] not in seen:
                seen.add(reference["source"])
                groups.append((reference["source"], reference["rows"]))
    for metadata in fragments:
        label = f"**{metadata['variant']}** run `{metadata['run']}`" + (
            " — TINY, not a real result" if metadata["tiny"] else ""
        )
        groups.append((label, metadata["rows"]))
    return groups


def _table(groups: list[tuple[str, list[dict]]]) -> str:
    """A Markdown table with a Source column; the first row of each group names it."""
    columns: list[str] = []
    for _, rows in groups:
        for row in rows:
            columns += [key for key in row if key not in columns and key != "step"]
    columns.sort(
        key=lambda key: list(COLUMN_TITLES).index(key) if key in COLUMN_TITLES else len(COLUMN_TITLES)
    )
    lines = [
        "| Source | " + " | ".join(COLUMN_TITLES.get(key, key) for key in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for source, rows in groups:
        for index, row in enumerate(rows):
            cells = [source if index == 0 else ""] + [_number(row.get(key), key) for key in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _what_was_run(settings: dict, record: RunRecord, environment: dict) -> str:
    model, train = settings.get("model", {}), settings.get("train", {})
    sizes = " / ".join(f"{count} {split}" for split, count in record.data.items())
    lines = [
        f"- **Model:** {model.get('name_or_path')} · **weights scored:** {record.weights}",
        f"- **Data:** {record.dataset} — {sizes} examples",
    ]
    if not settings["run"]["eval_only"]:
        lines.append(
            f"- **Training:** lr {train.get('learning_rate')}, batch {train.get('per_device_train_batch_size')} × "
            f"accumulation {train.get('gradient_accumulation_steps')}, {train.get('num_train_epochs')} epochs, "
            f"weight decay {train.get('weight_decay')}, precision {train.get('precision')}"
        )
    if settings.get("lora") and not settings["run"]["eval_only"]:
        lora = settings["lora"]
        lines.append(
            f"- **LoRA:** r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']} on {', '.join(lora['target_modules'])}"
        )
    counts = record.model
    if counts:
        lines.append(
            f"- **Parameters:** {counts['trainable_parameters']:,} trainable of {counts['total_parameters']:,}"
        )
    if settings.get("model", {}).get("trust_remote_code"):
        lines.append(
            "- **trust_remote_code was ON**: Python code shipped with the model's repository was allowed to run."
        )
    packages = environment["packages"]
    lines.append(
        f"- **Hardware:** {environment['device']}{_processes(environment)} · **time:** {record.wall_seconds} s · "
        f"**seed:** {environment['seed']} · hw {packages.get('hw')}, transformers {packages.get('transformers')}, "
        f"torch {packages.get('torch')}"
    )
    return "\n".join(lines)


def _processes(environment: dict) -> str:
    """` × 2 processes` for a distributed run (torchrun, accelerate launch); nothing for a single process."""
    size = environment.get("world_size", 1)  # env.json of runs before hw recorded it has no world_size
    return f" × {size} processes" if size > 1 else ""


def _extra_table(table: Table) -> str:
    lines = [
        f"**{table['title']}**",
        "",
        "| " + " | ".join(table["columns"]) + " |",
        "|---" * len(table["columns"]) + "|",
    ]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def _samples(samples: list[dict[str, Any]]) -> str:
    rows = samples[:SAMPLE_ROWS]
    if not rows:
        return ""
    columns = list(rows[0])
    table = {"title": f"Sample predictions (first {len(rows)} of samples.jsonl)", "columns": columns}
    return _extra_table({**table, "rows": [[row.get(key) for key in columns] for row in rows]})


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    text = " ".join(str(value).split())
    text = text if len(text) <= 160 else text[:157] + "…"
    return text.replace("|", "\\|")


def _number(value: Any, key: str = "") -> str:
    if value is None:
        return "—"
    if key == "epoch":
        return f"{value:g}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _environment_block(fragments: list[dict]) -> str:
    lines = sorted(
        {
            f"- {m['environment']['device']}: "
            + ", ".join(f"{name} {version}" for name, version in m["environment"]["packages"].items())
            for m in fragments
        }
    )
    return "## Environment\n\n" + "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))
