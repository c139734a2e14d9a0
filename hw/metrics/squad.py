"""SQuAD exact match and F1, equal to the official v1.1 evaluation script, with the v2.0 rules as an option.

The rules follow `evaluate-v1.1.py` and `evaluate-v2.0.py` (Rajpurkar et al., 2016 and 2018):
normalize (lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace), then exact
match and bag-of-tokens F1, each the max over a question's ground truths, averaged over every question × 100.
"""

import json
import logging
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hw.errors import HwError

logger = logging.getLogger(__name__)

# `string.punctuation` is ASCII only, so the official script keeps “curly quotes”, ‘apostrophes’ and dashes.
_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_EXPECTED_LAYOUT = (
    '{"data": [{"paragraphs": [{"context": "...", "qas": [{"id": "...", '
    '"answers": [{"text": "...", "answer_start": 0}]}]}]}]}'
)
_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class SquadExample(NamedTuple):
    """One question: its id and its ground-truth answer texts (none for an unanswerable SQuAD v2 question)."""

    id: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class SquadScore:
    """Scores in percent over all `total` questions; the `missing` ones had no prediction and scored 0."""

    exact_match: float
    f1: float
    total: int
    missing: int


def normalize_answer(text: str) -> str:
    """Lowercase, remove ASCII punctuation, remove the articles a/an/the, then collapse whitespace."""
    text = text.lower().translate(_DELETE_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalized texts are equal, else 0.0 (two empty texts match, in v1.1 as in v2.0)."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str, *, squad_v2: bool = False) -> float:
    """Bag-of-tokens F1 of the normalized texts.

    Args:
        prediction: The predicted answer text.
        truth: One ground-truth answer text.
        squad_v2: Use the v2.0 rule that an empty text scores 1 against an empty text and 0 against any
            other; v1.1 scores every pair without a common token 0, two empty texts included.
    """
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    if squad_v2 and not (prediction_tokens and truth_tokens):
        return float(prediction_tokens == truth_tokens)
    common = Counter(prediction_tokens) & Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = 1.0 * same / len(prediction_tokens)
    recall = 1.0 * same / len(truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def score(
    examples: Iterable[SquadExample | tuple[str, Iterable[str]]],
    predictions: Mapping[str, str],
    *,
    squad_v2: bool = False,
) -> SquadScore:
    """Score predictions against every question; missing ids score 0, ids not in `examples` are ignored.

    Unlike `evaluate-v2.0.py`, which leaves questions without a prediction out of the denominator, a missing
    prediction counts as wrong in v2 mode too, so a partial predictions file cannot raise the score.

    Args:
        examples: `SquadExample`s or `(question id, answer texts)` pairs.
        predictions: Question id → predicted answer text.
        squad_v2: Score unanswerable questions (no answers) with the v2.0 rules.
    """
    exact_total = f1_total = 0.0
    total = missing = 0
    for question_id, answers in examples:
        truths = _ground_truths(question_id, answers, squad_v2)
        total += 1
        if question_id not in predictions:
            missing += 1
            continue
        prediction = predictions[question_id]
        exact_total += max(exact_match(prediction, truth) for truth in truths)
        f1_total += max(f1(prediction, truth, squad_v2=squad_v2) for truth in truths)
    if total == 0:
        raise HwError("cannot score SQuAD predictions against 0 questions; pass a dataset with questions")
    return SquadScore(100.0 * exact_total / total, 100.0 * f1_total / total, total, missing)


def _ground_truths(question_id: str, answers: Iterable[str], squad_v2: bool) -> list[str]:
    """The texts to compare with; v2.0 drops those that normalize to "" and uses [""] if none is left."""
    answers = list(answers)
    if squad_v2:
        return [answer for answer in answers if normalize_answer(answer)] or [""]
    if not answers:
        raise HwError(f"question {question_id} has no answers, which only SQuAD v2 allows; pass --squad-v2")
    return answers


def load_dataset_file(path: str | Path, *, squad_v2: bool = False) -> list[SquadExample]:
    """Read an official SQuAD JSON file into its questions, checking its layout and every `answer_start`.

    Raises:
        HwError: The file is missing, not JSON, not in the SQuAD layout, holds an answer that is not at its
            `answer_start` in the context, or is a v2.0 file read without `squad_v2`.
    """
    path = Path(path)
    document = _read_json(path, "SQuAD data file")
    version = document.get("version") if isinstance(document, dict) else None
    if not squad_v2 and str(version).startswith("v2"):
        message = f"SQuAD data file {path} is version {version}, a SQuAD v2 file; pass --squad-v2 to score it"
        raise HwError(message)
    examples = []
    for where, question, context in _questions(document, path):
        question_id = _member(question, "id", str, where, path)
        answers = [
            _answer_text(answer, f"{where}.answers[{index}]", question_id, context, path)
            for index, answer in enumerate(_member(question, "answers", list, where, path))
        ]
        if not squad_v2 and (question.get("is_impossible") or not answers):
            raise HwError(
                f"SQuAD data file {path} is a SQuAD v2 file: question {question_id} is unanswerable; "
                "pass --squad-v2 to score unanswerable questions"
            )
        examples.append(SquadExample(question_id, tuple(answers)))
    return examples


def _questions(document: Any, path: Path) -> Iterator[tuple[str, dict, str]]:
    """Yield (JSON path, question object, paragraph context) for every question of a SQuAD document."""
    for article_index, article in enumerate(_member(document, "data", list, "", path)):
        paragraphs = _member(article, "paragraphs", list, f"data[{article_index}]", path)
        for paragraph_index, paragraph in enumerate(paragraphs):
            where = f"data[{article_index}].paragraphs[{paragraph_index}]"
            context = _member(paragraph, "context", str, where, path)
            for question_index, question in enumerate(_member(paragraph, "qas", list, where, path)):
                yield f"{where}.qas[{question_index}]", question, context


def _answer_text(answer: Any, where: str, question_id: str, context: str, path: Path) -> str:
    """The text of one answer object, after checking that the context holds it at `answer_start`."""
    text = _member(answer, "text", str, where, path)
    start = _member(answer, "answer_start", int, where, path)
    held = context[start : start + len(text)]
    if held != text:
        raise HwError(
            f"SQuAD data file {path}: question {question_id} has answer {text!r} at answer_start {start}, "
            f"but the context holds {held!r} there; fix answer_start or the answer text"
        )
    return text


def _member(parent: Any, key: str, kind: type, where: str, path: Path) -> Any:
    """`parent[key]` after checking that `parent` is a JSON object and the value has JSON type `kind`."""
    if not isinstance(parent, dict):
        raise _layout_error(path, where or "the top level", "object", f"a JSON {_json_name(parent)}")
    where = f"{where}.{key}" if where else key
    if key not in parent:
        raise _layout_error(path, where, _JSON_NAMES[kind], "nothing")
    # JSON true/false are not numbers, but Python's bool is an int.
    if not isinstance(parent[key], kind) or isinstance(parent[key], bool):
        raise _layout_error(path, where, _JSON_NAMES[kind], f"a JSON {_json_name(parent[key])}")
    return parent[key]


def _layout_error(path: Path, where: str, expected: str, found: str) -> HwError:
    return HwError(
        f"SQuAD data file {path} has the wrong layout: {where} should be a JSON {expected}, found {found}; "
        f"the official layout is {_EXPECTED_LAYOUT}"
    )


def _json_name(value: Any) -> str:
    return "null" if value is None else _JSON_NAMES[type(value)]


def load_predictions_file(path: str | Path) -> dict[str, str]:
    """Read a predictions file: one JSON object of question id → predicted answer text.

    Raises:
        HwError: The file is missing, not JSON, or not an object whose values are all strings.
    """
    path = Path(path)
    predictions = _read_json(path, "predictions file")
    if isinstance(predictions, dict):
        wrong = next((key for key, value in predictions.items() if not isinstance(value, str)), None)
        if wrong is None:
            return predictions
        found = f"the value for {wrong!r} is a JSON {_json_name(predictions[wrong])}"
    else:
        found = f"got a JSON {_json_name(predictions)}"
    raise HwError(
        f"predictions file {path} is not a JSON object of question id → answer text ({found}); "
        'write it as {"<question id>": "<answer text>", ...}'
    )


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise HwError(f"{what} {path} does not exist or is not a file; check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HwError(f"{what} {path} is not valid JSON ({error}); pass a JSON file") from None


def score_files(
    data_path: str | Path, predictions_path: str | Path, *, squad_v2: bool = False
) -> dict[str, float | int]:
    """Score a predictions file against a SQuAD data file, as `evaluate-v1.1.py DATA PREDICTIONS` does.

    Returns:
        `{"exact_match", "f1", "total", "missing"}`; questions without a prediction are logged and score 0.
    """
    examples = load_dataset_file(data_path, squad_v2=squad_v2)
    predictions = load_predictions_file(predictions_path)
    result = score(examples, predictions, squad_v2=squad_v2)
    if result.missing:
        first = next(example.id for example in examples if example.id not in predictions)
        logger.warning(
            "%d of %d questions have no prediction in %s (first: %s); they score 0",
            result.missing,
            result.total,
            predictions_path,
            first,
        )
    return asdict(result)
