import json
import logging
import re
from pathlib import Path

import pytest

from hw.errors import HwError
from hw.metrics.squad import (
    SquadExample,
    SquadScore,
    exact_match,
    f1,
    load_dataset_file,
    load_predictions_file,
    normalize_answer,
    score,
    score_files,
)
from tests.shared_data import SHARED_DATA

SQUAD_DATA = SHARED_DATA / "squad"
needs_squad_data = pytest.mark.skipif(not SQUAD_DATA.is_dir(), reason=f"{SQUAD_DATA} is absent")

CONTEXT = "Denver Broncos won Super Bowl 50."


def _write(tmp_path: Path, document: object, name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _squad_file(tmp_path: Path, questions: list, version: str = "1.1") -> Path:
    paragraph = {"context": CONTEXT, "qas": questions}
    document = {"data": [{"title": "Super_Bowl", "paragraphs": [paragraph]}], "version": version}
    return _write(tmp_path, document)


def _question(question_id: str, *answers: tuple[str, int], **extra: object) -> dict:
    answer_objects = [{"text": text, "answer_start": start} for text, start in answers]
    return {"id": question_id, "question": "?", "answers": answer_objects, **extra}


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("  Denver\tBroncos \n", "denver broncos"),
        # Punctuation goes before the articles, so "a-ok" becomes one word and "the" stands alone.
        ("The Theater's A-OK!", "theaters aok"),
        ("an apple, a banana", "apple banana"),
        ("theater another atheist banana", "theater another atheist banana"),
        ("the-end", "theend"),
        ("(the) end", "end"),
        ("1914-1918", "19141918"),
        # string.punctuation is ASCII only: the official script keeps unicode punctuation.
        ("“The Eagles”", "“ eagles”"),
        ("Beyoncé’s rock ‘n’ roll", "beyoncé’s rock ‘n’ roll"),
        ("Beyoncé's", "beyoncés"),
        ("1914—1918", "1914—1918"),
        ("a, an & the!", ""),
        ("...", ""),
        ("", ""),
    ],
)
def test_normalize_answer_follows_the_official_rules(text, normalized):
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("The Broncos!", "broncos", 1.0),
        ("broncos denver", "Denver Broncos", 0.0),
        ("“Broncos”", "Broncos", 0.0),
        ("", "the", 1.0),
    ],
)
def test_exact_match(prediction, truth, expected):
    assert exact_match(prediction, truth) == expected


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("Denver Broncos", "broncos", 2 / 3),  # precision 1/2, recall 1
        ("broncos denver", "Denver Broncos", 1.0),  # a bag of tokens: order does not count
        ("cat cat cat", "cat dog", 0.4),  # one common "cat": precision 1/3, recall 1/2
        ("new york new york", "New York", 2 / 3),  # common = min counts = 2 tokens: precision 2/4, recall 1
        ("“Broncos”", "Broncos", 0.0),
        ("", "", 0.0),  # v1.1: no common token, even when both are empty
        ("the", "a", 0.0),
        ("", "Broncos", 0.0),
    ],
)
def test_f1_v1(prediction, truth, expected):
    assert f1(prediction, truth) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("", "", 1.0),
        ("the", "", 1.0),
        ("", "Broncos", 0.0),
        ("Broncos", "", 0.0),
        ("Denver Broncos", "broncos", 2 / 3),
    ],
)
def test_f1_v2_scores_two_empty_texts_one(prediction, truth, expected):
    assert f1(prediction, truth, squad_v2=True) == pytest.approx(expected, abs=1e-15)


def test_score_takes_the_max_over_truths_and_counts_missing_questions():
    examples = [
        SquadExample("q1", ("Denver Broncos", "Broncos")),
        ("q2", ["Santa Clara, California"]),
        SquadExample("q3", ("gold",)),
        # EM and F1 take their max separately: "The" matches "a" exactly (both normalize to ""), F1 is 0.
        SquadExample("q4", ("a", "dog")),
    ]
    predictions = {"q1": "the Broncos", "q2": "Santa Clara", "q4": "The", "not-in-dataset": "x"}
    # EM 1 + 0 + 0 + 1 = 2 of 4; F1 1 + 0.8 (precision 1, recall 2/3) + 0 + 0 = 1.8 of 4.
    assert score(examples, predictions) == SquadScore(exact_match=50.0, f1=45.0, total=4, missing=1)


def test_score_v2_uses_an_empty_truth_for_unanswerable_questions():
    examples = [
        SquadExample("answered", ("Broncos",)),
        SquadExample("unanswerable", ()),
        SquadExample("wrongly answered", ()),
        # v2.0 drops truths that normalize to "", so "..." cannot be matched by an empty prediction.
        SquadExample("punctuation truth", ("...", "Gold")),
        SquadExample("missing", ()),
    ]
    predictions = {"answered": "Broncos", "unanswerable": "", "wrongly answered": "Denver"}
    predictions["punctuation truth"] = ""
    assert score(examples, predictions, squad_v2=True) == SquadScore(40.0, 40.0, total=5, missing=1)


def test_score_rejects_unanswerable_questions_in_v1_and_an_empty_dataset():
    message = "question q2 has no answers, which only SQuAD v2 allows; pass --squad-v2"
    with pytest.raises(HwError, match=f"^{message}$"):
        score([SquadExample("q2", ())], {"q2": ""})
    with pytest.raises(HwError, match="^cannot score SQuAD predictions against 0 questions"):
        score([], {})


def test_load_dataset_file_reads_every_question(tmp_path):
    questions = [_question("q1", ("Denver Broncos", 0), ("Broncos", 7)), _question("q2", ("50", 30))]
    expected = [SquadExample("q1", ("Denver Broncos", "Broncos")), SquadExample("q2", ("50",))]
    assert load_dataset_file(_squad_file(tmp_path, questions)) == expected


def test_load_dataset_file_rejects_a_misplaced_answer(tmp_path):
    path = _squad_file(tmp_path, [_question("q1", ("Broncos", 0))])
    message = (
        f"SQuAD data file {path}: question q1 has answer 'Broncos' at answer_start 0, "
        "but the context holds 'Denver ' there; fix answer_start or the answer text"
    )
    with pytest.raises(HwError, match=f"^{re.escape(message)}$"):
        load_dataset_file(path)


@pytest.mark.parametrize(
    ("document", "where", "found"),
    [
        ([], "the top level should be a JSON object", "a JSON array"),
        ({"version": "1.1"}, "data should be a JSON array", "nothing"),
        (
            {"data": [{"paragraphs": [{"qas": []}]}]},
            "data[0].paragraphs[0].context should be a JSON string",
            "nothing",
        ),
        (
            {"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "q1", "answers": []}, {"id": 7}]}]}]},
            "data[0].paragraphs[0].qas[1].id should be a JSON string",
            "a JSON number",
        ),
        (
            {"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "q", "answers": [{"text": "x"}]}]}]}]},
            "data[0].paragraphs[0].qas[0].answers[0].answer_start should be a JSON number",
            "nothing",
        ),
    ],
)
def test_load_dataset_file_names_the_json_path_of_a_layout_error(tmp_path, document, where, found):
    path = _write(tmp_path, document)
    message = f"SQuAD data file {path} has the wrong layout: {where}, found {found}; the official layout is "
    with pytest.raises(HwError, match=f"^{re.escape(message)}" + re.escape('{"data": [{"paragraphs"')):
        load_dataset_file(path, squad_v2=True)


def test_load_dataset_file_rejects_missing_and_invalid_files(tmp_path):
    absent = tmp_path / "absent.json"
    message = f"SQuAD data file {absent} does not exist or is not a file; check the path"
    with pytest.raises(HwError, match=f"^{re.escape(message)}$"):
        load_dataset_file(absent)
    (tmp_path / "broken.json").write_text('{"data": [', encoding="utf-8")
    with pytest.raises(HwError, match=r"broken.json is not valid JSON \(Expecting value: line 1 column 11"):
        load_dataset_file(tmp_path / "broken.json")


@pytest.mark.parametrize(
    ("questions", "version", "reason"),
    [
        ([_question("q1", ("Broncos", 7))], "v2.0", "is version v2.0, a SQuAD v2 file"),
        (
            [_question("q1", ("Broncos", 7)), _question("q2")],
            "1.1",
            "is a SQuAD v2 file: question q2 is unanswerable",
        ),
        ([_question("q3", is_impossible=True)], "1.1", "is a SQuAD v2 file: question q3 is unanswerable"),
    ],
)
def test_load_dataset_file_asks_for_squad_v2(tmp_path, questions, version, reason):
    path = _squad_file(tmp_path, questions, version=version)
    with pytest.raises(HwError, match=f"^SQuAD data file {re.escape(str(path))} {reason}; pass --squad-v2"):
        load_dataset_file(path)
    assert load_dataset_file(path, squad_v2=True)[-1].answers in {("Broncos",), ()}


def test_load_predictions_file_wants_an_object_of_strings(tmp_path):
    assert load_predictions_file(_write(tmp_path, {"q1": "Broncos"})) == {"q1": "Broncos"}
    wrong = [(["x"], "got a JSON array"), ({"q1": "x", "q2": 50}, "the value for 'q2' is a JSON number")]
    for document, found in wrong:
        path = _write(tmp_path, document, "predictions.json")
        message = f"predictions file {path} is not a JSON object of question id → answer text ({found}); "
        message += 'write it as {"<question id>": "<answer text>", ...}'
        with pytest.raises(HwError, match=f"^{re.escape(message)}$"):
            load_predictions_file(path)


def test_score_files_counts_and_logs_missing_predictions(tmp_path, caplog):
    data = _squad_file(tmp_path, [_question("q1", ("Broncos", 7)), _question("q2", ("50", 30))])
    predictions = _write(tmp_path, {"q1": "broncos"}, "predictions.json")
    with caplog.at_level(logging.WARNING):
        result = score_files(data, predictions)
    assert result == {"exact_match": 50.0, "f1": 50.0, "total": 2, "missing": 1}
    assert f"1 of 2 questions have no prediction in {predictions} (first: q2); they score 0" in caplog.text


@needs_squad_data
@pytest.mark.parametrize(
    ("predictions", "expected_exact_match", "expected_f1"),
    [
        ("predictions_bert_ensemble_on_subset.json", 87.44104, 91.80789),
        ("predictions_logistic_regression_baseline_on_subset.json", 38.62028, 47.72626),
    ],
)
def test_score_files_reproduces_the_official_scores_of_leaderboard_predictions(
    predictions, expected_exact_match, expected_f1
):
    result = score_files(SQUAD_DATA / "squad_v1.1_dev_subset_5articles.json", SQUAD_DATA / predictions)
    assert result["total"] == 1696
    assert result["missing"] == 0
    assert result["exact_match"] == pytest.approx(expected_exact_match, abs=5e-6)
    assert result["f1"] == pytest.approx(expected_f1, abs=5e-6)
