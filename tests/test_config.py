"""Config loading: every packaged YAML validates; problems are all reported, with suggestions."""

import importlib
import json
from pathlib import Path

import pytest

from hw import config
from hw.cli import HOMEWORKS
from hw.errors import ConfigError, HwError


def _schema(homework: str) -> type:
    return getattr(importlib.import_module(f"hw.tasks.{homework}"), HOMEWORKS[homework][2])


@pytest.mark.parametrize("tiny", [False, True])
@pytest.mark.parametrize(
    ("homework", "variant"), [(hw, variant) for hw in HOMEWORKS for variant in config.variants(hw)]
)
def test_every_packaged_config_validates(homework: str, variant: str, tiny: bool) -> None:
    cfg = config.load(_schema(homework), homework, variant, run={"tiny": tiny})
    assert cfg.run.variant == variant
    assert cfg.reference, "every packaged config shows the course's reference numbers"
    assert cfg.model.name_or_path.startswith("tiny:") == tiny


def test_yelp_defaults_reproduce_the_course_notebook() -> None:
    cfg = config.load(_schema("yelp"), "yelp")
    assert (cfg.model.name_or_path, cfg.data.dataset) == ("bert-base-cased", "yelp_review_full")
    assert (cfg.data.max_train_samples, cfg.data.max_eval_samples, cfg.data.shuffle_seed) == (1000, 1000, 42)
    assert (cfg.train.learning_rate, cfg.train.per_device_train_batch_size, cfg.train.num_train_epochs) == (
        5e-5,
        16,
        3,
    )
    assert len(cfg.data.label_names) == 5


def test_unknown_key_gets_a_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"train\.lerning_rate: unknown key; did you mean train\.learning_rate\?"
    ):
        config.load(_schema("yelp"), "yelp", overrides=["train.lerning_rate=1e-4"])


def test_several_bad_values_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(
            _schema("yelp"),
            "yelp",
            overrides=[
                "train.learning_rate=-1",
                "train.per_device_train_batch_size=many",
                "data.padding=always",
            ],
        )
    problems = caught.value.problems
    assert len(problems) == 3
    assert "train.per_device_train_batch_size: expected int, got 'many'" in problems
    assert "data.padding: 'always' is not one of 'dynamic', 'max_length'" in problems
    assert (
        "train.learning_rate: -1.0 must be between 0 and 1" in problems
    )  # checked despite its neighbour's type error
    assert len(str(caught.value).splitlines()) == 1


def test_range_problems_of_separate_groups_are_all_listed() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(_schema("yelp"), "yelp", overrides=["train.learning_rate=-1", "data.max_length=0"])
    assert caught.value.problems == [
        "data.max_length: 0 must be at least 1",
        "train.learning_rate: -1.0 must be between 0 and 1",
    ]


def test_precedence_file_then_set(tmp_path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text("train:\n  learning_rate: 1.0e-4\n  num_train_epochs: 1\n")
    cfg = config.load(_schema("yelp"), "yelp", config_file=user, overrides=["train.num_train_epochs=2"])
    assert (cfg.train.learning_rate, cfg.train.num_train_epochs) == (1e-4, 2)


def test_set_values_are_parsed_as_yaml() -> None:
    cfg = config.load(
        _schema("yelp"),
        "yelp",
        variant="imdb-lora",
        overrides=["lora.target_modules=[q_lin, v_lin]", "lora.r=16"],
    )
    assert cfg.lora.target_modules == ["q_lin", "v_lin"] and cfg.lora.r == 16


def test_a_group_set_to_null_is_named_without_a_trailing_dot() -> None:
    with pytest.raises(ConfigError) as raised:
        config.load(_schema("yelp"), "yelp", overrides=["train=null"])
    assert raised.value.problems == ["train: expected a mapping, got None"]


def test_malformed_yaml_is_one_line(tmp_path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(
        HwError,
        match=r"is not valid YAML at line 2 \(expected ',' or '\]', but got '<stream end>'\); fix the syntax and retry",
    ):
        config.load(_schema("yelp"), "yelp", config_file=broken)


def test_unknown_variant_lists_the_packaged_ones() -> None:
    with pytest.raises(
        HwError, match=r"unknown variant 'nope' for hw yelp; choose one of: yelp, imdb-lora, yelp-full"
    ):
        config.load(_schema("yelp"), "yelp", "nope")


def test_override_without_equals_sign() -> None:
    with pytest.raises(HwError, match=r"--set expects KEY=VALUE, got 'train.seed'"):
        config.load(_schema("yelp"), "yelp", overrides=["train.seed"])


def test_yaml_no_is_read_as_the_word_where_a_choice_is_expected() -> None:
    cfg = config.load(_schema("yelp"), "yelp", overrides=["train.eval_strategy=no"])
    assert cfg.train.eval_strategy == "no"


def test_eval_steps_may_be_a_fraction_of_training(tmp_path) -> None:
    from hw.training import training_arguments

    cfg = config.load(_schema("whisper"), "whisper", "zh")
    assert cfg.train.eval_steps == 0.2  # five validation losses on the course subset and on all data alike
    arguments = training_arguments(cfg.train, tmp_path)
    assert (arguments.eval_steps, arguments.save_steps) == (0.2, 0.2)
    with pytest.raises(ConfigError, match=r"eval_steps: 1\.5 must be a whole number of steps or a fraction"):
        config.load(_schema("whisper"), "whisper", "zh", overrides=["train.eval_steps=1.5"])


def test_dataset_and_data_path_fields_convert_and_dump_as_plain_strings() -> None:
    import yaml

    yelp = config.load(_schema("yelp"), "yelp", overrides=["data.dataset=./reviews"])
    tang = config.load(_schema("tang"), "tang", overrides=["data.directory=~/poems"])

    assert (type(yelp.data.dataset), type(tang.data.directory)) == (str, str)
    assert yaml.safe_load(yaml.safe_dump(config.to_dict(yelp)))["data"]["dataset"] == "./reviews"
    with pytest.raises(ConfigError, match=r"data\.train_file: expected str, got 7"):
        config.load(_schema("tang"), "tang", overrides=["data.train_file=7"])


@pytest.mark.parametrize(
    ("overrides", "user_yaml", "expected"),
    [
        (["run.variant=imdb-lora"], None, r"run\.variant='imdb-lora' \(the command line gives 'yelp'\)"),
        ([], "run:\n  tiny: true\n", r"run\.tiny=True \(the command line gives False\)"),
        (["run.epochs=3"], None, r"run\.epochs=3: run options are set by flags"),
        (["run=fast"], None, r"run\.='fast': run options are set by flags"),
    ],
)
def test_run_options_from_set_or_config_are_refused_unless_the_flags_agree(
    tmp_path, overrides: list[str], user_yaml: str | None, expected: str
) -> None:
    """They were replaced by the flags' values without a word: --set run.variant=imdb-lora trained yelp."""
    user = None
    if user_yaml is not None:
        user = tmp_path / "mine.yaml"
        user.write_text(user_yaml)
    with pytest.raises(HwError, match=expected + r".*pass the flag, or drop the key"):
        config.load(_schema("yelp"), "yelp", config_file=user, overrides=overrides, run={"tiny": False})


def test_a_saved_config_yaml_with_its_run_block_loads_again(tmp_path) -> None:
    """A run's config.yaml holds its `run:` block: given back with the same flags, it is the same config."""
    import yaml

    cfg = config.load(_schema("yelp"), "yelp", "imdb-lora", run={"tiny": True})
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(config.to_dict(cfg)))
    assert config.load(_schema("yelp"), "yelp", "imdb-lora", config_file=saved, run={"tiny": True}) == cfg
    with pytest.raises(HwError, match=r"run\.tiny=True \(the command line gives False\)"):
        config.load(_schema("yelp"), "yelp", "imdb-lora", config_file=saved)


def _adapter(folder: Path, base: str) -> Path:
    """A PEFT adapter folder as `save_pretrained` writes it (its config only: loading is not tested here)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": base}), encoding="utf-8"
    )
    return folder


def test_an_adapter_checkpoint_brings_the_base_it_was_trained_on(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _adapter(run / "model", "/abs/copy/of/base")  # the adapter's own record, read only without config.yaml
    (run / "config.yaml").write_text(
        "model: {name_or_path: bases/whisper-base, revision: v1}\n", encoding="utf-8"
    )
    whisper = _schema("whisper")

    def base(checkpoint: Path, **choices: object) -> tuple[str, str]:
        options = {"eval_only": True, "checkpoint": str(checkpoint)}
        model = config.load(whisper, "whisper", "fr", run=options, **choices).model
        return model.name_or_path, model.revision

    assert base(run) == ("bases/whisper-base", "v1")  # not the packaged openai/whisper-large-v2
    assert base(run / "model") == ("/abs/copy/of/base", "main")
    # the user's choice wins, by --set or --config, with the packaged revision unless it names one
    assert base(run, overrides=["model.name_or_path=other"]) == ("other", "main")
    assert base(run, overrides=["model.revision=v2"]) == ("bases/whisper-base", "v2")
    user = tmp_path / "user.yaml"
    user.write_text("model: {name_or_path: mine, revision: main}\n", encoding="utf-8")
    assert base(run, config_file=user) == ("mine", "main")
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}", encoding="utf-8")
    assert base(full) == ("openai/whisper-large-v2", "main")  # a full model needs no base


def test_atc_corrector_checkpoint_brings_its_base(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path / "corrector", "/models/tiny-llama")
    cfg = config.load(_schema("atc"), "atc", overrides=[f"corrector.checkpoint={adapter}"])
    assert cfg.corrector.model.name_or_path == "/models/tiny-llama"
    assert cfg.model.name_or_path == "openai/whisper-small"  # the ASR keeps its own
