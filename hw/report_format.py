"""Numbers and Markdown tables of the report: each metric at the precision it is published at, cells escaped."""

from typing import Any

from hw.report_text import TABLE_COLUMN_KINDS, kind

CELL_CHARACTERS = 160


def number(value: Any, key: str = "", value_kind: str = "") -> str:
    """`value` printed as its metric is published: `0.2532` WER → `25.32 %`, EM `75.16`, `94,208`.

    Args:
        value: A number, None (printed `—`) or anything else (printed as text).
        key: The metric key (`accuracy`, `atco2/zero_shot/none/wer`), whose kind sets the format.
        value_kind: The kind itself, when there is no key (`report_text.Column.kind`).
    """
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    value_kind = value_kind or kind(key)
    if value_kind == "count" or (isinstance(value, int) and value_kind not in ("epoch", "rate", "share")):
        return f"{value:,}"
    formats = {
        "epoch": lambda v: f"{v:g}",
        "loss": lambda v: f"{v:.4f}",
        "accuracy": lambda v: _decimals(v, 3, 4),
        "points": lambda v: f"{v:.2f}",
        "rate": lambda v: _decimals(v * 100, 1, 2) + " %",
        "share": lambda v: f"{v * 100:.1f} %",
        "seconds": lambda v: f"{v:,.1f} s",
    }
    return formats.get(value_kind, lambda v: _decimals(v, 3, 4) if abs(v) < 1000 else f"{v:,.0f}")(value)


def _decimals(value: float, least: int, most: int) -> str:
    """`value` with `most` decimals, trailing zeros dropped down to `least`: 0.526 stays 0.526, not 0.5260."""
    text = f"{value:.{most}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(least, "0")
    return f"{whole}.{fraction}" if fraction else whole


def cell(value: Any, column_title: str = "") -> str:
    """One table cell: a float by its column's kind (title or key), text on one line, cut at 160 characters, `|` escaped."""
    if isinstance(value, float):  # a task's table titles its columns in words; samples by their keys
        return number(value, column_title, TABLE_COLUMN_KINDS.get(column_title, ""))
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    text = " ".join(str(value).split())
    text = text if len(text) <= CELL_CHARACTERS else text[: CELL_CHARACTERS - 1] + "…"
    return text.replace("|", "\\|")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ready cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
