"""A run's figure: its loss curves and evaluation metrics per optimizer step, drawn from the Trainer's log history.

matplotlib is imported only when a figure is drawn, so assembling a report imports none of it.
"""

import io
import itertools
from pathlib import Path
from typing import Any

from hw import runs

TINY_MARK = "TINY — not a real result"
# Legend and axis labels in words; a metric not named here is shown by its key, underscores as spaces.
_LABELS = {"accuracy": "accuracy", "exact_match": "exact match", "f1": "F1", "wer": "WER", "cer": "CER"}
# SQuAD's EM and F1 are percentages (hw/metrics/squad.py); every other known metric is a share of 1.
_PERCENT = {"exact_match", "f1"}
# The loss curves take matplotlib's first two colours; the metrics these, in turn.
_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
# Keys of an evaluation entry that are bookkeeping, not a metric of the model.
_NOT_METRICS = {
    "eval_loss",
    "eval_runtime",
    "eval_samples_per_second",
    "eval_steps_per_second",
    "eval_model_preparation_time",
}


def plot(
    state: dict[str, Any] | None, path: Path, *, homework: str, variant: str, run: str, tiny: bool
) -> Path | None:
    """Draw the run's curves to `path` (PNG, written atomically).

    Args:
        state: The Trainer's state (trainer_state.json); None when nothing trained.
        path: Where the PNG goes.
        homework: Named in the title, with `variant` and `run` (the run directory's name).
        variant: The homework's variant.
        run: The run directory's name.
        tiny: Whether the run used the tiny offline preset: the figure then says it is not a real result.

    Returns:
        `path`, or None when the log history holds no loss to draw (an eval-only run).
    """
    if state is None:
        return None
    figure = _figure(state["log_history"], f"{homework} · {variant} · {run}", tiny)
    if figure is None:
        return None
    from matplotlib import pyplot

    try:
        image = io.BytesIO()  # rendered in memory, then written atomically: never a half-written PNG
        figure.savefig(image, format="png", dpi=100)
    finally:
        pyplot.close(figure)
    runs.write_bytes(path, image.getvalue())
    return path


def _figure(history: list[dict[str, Any]], title: str, tiny: bool) -> Any:
    """The figure of `plot`, still open (the caller closes it); None when `history` holds no loss."""
    train = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
    evaluation = [entry for entry in history if "eval_loss" in entry]
    if not train and not evaluation:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    # Constrained layout makes room for the legend outside the axes, below them, so it never hides a curve.
    figure, axis = pyplot.subplots(figsize=(7, 4.2), layout="constrained")
    figure.suptitle(title, fontweight="bold")
    if tiny:
        axis.set_title(TINY_MARK, color="tab:red", fontweight="bold")
    lines = _draw_loss(axis, train, evaluation)
    metrics = _metrics(evaluation)
    if metrics:
        lines += _draw_metrics(axis.twinx(), metrics)
    figure.legend(handles=lines, loc="outside lower center", ncols=min(len(lines), 4), frameon=False)
    return figure


def _draw_loss(axis: Any, train: list[tuple[int, float]], evaluation: list[dict[str, Any]]) -> list[Any]:
    """Training and validation loss on `axis`; the lines drawn, for the legend."""
    lines = []
    if train:
        lines += axis.plot(*zip(*train, strict=True), ".-" if len(train) == 1 else "-", label="training loss")
    if evaluation:
        steps = [entry["step"] for entry in evaluation]
        lines += axis.plot(steps, [entry["eval_loss"] for entry in evaluation], "o-", label="validation loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_ylim(bottom=0)  # cross-entropy is never below 0: a flat stretch then looks flat
    return lines


def _metrics(evaluation: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Each evaluation metric (key without `eval_`) and its (step, value) points, from the entries that hold it:
    a metric evaluated only now and then (WER every few evaluations) keeps the points it has."""
    metrics: dict[str, list[tuple[int, float]]] = {}
    for entry in evaluation:
        for key, value in entry.items():
            if key.startswith("eval_") and key not in _NOT_METRICS and isinstance(value, int | float):
                metrics.setdefault(key.removeprefix("eval_"), []).append((entry["step"], value))
    return metrics


def _draw_metrics(axis: Any, metrics: dict[str, list[tuple[int, float]]]) -> list[Any]:
    """The metrics on `axis` (the right-hand one), as points joined by dashes; the lines drawn, for the legend."""
    # Hollow markers and distinct dashes, so two metrics that coincide (EM and F1 often do) both stay visible.
    styles = itertools.cycle(zip("sDo^vP", ["--", ":", "-."] * 2, _COLORS, strict=True))
    lines = []
    for (name, points), (marker, dashes, color) in zip(metrics.items(), styles, strict=False):
        lines += axis.plot(
            *zip(*points, strict=True),
            marker=marker,
            linestyle=dashes,
            color=color,
            fillstyle="none",
            label=_LABELS.get(name, name.replace("_", " ")),
        )
    percent = set(metrics) <= _PERCENT
    axis.set_ylabel(" / ".join(line.get_label() for line in lines) + (" (%)" if percent else ""))
    # The axis spans 0 to at least the metrics' full scale (100 for percentages, else 1), further when a value
    # exceeds it (a WER above 1): a change of 0.002 in accuracy then looks as small as it is, not like a cliff.
    values = [value for points in metrics.values() for _, value in points]
    full_scale = 100 if percent else 1
    axis.set_ylim(min(0, *values), full_scale if max(values) <= full_scale else 1.05 * max(values))
    return lines
