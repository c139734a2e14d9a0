"""The weekly summary: every run's fragment assembled into `reports/summary.md`, glance table first.

Per homework and variant one table: the published reference rows, each naming its source, directly above the
runs, the newest training run first. The student's own notes (`reports/notes/`) are placed verbatim under their
heading. Reads fragments only: no torch, no transformers, no run directories.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hw import runs
from hw.errors import HwError
from hw.report import NotAFragment, read_fragment, reference_groups, render_run, variant_table
from hw.report_format import number, table
from hw.report_text import LOCALES, label, title

RUN_CHOICES = ("all", "latest")
NOTES_TEMPLATE = (
    '<!-- Your own words about {name}: what the numbers show, what you conclude (e.g. "full data raises accuracy '
    'markedly"; "validation loss rises while training loss falls: overfitting"). `hw report` places this file '
    "verbatim under the {name} heading of summary.md and never overwrites it; name it {homework}-VARIANT.md "
    "for a note on one variant. This comment does not show in the rendered summary. -->\n"
)


class Summary(NamedTuple):
    """The assembled summary and one line per file of `fragments/` left out of it (which file, and why)."""

    path: Path
    skipped: list[str]


def assemble(
    reports_dir: Path,
    order: Sequence[str] = (),
    *,
    runs_shown: str = "all",
    only: Sequence[str] = (),
    locale: str = "en",
) -> Summary:
    """Write `reports/summary.md` from every fragment under `reports/fragments/`.

    A file of `fragments/` that is not a whole hw fragment (a user's notes, another encoding, binary, cut short)
    is left out and named in `Summary.skipped`: one bad file must not cost the whole summary.

    Args:
        reports_dir: Holds `fragments/`; the summary is written beside it, notes templates in `notes/`.
        order: Homeworks in the summary's order (the CLI's registry); any others follow alphabetically.
        runs_shown: `all` runs of each variant, or only the `latest` (the newest training run).
        only: Run names to show; empty: every run.
        locale: `en` or `zh`: the language of the fixed titles and labels.
    """
    for option, value, allowed in (("--runs", runs_shown, RUN_CHOICES), ("--locale", locale, LOCALES)):
        if value not in allowed:
            raise HwError(f"{option} {value!r} is not one of {', '.join(allowed)}: choose one of them")
    fragments, skipped = _read_all(reports_dir)
    if only:
        unknown = sorted(set(only) - {metadata["run"] for metadata in fragments})
        if unknown:
            known = ", ".join(sorted(metadata["run"] for metadata in fragments))
            raise HwError(f"--only {unknown[0]!r}: no fragment of that run; runs with fragments: {known}")
        fragments = [metadata for metadata in fragments if metadata["run"] in only]
    variants: dict[tuple[str, str], list[dict]] = {}
    newest_first = sorted(fragments, key=lambda metadata: metadata["time"], reverse=True)
    for metadata in sorted(newest_first, key=lambda metadata: metadata["eval_only"]):  # training runs first
        variants.setdefault((metadata["homework"], metadata["variant"]), []).append(metadata)
    homeworks = sorted(
        {homework for homework, _ in variants},
        key=lambda hw: (hw not in order, order.index(hw) if hw in order else 0, hw),
    )
    # The packaged variant named after its homework first (yelp before yelp-full), then the others.
    keys = sorted(variants, key=lambda key: (key[1] != key[0], key[1]))
    ordered = {key: variants[key] for homework in homeworks for key in keys if key[0] == homework}
    sections = [
        f"# {label('summary', locale)}",
        f"{label('contents', locale)}: " + " · ".join(f"[{hw}](#{hw})" for hw in homeworks),
        f"## {label('glance', locale)}",
        _glance(ordered, locale),
    ]
    for homework in homeworks:
        sections += [f"## {homework}", *_notes(reports_dir, homework, homework)]
        for (owner, _), group in ordered.items():
            if owner == homework:
                sections += _variant_section(reports_dir, group, runs_shown, locale)
    sections.append(_environment_block(fragments, locale))
    path = reports_dir / "summary.md"
    runs.write_text(path, "\n\n".join(section for section in sections if section) + "\n")
    return Summary(path, skipped)


def _read_all(reports_dir: Path) -> tuple[list[dict], list[str]]:
    """Every whole fragment's metadata, and a line for each file left out."""
    fragments, skipped = [], []
    for path in sorted((reports_dir / "fragments").rglob("*.md")):
        try:
            fragments.append(read_fragment(path))
        except NotAFragment as reason:
            skipped.append(
                f"{str(path)!r} ({reason}; re-run its homework, or move the file out of fragments/)"
            )
    if not fragments:
        others = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        raise HwError(
            f"no report fragments in {str(reports_dir / 'fragments')!r}{others}; run a homework first "
            "(e.g. hw yelp --tiny)"
        )
    return fragments, skipped


def _variant_section(reports_dir: Path, group: list[dict], runs_shown: str, locale: str) -> list[str]:
    """A variant's heading, notes, table (references above runs) and each shown run's details."""
    first = group[0]
    shown = group[:1] if runs_shown == "latest" else group
    name = f"{first['homework']}-{first['variant']}"
    section = [
        f"### {first['homework']} · {first['variant']}",
        *_notes(reports_dir, name, name, create=False),
    ]
    if any(metadata["tiny"] for metadata in shown):
        section.append(label("tiny_banner", locale))
    groups = reference_groups(first) + [
        (_run_label(metadata, group, locale), metadata["rows"]) for metadata in shown
    ]
    section.append(variant_table(groups, locale))
    if len(group) > len(shown):
        section.append(f"*{len(group) - len(shown)} {label('older_runs', locale)}*")
    for index, metadata in enumerate(shown):
        details = render_run(metadata, locale, "")
        heading = f"{label('details', locale)} `{metadata['run']}`"
        if index == 0:
            section += [f"#### {heading}", details]
        else:  # further runs fold away: the table above already compares them
            section.append(f"<details><summary>{heading}</summary>\n\n{details}\n\n</details>")
    return section


def _run_label(metadata: dict, group: list[dict], locale: str) -> str:
    """A run's row-group label: its name and what sets it apart from the other runs of its variant."""
    parts = [f"**{label('run', locale)}** `{metadata['run']}`"]
    if metadata.get("label"):
        parts.append(f"“{metadata['label']}”")
    if metadata["eval_only"]:
        scored = Path(metadata["scored"]).name if metadata.get("scored") else label("base_model", locale)
        parts.append(f"{label('eval_only_of', locale)} `{scored}`")
    if len({str(other.get("sizes")) for other in group}) > 1:
        parts.append(" / ".join(f"{count:,} {split}" for split, count in metadata["sizes"].items()))
    if len({other.get("seed") for other in group}) > 1:
        parts.append(f"{label('seed', locale)} {metadata['seed']}")
    if metadata["tiny"]:
        parts.append(label("tiny_mark", locale))
    return " · ".join(parts)


def _glance(variants: dict[tuple[str, str], list[dict]], locale: str) -> str:
    """One row per homework and variant: the headline metric of the course, the homework report and this run."""
    rows = []
    for (homework, variant), group in variants.items():
        run = group[0]
        key = run.get("headline")
        if key is None:
            continue
        course, report = (_published(run, key, role) for role in ("course", "homework"))
        value = run["final"].get(key)
        compared, basis = (report, "vs_homework") if report is not None else (course, "vs_course")
        if run["tiny"]:
            difference = label("tiny_mark", locale)
        elif compared is None or value is None:
            difference = "—"
        else:
            sign = "+" if value >= compared else "−"
            difference = (
                f"{sign}{number(abs(value - compared), key).replace(' %', ' pp')} {label(basis, locale)}"
            )
        cells = [f"{homework} · {variant}", title(key, locale), number(course, key), number(report, key)]
        rows.append([*cells, number(value, key), difference])
    header = ["homework", "metric", "course", "homework_report", "this_run", "difference"]
    return table([label(key, locale) for key in header], rows)


def _published(run: dict, key: str, role: str) -> Any:
    """The last published value of `key` from a reference whose source starts with `course` or `homework`."""
    values = [
        row[key]
        for reference in run["reference"]
        if reference["source"].lower().startswith(role)
        for row in reference["rows"]
        if key in row
    ]
    return values[-1] if values else None


def _notes(reports_dir: Path, name: str, homework: str, *, create: bool = True) -> list[str]:
    """`reports/notes/<name>.md` verbatim; a commented template is created for a homework that has none."""
    path = reports_dir / "notes" / f"{name}.md"
    if not path.is_file():
        if create:
            runs.write_text(path, NOTES_TEMPLATE.format(name=name, homework=homework))
        return []
    return [path.read_text(encoding="utf-8-sig").strip()]


def _environment_block(fragments: list[dict], locale: str) -> str:
    lines = sorted(
        {
            f"- {m['environment']['device']}: "
            + ", ".join(f"{name} {version}" for name, version in m["environment"]["packages"].items())
            for m in fragments
        }
    )
    return f"## {label('environment', locale)}\n\n" + "\n".join(lines)
