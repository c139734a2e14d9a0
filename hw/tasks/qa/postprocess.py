"""Turn a QA model's per-feature start/end logits into one answer text and an n-best list per example.

Follows the post-processing of the Hugging Face `run_qa.py` (`utils_qa.postprocess_qa_predictions`) and of
the course notebook: the best valid span over all windows of an example, scored start logit + end logit.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hw.errors import HwError


class QAPredictions(NamedTuple):
    """Answer text per example id, and per example id its n-best list, best first."""

    predictions: dict[str, str]
    nbest: dict[str, list[dict[str, Any]]]


# eq=False: candidates compare by identity, so the null answer is found in a list even if a span ties it.
@dataclass(frozen=True, eq=False)
class _Candidate:
    text: str
    start_logit: float
    end_logit: float

    @property
    def score(self) -> float:
        return self.start_logit + self.end_logit


def _score(candidate: _Candidate) -> float:
    return candidate.score


class _Window(NamedTuple):
    """One feature: a window of the context, its offsets and its logits cut to the feature's own length."""

    offsets: Sequence[Sequence[int] | None]  # (start, end) characters per token, None outside the context
    start_logits: np.ndarray
    end_logits: np.ndarray


def postprocess_qa_predictions(
    examples: Iterable[Mapping[str, Any]],
    features: Sequence[Mapping[str, Any]],
    start_logits: np.ndarray | Sequence[np.ndarray],
    end_logits: np.ndarray | Sequence[np.ndarray],
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    squad_v2: bool = False,
    null_score_threshold: float = 0.0,
) -> QAPredictions:
    """Pick each example's answer from the logits of all its features.

    Args:
        examples: Rows with `id` and `context`.
        features: Rows with `example_id` and `offset_mapping` (None for tokens outside the context), in the
            order of the logits.
        start_logits: One row per feature: a padded 2-D array or a list of 1-D arrays of any lengths; each
            row is cut to its feature's `offset_mapping` length, so padding can never be picked.
        end_logits: Same shape as `start_logits`.
        n_best_size: Start and end positions tried per feature, and length of each n-best list.
        max_answer_length: Longest answer, in tokens.
        squad_v2: Allow the empty answer: predict "" when the null score (start + end logit of the first
            token, the lowest over the example's features) beats the best span by more than
            `null_score_threshold`.
        null_score_threshold: Margin the null score must exceed the best span score by.

    Returns:
        Predictions `{id: text}` ("" when no valid span exists) and n-best lists
        `{id: [{"text", "probability", "start_logit", "end_logit"}, ...]}` with softmax probabilities.
    """
    windows = _windows_by_example(features, start_logits, end_logits)
    contexts = {example["id"]: example["context"] for example in examples}
    unknown = windows.keys() - contexts.keys()
    if unknown:
        raise HwError(
            f"{len(unknown)} example ids of the features are not among the {len(contexts)} examples, "
            f"e.g. {min(unknown)!r}; pass the examples the features were made from"
        )
    predictions, nbest = {}, {}
    for example_id, context in contexts.items():
        example_windows = windows[example_id]
        spans = [
            span
            for window in example_windows
            for span in _spans(window, context, n_best_size, max_answer_length)
        ]
        spans.sort(key=_score, reverse=True)  # stable: equal scores keep window, start, end order
        answer, candidates = (spans[0].text if spans else ""), spans[:n_best_size]
        if squad_v2 and example_windows:
            null = min(map(_null_candidate, example_windows), key=_score)
            candidates = _with_null(candidates, null, n_best_size)
            if not spans or null.score - spans[0].score > null_score_threshold:
                answer = ""
        predictions[example_id], nbest[example_id] = answer, _with_probabilities(candidates)
    return QAPredictions(predictions, nbest)


def _windows_by_example(
    features: Sequence[Mapping[str, Any]],
    start_logits: np.ndarray | Sequence[np.ndarray],
    end_logits: np.ndarray | Sequence[np.ndarray],
) -> defaultdict[str, list[_Window]]:
    """Group the features by example id, each with its logits cut to its own number of tokens."""
    if not len(features) == len(start_logits) == len(end_logits):
        raise HwError(
            f"got {len(features)} features but {len(start_logits)} rows of start logits and "
            f"{len(end_logits)} of end logits; pass one row of each per feature, in feature order"
        )
    windows = defaultdict(list)
    for index, feature in enumerate(features):
        offsets = feature["offset_mapping"]
        starts, ends = np.asarray(start_logits[index]), np.asarray(end_logits[index])
        if min(len(starts), len(ends)) < len(offsets):
            raise HwError(
                f"feature {index} has {len(offsets)} tokens but only {min(len(starts), len(ends))} logits; "
                "pass logits computed on these features"
            )
        windows[feature["example_id"]].append(_Window(offsets, starts[: len(offsets)], ends[: len(offsets)]))
    return windows


def _spans(window: _Window, context: str, n_best_size: int, max_answer_length: int) -> list[_Candidate]:
    """The valid answers among the window's `n_best_size` best start × `n_best_size` best end positions."""
    in_context = np.array([offset is not None for offset in window.offsets], dtype=bool)
    # Descending and stable: of equal logits, the earlier token comes first.
    starts = np.argsort(-window.start_logits, kind="stable")[:n_best_size]
    ends = np.argsort(-window.end_logits, kind="stable")[:n_best_size]
    start, end = np.meshgrid(starts, ends, indexing="ij")
    valid = in_context[start] & in_context[end] & (start <= end) & (end - start + 1 <= max_answer_length)
    return [
        _Candidate(
            context[window.offsets[first][0] : window.offsets[last][1]],
            float(window.start_logits[first]),
            float(window.end_logits[last]),
        )
        for first, last in zip(start[valid].tolist(), end[valid].tolist(), strict=True)
    ]


def _null_candidate(window: _Window) -> _Candidate:
    """The empty answer, scored by the first token's logits ([CLS] in BERT-like models)."""
    return _Candidate("", float(window.start_logits[0]), float(window.end_logits[0]))


def _with_null(candidates: list[_Candidate], null: _Candidate, n_best_size: int) -> list[_Candidate]:
    """Insert the null answer by score; keep it even when `n_best_size` spans outscore it (as run_qa.py)."""
    candidates = sorted([*candidates, null], key=_score, reverse=True)[:n_best_size]
    return candidates if null in candidates else [*candidates, null]


def _with_probabilities(candidates: list[_Candidate]) -> list[dict[str, Any]]:
    """The n-best entries, with a softmax over the candidates' scores."""
    if not candidates:
        return []
    scores = np.array([candidate.score for candidate in candidates])
    probabilities = np.exp(scores - scores.max())  # shifted by the max so exp cannot overflow
    probabilities /= probabilities.sum()
    return [
        {
            "text": candidate.text,
            "probability": float(probability),
            "start_logit": candidate.start_logit,
            "end_logit": candidate.end_logit,
        }
        for candidate, probability in zip(candidates, probabilities, strict=True)
    ]
