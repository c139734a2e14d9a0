"""Which process writes, and what a killed run leaves behind: `hw.runs` outside a real distributed launch."""

import os
from pathlib import Path

import pytest

from hw import runs


def test_only_the_main_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    runs.write_json(tmp_path / "metrics.json", {"final": {}})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    runs.write_json(tmp_path / "metrics.json", {"final": {}})
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_one_process_does_all_the_work_in_order_and_agrees_with_itself() -> None:
    assert runs.world_size() == 1 and runs.is_main_process()
    assert runs.spread(lambda batch: [text.upper() for text in batch], [["a", "b"], ["c"]]) == [
        ["A", "B"],
        ["C"],
    ]
    assert runs.agreed("yelp-20261124-130734") == "yelp-20261124-130734"
    with runs.main_process_first():
        pass


def test_alone_hides_the_launcher_and_gives_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    launched = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    for name, value in launched.items():
        monkeypatch.setenv(name, value)
    with runs.alone():
        assert not set(launched) & set(os.environ)
        assert runs.world_size() == 1
    assert {name: os.environ[name] for name in launched} == launched


def test_a_resumed_run_loses_the_unfinished_writes_of_the_killed_one(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / ".metrics.json.x1y2.partial").write_text('{"final": ')
    (tmp_path / "checkpoints" / ".trainer_state.json.a.partial").write_text("{")
    (tmp_path / "samples.jsonl").write_text("{}\n")
    runs.prepare(tmp_path)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == [
        "checkpoints",
        "samples.jsonl",
    ]


def test_an_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    runs.write_text(tmp_path / "results.txt", "1. 秦川雄帝宅\n")
    assert [path.name for path in tmp_path.iterdir()] == ["results.txt"]
