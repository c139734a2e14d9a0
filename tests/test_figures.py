"""A run's figure, checked through its matplotlib objects (titles, legend, axes), not its pixels."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hw import figures

TITLE = "qa · qa · qa-20250101-120000"


def _history(*evaluations: dict[str, float]) -> list[dict[str, Any]]:
    """Two training-loss entries, then one evaluation per dict (given the eval_* keys) at steps 10, 20, …"""
    train = [{"step": 5, "loss": 2.0}, {"step": 15, "loss": 1.0}]
    overhead = {"eval_runtime": 0.4, "eval_samples_per_second": 900.0, "eval_steps_per_second": 15.0}
    return train + [
        {
            "step": 10 * (index + 1),
            "epoch": index + 1.0,
            "eval_loss": 1.5 - 0.1 * index,
            **overhead,
            **metrics,
        }
        for index, metrics in enumerate(evaluations)
    ]


@pytest.fixture
def draw() -> Iterator[Any]:
    """`figures._figure`, closing every figure it drew afterwards."""
    from matplotlib import pyplot

    drawn = []

    def _draw(history: list[dict[str, Any]], tiny: bool = False) -> Any:
        drawn.append(figures._figure(history, TITLE, tiny))
        return drawn[-1]

    yield _draw
    for figure in drawn:
        pyplot.close(figure)


def _labels(figure: Any) -> list[str]:
    return [text.get_text() for text in figure.legends[0].get_texts()]


def _texts(figure: Any) -> list[str]:
    from matplotlib.text import Text

    return [text.get_text() for text in figure.findobj(Text)]


def test_the_title_names_homework_variant_and_run_and_a_tiny_run_says_it_is_not_real(draw) -> None:
    tiny = draw(_history({"eval_accuracy": 0.5}), tiny=True)
    assert tiny.get_suptitle() == TITLE
    assert tiny.axes[0].get_title() == "TINY — not a real result"
    real = draw(_history({"eval_accuracy": 0.5}))
    assert real.get_suptitle() == TITLE
    assert not any("TINY" in text for text in _texts(real))


def test_qa_draws_exact_match_and_f1_in_words_on_a_percent_axis_from_0_to_100(draw) -> None:
    figure = draw(
        _history({"eval_exact_match": 43.0, "eval_f1": 43.1}, {"eval_exact_match": 86.75, "eval_f1": 86.8})
    )
    assert _labels(figure) == ["training loss", "validation loss", "exact match", "F1"]
    loss, metric = figure.axes
    assert metric.get_ylabel() == "exact match / F1 (%)"
    assert metric.get_ylim() == (0, 100)
    assert loss.get_ylim()[0] == 0


def test_a_tiny_change_in_accuracy_is_drawn_on_the_whole_0_to_1_scale_not_zoomed_into(draw) -> None:
    figure = draw(_history({"eval_accuracy": 0.964}, {"eval_accuracy": 0.966}))
    assert _labels(figure) == ["training loss", "validation loss", "accuracy"]
    assert figure.axes[1].get_ylim() == (0, 1)


def test_the_legend_sits_outside_the_axes_and_covers_no_curve(draw) -> None:
    figure = draw(_history({"eval_accuracy": 0.5}, {"eval_accuracy": 0.9}), tiny=True)
    figure.canvas.draw()  # lays the figure out
    legend = figure.legends[0].get_window_extent()
    assert [axis.get_legend() for axis in figure.axes] == [None, None]
    assert not any(legend.overlaps(axis.get_window_extent()) for axis in figure.axes)


def test_speech_draws_wer_and_cer_where_evaluated_and_the_axis_reaches_a_wer_above_1(draw) -> None:
    # Per-evaluation WER may come only with some evaluations: each metric keeps the points it has.
    figure = draw(_history({"eval_wer": 1.27, "eval_cer": 0.9}, {}, {"eval_wer": 0.4, "eval_cer": 0.2}))
    assert _labels(figure) == ["training loss", "validation loss", "WER", "CER"]
    wer = figure.axes[1].get_lines()[0]
    assert list(wer.get_xdata()) == [10, 30]
    assert figure.axes[1].get_ylim() == (0, pytest.approx(1.05 * 1.27))


def test_speech_without_wer_in_its_log_history_draws_the_losses_alone(draw) -> None:
    figure = draw(_history({}, {}))
    assert _labels(figure) == ["training loss", "validation loss"]
    assert len(figure.axes) == 1  # no empty metric axis


def test_a_metric_hw_has_no_words_for_is_drawn_under_its_key(draw) -> None:
    figure = draw(_history({"eval_char_f1": 0.3, "eval_model_preparation_time": 0.01}))
    assert _labels(figure) == ["training loss", "validation loss", "char f1"]
    assert figure.axes[1].get_ylim() == (0, 1)


def test_plot_writes_a_png_and_nothing_for_a_history_without_loss(tmp_path: Path) -> None:
    from matplotlib import pyplot

    names = {"homework": "qa", "variant": "qa", "run": "r1", "tiny": False}
    path = figures.plot({"log_history": _history({"eval_f1": 50.0})}, tmp_path / "a.png", **names)
    assert path == tmp_path / "a.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    eval_only = {"log_history": [{"step": 0, "eval_runtime": 1.0}]}
    assert figures.plot(eval_only, tmp_path / "b.png", **names) is None
    assert figures.plot(None, tmp_path / "c.png", **names) is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png"]
    assert pyplot.get_fignums() == []
