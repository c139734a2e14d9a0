"""Cached pipeline stages: built once per key, rebuilt on a new key or when forced, never half-written."""

import json

import pytest

from hw import stages


def _build(calls: list[str], text: str):
    def build(folder):
        calls.append(text)
        (folder / "out.txt").write_text(text)

    return build


def test_a_stage_is_built_once_per_key_and_forced_on_demand(tmp_path):
    calls: list[str] = []
    first = stages.run_stage(tmp_path, "pairs", {"k": 1}, _build(calls, "a"))
    again = stages.run_stage(tmp_path, "pairs", {"k": 1}, _build(calls, "b"))
    assert (first.computed, again.computed, calls) == (True, False, ["a"])
    assert (tmp_path / "pairs" / "out.txt").read_text() == "a" and again.key == first.key
    changed = stages.run_stage(tmp_path, "pairs", {"k": 2}, _build(calls, "c"))
    forced = stages.run_stage(tmp_path, "pairs", {"k": 2}, _build(calls, "d"), force=True)
    assert (changed.computed, forced.computed, calls) == (True, True, ["a", "c", "d"])
    assert (tmp_path / "pairs" / "out.txt").read_text() == "d"
    marker = json.loads((tmp_path / "pairs" / "stage.json").read_text())
    assert (marker["key"], marker["inputs"]) == (stages.stage_key({"k": 2}), {"k": 2})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs"]  # no partial or old folder left


def test_a_killed_build_leaves_the_old_outputs_and_its_partial_work(tmp_path):
    stages.run_stage(tmp_path, "pairs", {"k": 1}, _build([], "a"))

    def killed(folder):
        (folder / "checkpoint").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stages.run_stage(tmp_path, "pairs", {"k": 2}, killed)
    assert (tmp_path / "pairs" / "out.txt").read_text() == "a"  # still the complete old stage
    assert not stages.cached(tmp_path, "pairs", stages.stage_key({"k": 2}))
    partial = tmp_path / f".pairs-{stages.stage_key({'k': 2})}.partial"
    assert (partial / "checkpoint").read_text() == "half"  # a resumed build finds it


def test_key_ignores_dict_order_but_not_values():
    assert stages.stage_key({"a": 1, "b": [1, 2]}) == stages.stage_key({"b": [1, 2], "a": 1})
    assert stages.stage_key({"a": 1}) != stages.stage_key({"a": 1.5})
