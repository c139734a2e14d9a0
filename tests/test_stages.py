"""Cached pipeline stages: built once per key, rebuilt on a new key or when forced, never half-written."""

import dataclasses
import json
import re
from typing import ClassVar

import pytest

from hw import stages


@dataclasses.dataclass(frozen=True)
class Inputs:
    k: float
    names: tuple[str, ...] = ()


def _build(calls: list[str], text: str):
    def build(folder):
        calls.append(text)
        (folder / "out.txt").write_text(text)

    return build


def test_a_stage_is_built_once_per_key_and_forced_on_demand(tmp_path):
    calls: list[str] = []
    first = stages.run_stage(tmp_path, "pairs", Inputs(1), _build(calls, "a"))
    again = stages.run_stage(tmp_path, "pairs", Inputs(1), _build(calls, "b"))
    assert (first.computed, again.computed, calls) == (True, False, ["a"])
    assert (tmp_path / "pairs" / "out.txt").read_text() == "a" and again.key == first.key
    changed = stages.run_stage(tmp_path, "pairs", Inputs(2), _build(calls, "c"))
    forced = stages.run_stage(tmp_path, "pairs", Inputs(2), _build(calls, "d"), force=True)
    assert (changed.computed, forced.computed, calls) == (True, True, ["a", "c", "d"])
    assert (tmp_path / "pairs" / "out.txt").read_text() == "d"
    marker = json.loads((tmp_path / "pairs" / "stage.json").read_text())
    assert (marker["key"], marker["inputs"]) == (
        stages.stage_key(Inputs(2)),
        {"type": "Inputs", "version": 1, "fields": {"k": 2, "names": []}},
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs"]  # no partial or old folder left


def test_a_killed_build_leaves_the_old_outputs_and_its_partial_work(tmp_path):
    stages.run_stage(tmp_path, "pairs", Inputs(1), _build([], "a"))

    def killed(folder):
        (folder / "checkpoint").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stages.run_stage(tmp_path, "pairs", Inputs(2), killed)
    assert (tmp_path / "pairs" / "out.txt").read_text() == "a"  # still the complete old stage
    assert not stages.cached(tmp_path, "pairs", stages.stage_key(Inputs(2)))
    partial = tmp_path / f".pairs-{stages.stage_key(Inputs(2))}.partial"
    assert (partial / "checkpoint").read_text() == "half"  # a resumed build finds it


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (
            lambda path: path.write_text('{"text": "a truncat'),
            r"transcripts\.jsonl has 19 bytes where it had 25",
        ),
        (lambda path: path.write_text('{"text": "a whole lime"}\n'), r"transcripts\.jsonl changed since"),
        (lambda path: path.unlink(), r"transcripts\.jsonl is missing"),
        (
            lambda path: (path.parent / "stage.json").write_text('{"format": 2, "ke'),
            r"stage\.json is damaged",
        ),
    ],
    ids=["truncated", "altered", "deleted", "marker"],
)
def test_a_damaged_stage_is_recomputed_with_one_warning_naming_it(tmp_path, caplog, damage, found):
    def build(folder):
        (folder / "transcripts.jsonl").write_text('{"text": "a whole line"}\n')  # 25 bytes
        (folder / "big.bin").write_bytes(bytes(stages._HASHED_BELOW))  # its size alone is recorded

    stages.run_stage(tmp_path, "transcripts", Inputs(1), build)
    marker = json.loads((tmp_path / "transcripts" / stages.MARKER).read_text())
    assert marker["files"]["big.bin"] == {"size": stages._HASHED_BELOW}
    assert marker["files"]["transcripts.jsonl"]["size"] == 25
    assert stages.run_stage(tmp_path, "transcripts", Inputs(1), build).computed is False
    damage(tmp_path / "transcripts" / "transcripts.jsonl")
    caplog.clear()
    assert stages.run_stage(tmp_path, "transcripts", Inputs(1), build).computed
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and re.search(found, warnings[0]) and "stage transcripts: " in warnings[0]
    assert (tmp_path / "transcripts" / "transcripts.jsonl").read_text() == '{"text": "a whole line"}\n'


def test_key_is_every_field_the_type_and_its_version():
    assert stages.stage_key(Inputs(1)) == stages.stage_key(Inputs(1))
    assert stages.stage_key(Inputs(1)) != stages.stage_key(Inputs(1.5))
    assert stages.stage_key(Inputs(1)) != stages.stage_key(Inputs(1, ("a",)))

    @dataclasses.dataclass(frozen=True)
    class Other:
        k: float
        names: tuple[str, ...] = ()

    @dataclasses.dataclass(frozen=True)
    class Inputs2(Inputs):
        VERSION: ClassVar[int] = 2  # the stage now writes its outputs in another shape

    assert stages.stage_key(Other(1)) != stages.stage_key(Inputs(1))
    assert stages.describe(Inputs2(1))["version"] == 2
    with pytest.raises(AssertionError, match="a frozen dataclass"):
        stages.stage_key({"k": 1})


def test_a_stage_written_in_the_old_format_is_recomputed_not_read(tmp_path):
    # hw before format 2 keyed a stage by a hash of a hand-kept dict and wrote no `format`. Even a marker
    # whose key happens to equal today's is not trusted.
    old = tmp_path / "pairs"
    old.mkdir()
    (old / "out.txt").write_text("old")
    for key in (stages.stage_key(Inputs(1)), "0123456789abcdef"):
        marker = {"name": "pairs", "key": key, "inputs": {"k": 1, "rows": 2}, "seconds": 1.0, "finished": 0}
        (old / stages.MARKER).write_text(json.dumps(marker))
        assert not stages.cached(tmp_path, "pairs", stages.stage_key(Inputs(1)))
    result = stages.run_stage(tmp_path, "pairs", Inputs(1), _build([], "new"))
    assert result.computed and (old / "out.txt").read_text() == "new"
    assert json.loads((old / stages.MARKER).read_text())["format"] == stages.FORMAT


@dataclasses.dataclass(frozen=True)
class Seeded:
    seed: int


def test_a_stage_draws_from_its_own_seed_whatever_ran_before_it(tmp_path):
    import torch

    drawn: dict[str, list[float]] = {}

    def draw(name):
        def build(folder):
            drawn[name] = torch.rand(3).tolist()  # what a LoRA init or a dropout mask draws

        return build

    torch.manual_seed(123)
    stages.run_stage(tmp_path, "a", Seeded(7), draw("a"))
    torch.rand(100)  # an earlier stage of this process drew from the global generator
    stages.run_stage(tmp_path, "b", Seeded(7), draw("b"))
    stages.run_stage(tmp_path, "c", Seeded(8), draw("c"))
    stages.run_stage(tmp_path, "d", Inputs(1), draw("d"))
    torch.rand(5)
    stages.run_stage(tmp_path, "e", Inputs(2), draw("e"))
    assert drawn["a"] == drawn["b"] != drawn["c"]
    assert drawn["d"] == drawn["e"]  # an input without a seed starts from 0
    assert stages.stage_seed(Seeded(7)) == 7 and stages.stage_seed(Inputs(1)) == 0
