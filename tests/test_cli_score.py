import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hw.cli import app
from tests.shared_data import SHARED_DATA

SQUAD_DATA = SHARED_DATA / "squad"
CONTEXT = "Denver Broncos won Super Bowl 50."


def _write(tmp_path: Path, name: str, document: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def _squad(tmp_path: Path, answers: list[dict], version: str = "1.1", **extra: object) -> str:
    question = {"id": "q1", "question": "Who won?", "answers": answers, **extra}
    paragraph = {"context": CONTEXT, "qas": [question]}
    return _write(
        tmp_path, "data.json", {"version": version, "data": [{"title": "SB", "paragraphs": [paragraph]}]}
    )


def _score(*arguments: str):
    return CliRunner().invoke(app, ["score", "squad", *arguments])


def _one_line_error(result) -> str:
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hw: error: "), result.stderr
    return lines[0]


def test_json_output_and_the_human_summary(tmp_path):
    data = _squad(tmp_path, [{"text": "Denver Broncos", "answer_start": 0}])
    predictions = _write(tmp_path, "predictions.json", {"q1": "the Denver Broncos!"})
    result = _score(data, predictions, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"exact_match": 100.0, "f1": 100.0, "total": 1, "missing": 0}
    empty = _write(tmp_path, "empty.json", {})
    result = _score(data, empty)
    assert result.stdout == "exact match 0.00 · F1 0.00 on 1 questions (1 without a prediction, scored 0)\n"


def test_answer_start_that_does_not_match_the_text(tmp_path):
    data = _squad(tmp_path, [{"text": "Denver Broncos", "answer_start": 3}])
    predictions = _write(tmp_path, "predictions.json", {"q1": "Denver Broncos"})
    line = _one_line_error(_score(data, predictions))
    assert (
        "question q1 has answer 'Denver Broncos' at answer_start 3, but the context holds 'ver Broncos wo'"
        in line
    )


def test_predictions_file_that_is_not_a_json_object(tmp_path):
    data = _squad(tmp_path, [{"text": "Denver Broncos", "answer_start": 0}])
    predictions = _write(tmp_path, "predictions.json", ["Denver Broncos"])
    line = _one_line_error(_score(data, predictions))
    assert "is not a JSON object of question id → answer text (got a JSON array)" in line


def test_squad_v2_file_needs_the_flag(tmp_path):
    data = _squad(tmp_path, [], version="v2.0", is_impossible=True)
    predictions = _write(tmp_path, "predictions.json", {"q1": ""})
    line = _one_line_error(_score(data, predictions))
    assert line.endswith("is version v2.0, a SQuAD v2 file; pass --squad-v2 to score it")
    result = _score(data, predictions, "--squad-v2", "--json")
    assert json.loads(result.stdout) == {"exact_match": 100.0, "f1": 100.0, "total": 1, "missing": 0}


@pytest.mark.skipif(not SQUAD_DATA.is_dir(), reason=f"{SQUAD_DATA} is absent (set HW_SHARED_DATA)")
def test_real_bert_ensemble_predictions_score_as_the_official_script():
    data = SQUAD_DATA / "squad_v1.1_dev_subset_5articles.json"
    predictions = SQUAD_DATA / "predictions_bert_ensemble_on_subset.json"
    result = _score(str(data), str(predictions), "--json")
    assert result.exit_code == 0
    scores = json.loads(result.stdout)
    assert (round(scores["exact_match"], 5), round(scores["f1"], 5)) == (87.44104, 91.80789)
    assert (scores["total"], scores["missing"]) == (1696, 0)
