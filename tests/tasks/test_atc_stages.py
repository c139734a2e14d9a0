"""`hw atc` stage keys: every field a stage reads is in its key, a change recomputes that stage and the stages
after it only, and a setting no stage reads recomputes nothing (pure key computation, no stage runs)."""

import dataclasses
from typing import Any

import pytest

from hw import config, stages
from hw.tasks import atc

# Settings of how a run is invoked that change no stage's outputs (`run.checkpoint` is read with --eval-only).
READ_BY_NO_STAGE = {"run.homework", "run.variant", "run.tiny", "run.checkpoint", "run.resume", "run.label", "stages.only",
                    "stages.start"}  # fmt: skip


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every leaf of nested dataclasses, into lists of dataclasses by position."""
    if dataclasses.is_dataclass(value):
        return [leaf for spec in dataclasses.fields(value) for leaf in _leaves(getattr(value, spec.name), (*path, spec.name))]  # fmt: skip
    if isinstance(value, list | tuple) and value and all(dataclasses.is_dataclass(item) for item in value):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, (*path, index))]
    return [path]


def _changed(value: Any) -> Any:
    """Another value of the same kind (`None` becomes a string: the key sees any change)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list | tuple):
        return type(value)([*value, "x"])
    if isinstance(value, dict):
        return {**value, "x": 1.0}
    assert value is None, value
    return "x"


def _replaced(value: Any, path: tuple) -> Any:
    """`value` with the leaf at `path` changed, through `dataclasses.replace`."""
    if not path:
        return _changed(value)
    head, *rest = path
    if isinstance(head, int):
        items = list(value)
        items[head] = _replaced(items[head], tuple(rest))
        return type(value)(items)
    return dataclasses.replace(value, **{head: _replaced(getattr(value, head), tuple(rest))})


def _keys(cfg: atc.AtcConfig) -> dict[str, str]:
    """The key of every stage the run would run, as `run` computes them (checkpoints taken as resolved)."""
    inputs = atc.stage_inputs(cfg, cfg.run.checkpoint, cfg.corrector.checkpoint)
    return {name: stages.stage_key(stage_input) for name, stage_input in inputs.items()}


def _recomputed(cfg: atc.AtcConfig, path: tuple) -> list[str]:
    """The stages whose outputs a change at `path` does not let the run read back (new key, or new stage)."""
    before, after = _keys(cfg), _keys(_replaced(cfg, path))
    return [name for name in atc.STAGES if name in after and after[name] != before.get(name)]


def _dotted(path: tuple) -> str:
    return ".".join(str(part) for part in path)


CONFIGS = {
    "full run": config.load(atc.AtcConfig, "atc", run={"tiny": True}),
    "eval-only with both checkpoints": config.load(
        atc.AtcConfig,
        "atc",
        overrides=["corrector.checkpoint=runs/llm"],
        run={"tiny": True, "eval_only": True, "checkpoint": "runs/asr"},
    ),  # fmt: skip
    "packaged defaults": config.load(atc.AtcConfig, "atc"),
}


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_field_of_a_stage_input_is_in_its_key(cfg) -> None:
    for name, stage_input in atc.stage_inputs(cfg, cfg.run.checkpoint, cfg.corrector.checkpoint).items():
        key = stages.stage_key(stage_input)
        for path in _leaves(stage_input):
            assert stages.stage_key(_replaced(stage_input, path)) != key, (name, path)


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_setting_recomputes_the_stages_that_read_it_and_every_later_one(cfg) -> None:
    for path in _leaves(cfg):
        recomputed = _recomputed(cfg, path)
        if not cfg.run.eval_only:  # which scores without training: the training settings are read by no stage
            assert bool(recomputed) != (_dotted(path) in READ_BY_NO_STAGE), _dotted(path)
        after = atc.stage_inputs(_replaced(cfg, path), cfg.run.checkpoint, cfg.corrector.checkpoint)
        keys = {name: stages.stage_key(stage_input) for name, stage_input in after.items()}
        for name in recomputed:  # a stage that reads a recomputed one through its key is recomputed too
            readers = [
                later
                for later, stage_input in after.items()
                if keys[name] in str(stages.describe(stage_input))
            ]
            assert set(readers) <= set(recomputed), (_dotted(path), name, readers)  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "recomputed"),
    [
        (("train", "learning_rate"), ["asr_train", "transcribe", "correct", "score"]),
        (("train", "precision"), list(atc.STAGES)),  # training, and the ASR's inference
        (("asr", "target_text"), ["asr_train", "transcribe", "correct", "score"]),
        (("asr", "batch_size"), list(atc.STAGES)),  # validation transcripts during training, then inference
        (("data", "max_train_samples"), list(atc.STAGES)),
        (("data", "validation_split"), ["asr_train", "transcribe", "correct", "score"]),
        (("data", "max_eval_samples"), ["transcribe", "correct", "score"]),
        (("data", "eval_sets", 1, "dataset"), ["transcribe", "correct", "score"]),
        (("corrector", "lora", "r"), ["corrector_train", "correct", "score"]),
        (("corrector", "cutoff_len"), ["corrector_train", "correct", "score"]),
        (("corrector", "rag_k"), ["correct", "score"]),
        (("corrector", "base_prompt"), ["correct", "score"]),
        (
            ("eval", "normalizer"),
            ["asr_train", "transcribe", "correct", "score"],
        ),  # validation WER picks the best
        (("matrix_reference", 0, "source"), ["score"]),
        (("run", "resume"), []),
        (("stages", "start"), []),
    ],
)
def test_hand_worked_settings_on_the_tiny_run(setting, recomputed) -> None:
    assert _recomputed(CONFIGS["full run"], setting) == recomputed


def test_the_training_stages_start_from_their_own_seed_and_the_others_from_zero() -> None:
    cfg = config.load(
        atc.AtcConfig, "atc", overrides=["train.seed=5", "corrector.train.seed=6"], run={"tiny": True}
    )
    seeds = {
        name: stages.stage_seed(stage_input)
        for name, stage_input in atc.stage_inputs(cfg, None, None).items()
    }
    assert seeds == {
        "asr_train": 5,
        "transcribe": 0,
        "pairs": 0,
        "corrector_train": 6,
        "correct": 0,
        "score": 0,
    }
    assert _recomputed(cfg, ("corrector", "train", "seed")) == ["corrector_train", "correct", "score"]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ({"tiny": True}, ["asr_train", "transcribe", "score"]),
        ({"tiny": True, "eval_only": True}, ["transcribe", "score"]),
    ],
)
def test_without_a_corrector_only_the_asr_stages_and_the_score_run(run, expected) -> None:
    cfg = config.load(atc.AtcConfig, "atc", overrides=["corrector=null"], run=run)
    inputs = atc.stage_inputs(cfg, None, None)
    assert list(inputs) == expected
    assert inputs["score"].corrections is None
    with_corrector = atc.stage_inputs(config.load(atc.AtcConfig, "atc", run=run), None, None)
    assert stages.stage_key(inputs["transcribe"]) == stages.stage_key(with_corrector["transcribe"])
