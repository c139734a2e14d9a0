"""`hw tang` on the tiny preset and on the real course files: it learns, reloads, sweeps, and rejects bad input."""

import json
from pathlib import Path

import pytest
import torch

from hw import config, models
from hw.generation import IGNORE_INDEX, TANG_FORMAT
from hw.metrics.poem import score_poems
from hw.tasks import tang
from hw.tiny import assets
from hw.tiny.causal_lm import build_tokenizer
from tests.invoking import invoke, one_line_error
from tests.shared_data import SHARED_DATA


def _tang_data() -> Path:
    """The real course files (Tang_*.json, Tang_testing_gt.txt); tests using them skip when absent."""
    directory = SHARED_DATA / "tang"
    if not (directory / "Tang_training_data.json").is_file():
        pytest.skip(f"real Tang data not found in {directory}")
    return directory


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and far faster than on two when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tang(workdir: Path, name: str, *extra: str) -> Path:
    """`hw tang --tiny` into `workdir/name`; returns the run directory."""
    invoke(
        [
            "tang",
            "--tiny",
            "--output-dir",
            str(workdir / name),
            "--reports-dir",
            str(workdir / "reports"),
            *extra,
        ]
    )
    return workdir / name


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def _table(metrics: dict, title_start: str) -> dict:
    (table,) = [table for table in metrics["tables"] if table["title"].startswith(title_start)]
    return table


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny LoRA run (400 poems × 3 epochs), greedy, with a two-setting decoding sweep."""
    workdir = tmp_path_factory.mktemp("tang")
    return _tang(workdir, "run", "--greedy", "--sweep", "temperature=0.1,1.5", "--sweep", "do_sample=true")


@pytest.mark.slow
def test_lora_lifts_form_and_overlap_far_above_the_untuned_model(trained: Path) -> None:
    metrics = _metrics(trained)
    scores = {row[0]: row[1:] for row in _table(metrics, "Before and after fine-tuning")["rows"]}
    # the untuned base answers every prompt with an appreciation: 3 clauses of 4 characters, no shared one
    assert scores["form"][0] == 0.0 and scores["char_f1"][0] == 0.0
    assert scores["form"][1] >= 0.9 and scores["char_f1"][1] >= 0.9 and scores["chrf"][1] >= 0.85
    final = metrics["final"]
    assert (final["form"], final["char_f1"]) == (scores["form"][1], scores["char_f1"][1])
    assert set(final) == {"form", "char_f1", "chrf", "repetition", "traditional_share", "distinct_1",
                          "distinct_2", "training_loss", "validation_loss"}  # fmt: skip
    assert final["validation_loss"] < 0.5 < final["training_loss"] + 0.5
    assert metrics["data"] == {"train": 400, "validation": 50, "test": 30}
    assert metrics["weights"] == f"fine-tuned in this run ({trained / 'model'})"


@pytest.mark.slow
def test_run_writes_the_course_results_file_and_samples(trained: Path) -> None:
    samples = [
        json.loads(line) for line in (trained / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    lines = (trained / "results.txt").read_text(encoding="utf-8").splitlines()
    assert len(samples) == len(lines) == 30
    assert lines[0] == f"1. {samples[0]['input']}{samples[0]['prediction']}"
    assert lines[29].startswith(f"30. {samples[29]['input']}")
    assert set(samples[0]) == {"input", "prediction", "reference", "raw_output", "form", "char_f1", "chrf",
                               "repetition", "traditional_share"}  # fmt: skip
    assert (trained / "model" / "adapter_config.json").is_file() and (
        trained / "trainer_state.json"
    ).is_file()
    log = (trained / "run.log").read_text(encoding="utf-8")
    assert (
        "no CUDA device: 4bit quantization (bitsandbytes) needs one, so the model loads in full precision"
        in log
    )


@pytest.mark.slow
def test_fragment_shows_before_after_sweep_and_reference(trained: Path) -> None:
    fragment = (trained.parent / "reports" / "fragments" / "tang" / f"{trained.name}.md").read_text(
        encoding="utf-8"
    )
    assert "Tiny offline preset — not a real result" in fragment
    assert "\n- **Data:** tiny:tang — 400 train / 50 validation / 30 test examples\n" in fragment
    assert "| Score | Untuned base | Fine-tuned |" in fragment
    assert "| First couplet | Untuned base | Fine-tuned |" in fragment
    assert "| Setting | Form | Char F1 | Distinct-1 | Distinct-2 | Characters | First poem |" in fragment
    assert "ground truth (Tang_testing_gt.txt, 15 poems) scored by the same metric: the ceiling" in fragment


@pytest.mark.slow
def test_sweep_generates_once_per_setting_of_the_grid(trained: Path) -> None:
    sweep = _table(_metrics(trained), "Decoding sweep")
    assert [row[0] for row in sweep["rows"]] == [
        "temperature=0.1, do_sample=True",
        "temperature=1.5, do_sample=True",
    ]
    for _, form, char_f1, distinct_1, distinct_2, characters, poem in sweep["rows"]:
        assert 0 <= form <= 1 and 0 <= char_f1 <= 1 and 0 < distinct_1 <= distinct_2 <= 1
        assert characters > 0 and poem


@pytest.mark.slow
def test_eval_only_with_the_saved_adapter_reproduces_the_greedy_outputs(
    trained: Path, tmp_path: Path
) -> None:
    again = _tang(tmp_path, "eval", "--greedy", "--eval-only", "--checkpoint", str(trained))
    assert (again / "samples.jsonl").read_text() == (trained / "samples.jsonl").read_text()
    first, second = _metrics(trained), _metrics(again)
    assert second["final"] == {
        key: value for key, value in first["final"].items() if not key.endswith("loss")
    }
    assert second["weights"] == f"checkpoint {trained}" and second["data"] == {"test": 30}
    # the adapter switched off is the untuned base of the training run
    assert _table(second, "Before and after")["rows"] == _table(first, "Before and after")["rows"]


def _tiny_config(*overrides: str) -> tang.TangConfig:
    return config.load(tang.TangConfig, "tang", run={"tiny": True}, overrides=list(overrides))


def test_only_lora_parameters_are_trainable() -> None:
    cfg = _tiny_config()
    assets.materialize(cfg.model.name_or_path)  # a run builds it first; here the loader is called alone
    loaded = models.causal_lm(models.resolve(cfg.model), cfg.quantization, cfg.lora)
    model, weights = loaded.model, loaded.weights
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # per layer: q,k,v,o 4 × 8·(64 + 64) = 4,096; gate, up 2 × 8·(64 + 256) and down 8·(256 + 64) = 7,680;
    # × 4 layers = 47,104
    assert sum(trainable.values()) == 47_104
    assert weights == "untuned base model tiny:tang-llama"


def test_untuned_eval_only_scores_the_base_without_a_before_after_table(tmp_path: Path) -> None:
    metrics = _metrics(_tang(tmp_path, "base", "--eval-only", "--greedy", "--max-eval-samples", "4"))
    assert metrics["weights"] == "untuned base model tiny:tang-llama"
    assert metrics["final"]["form"] == 0.0 and metrics["tables"] == [] and metrics["data"] == {"test": 4}


def test_breeze_variant_runs_through_the_chat_template(tmp_path: Path) -> None:
    run_dir = _tang(tmp_path, "breeze", "--variant", "tang-breeze", "--max-train-samples", "32",
                    "--set", "train.num_train_epochs=1", "--max-new-tokens", "8", "--max-eval-samples", "4")  # fmt: skip
    settings = (run_dir / "config.yaml").read_text(encoding="utf-8")
    assert "chat_template: true" in settings and "Breeze" not in _metrics(run_dir)["weights"]
    assert len((run_dir / "results.txt").read_text(encoding="utf-8").splitlines()) == 4


def test_default_configs_keep_the_course_settings() -> None:
    for variant, model in (
        ("tang", "taide/TAIDE-LX-7B-Chat"),
        ("tang-breeze", "MediaTek-Research/Breeze-7B-Instruct-v0_1"),
    ):
        cfg = config.load(tang.TangConfig, "tang", variant)
        assert cfg.model.name_or_path == model and cfg.quantization == "4bit"
        assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 16, 0.05)
        assert sorted(cfg.lora.target_modules) == sorted(
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        )
        train = cfg.train
        assert (
            train.learning_rate,
            train.per_device_train_batch_size,
            train.gradient_accumulation_steps,
        ) == (3e-4, 4, 4)
        assert (train.num_train_epochs, train.warmup_steps, train.seed) == (1, 50, 42)
        assert (cfg.data.max_train_samples, cfg.data.cutoff_len, cfg.prompt.train_on_prompt) == (
            1040,
            256,
            False,
        )
        assert cfg.generation == tang.Decoding(do_sample=True, temperature=0.1, top_p=0.3, top_k=50, num_beams=1,
                                               no_repeat_ngram_size=3, max_new_tokens=128)  # fmt: skip


# --- the real course files ---


def test_real_files_load_first_poems_in_file_order() -> None:
    directory = _tang_data()
    everything = json.loads((directory / "Tang_training_data.json").read_text(encoding="utf-8"))
    poems = tang.load_poems(tang.TangData(directory=str(directory)), need_train=True)
    assert (len(poems.train), len(poems.validation), len(poems.test), len(poems.references)) == (
        1040,
        0,
        15,
        15,
    )
    assert poems.train == everything[:1040]  # the course's first 1040, not a shuffled subset
    held_out = tang.load_poems(
        tang.TangData(directory=str(directory), max_train_samples=None, validation_size=50), True
    )
    assert (held_out.train, held_out.validation) == (everything[:4951], everything[4951:])
    assert len(everything) == 5001 and poems.test[0]["input"] == "雪霽銀妝素，桔高映瓊枝。"
    assert poems.references[0] == "偕伴登山去\t觀雪且賞桔"


def test_real_item_becomes_a_prompt_masked_example_through_the_task() -> None:
    poems = tang.load_poems(tang.TangData(directory=str(_tang_data())), need_train=True)
    tokenizer, record = build_tokenizer(), poems.train[0]  # 秦川雄帝宅，… ; output: 30 characters + 6 marks
    (example,) = tang._features([record], tokenizer, _tiny_config(), TANG_FORMAT)
    ids, labels = example["input_ids"], example["labels"]
    answer = 1 + 36 + 1  # " ", one token per character or mark (unknown ones become <unk>), "</s>"
    assert labels == [IGNORE_INDEX] * (len(ids) - answer) + ids[-answer:]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id in ids[-answer:]
    (everything,) = tang._features(
        [record], tokenizer, _tiny_config("prompt.train_on_prompt=true"), TANG_FORMAT
    )
    assert everything["labels"] == everything["input_ids"] == ids


def test_metric_on_the_real_ground_truth_lines_matches_the_reference_row() -> None:
    poems = tang.load_poems(tang.TangData(directory=str(_tang_data())), need_train=False)
    _, summary = score_poems([item["input"] for item in poems.test], poems.references, poems.references)
    # 14 poems of 4 or 8 clauses score 1, one 10-clause pailü 0.5; one repeated bigram in 12 (item 8),
    # one Simplified-form character of 18 (item 4)
    assert summary["form"] == pytest.approx(14.5 / 15)
    assert summary["char_f1"] == summary["chrf"] == 1.0
    assert summary["repetition"] == pytest.approx(1 / 12 / 15)
    assert summary["traditional_share"] == pytest.approx((14 + 17 / 18) / 15)
    (reference,) = config.load(tang.TangConfig, "tang").reference
    assert reference.rows == [{key: round(value, 4) for key, value in summary.items()}]


def test_tiny_run_on_the_real_files_maps_unknown_characters_to_unk(tmp_path: Path) -> None:
    run_dir = _tang(tmp_path, "real", "--data", str(_tang_data()), "--max-train-samples", "16", "--max-new-tokens", "6",
                    "--set", "train.num_train_epochs=1", "--set", "data.validation_size=0")  # fmt: skip
    lines = (run_dir / "results.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 15 and lines[0].startswith("1. 雪霽銀妝素，桔高映瓊枝。")
    assert "has no token for" in (run_dir / "run.log").read_text(encoding="utf-8")
    assert _metrics(run_dir)["data"] == {"train": 16, "test": 15}


# --- user errors: one line, exit code 2 ---


def _course_files(directory: Path, train: object, test: str | None = None) -> Path:
    directory.mkdir()
    item = {
        "instruction": "以下是一首唐詩的第一句話，請用你的知識判斷並完成整首詩。",
        "input": "山水風雲月，花江天雪松。",
    }
    (directory / "Tang_training_data.json").write_text(
        json.dumps(train, ensure_ascii=False), encoding="utf-8"
    )
    (directory / "Tang_testing_data.json").write_text(
        test or json.dumps([item], ensure_ascii=False), encoding="utf-8"
    )
    return directory


def test_training_item_missing_output_is_named_by_index(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    good = {"instruction": "x", "input": "山水風雲月，花江天雪松。", "output": "竹梅鶴雁舟，橋城樓門柳。"}
    data = _course_files(tmp_path / "data", [good, {"instruction": "x", "input": "山"}])
    line = one_line_error(["tang", "--tiny", "--data", str(data)])
    assert line == (
        f"'{data / 'Tang_training_data.json'}' item 1 lacks 'output' (it has: instruction, input); "
        "every item needs instruction, input, output"
    )


def test_a_test_file_that_is_not_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = _course_files(tmp_path / "data", [], test="1. 山水風雲月")
    line = one_line_error(["tang", "--tiny", "--data", str(data)])
    assert line == (
        f"'{data / 'Tang_testing_data.json'}' is not a UTF-8 JSON file (Extra data: line 1 column 2 "
        "(char 1)); give the course's JSON list of {instruction, input} items"
    )


def test_real_config_without_data_says_where_the_files_come_from(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert one_line_error(["tang"]) == (
        "hw tang needs the course's poem files, which are not on the Hugging Face Hub: pass --data DIR "
        "(the folder holding Tang_training_data.json, Tang_testing_data.json and optionally Tang_testing_gt.txt) "
        "or name each file: --set data.train_file=FILE --set data.test_file=FILE; --tiny runs on synthetic poems"
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--top-p", "1.5"], "generation.top_p: 1.5 must be in (0, 1]"),
        (["--temperature", "0"], "generation.temperature: 0.0 must be above 0"),
        (["--sweep", "temprature=0.1,0.7"], "eval.sweep.temprature: not a decoding setting; choose from do_sample, "
         "temperature, top_p, top_k, num_beams, no_repeat_ngram_size, max_new_tokens"),
        (["--sweep", "top-p=0.5,2"], "eval.sweep.top_p: 2 must be in (0, 1]"),
        (["--sweep", "top_k=many"], "eval.sweep.top_k: 'many' is not of type int"),
        (["--set", "train.eval_strategy=epoch", "--set", "data.validation_size=0"],
         "train.eval_strategy: 'epoch' needs a validation set; set data.validation_size above 0 or "
         "train.eval_strategy to 'no'"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line(flags: list[str], expected: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert one_line_error(["tang", "--tiny", *flags]) == f"invalid configuration: {expected}"


def test_sweep_needs_setting_and_values(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert one_line_error(["tang", "--tiny", "--sweep", "temperature"]) == (
        "--sweep expects SETTING=V1,V2,..., got 'temperature'; e.g. --sweep temperature=0.1,0.7,1.2"
    )


@pytest.mark.gpu
def test_qlora_on_cuda_loads_the_base_in_4_bits(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("bitsandbytes")
    run_dir = _tang(tmp_path, "qlora", "--max-train-samples", "64", "--set", "train.num_train_epochs=1",
                    "--max-new-tokens", "8", "--max-eval-samples", "4")  # fmt: skip
    assert "no CUDA device" not in (run_dir / "run.log").read_text(encoding="utf-8")
    assert _metrics(run_dir)["model"]["trainable_parameters"] == 47_104
