"""Classification metrics."""

from collections.abc import Sequence


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Share of predictions equal to their label; an empty evaluation set is a caller error."""
    assert len(predictions) == len(labels) and len(labels) > 0, "accuracy needs equal, non-empty sequences"
    return sum(int(guess) == int(label) for guess, label in zip(predictions, labels, strict=True)) / len(
        labels
    )
