"""`hw whisper` end to end on the tiny preset: LoRA learns in both languages, eval-only reproduces, every data
source loads, bad input is one line; and `hw score asr`."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from hw import config
from hw.errors import ConfigError, HwError
from hw.tasks import whisper
from tests.invoking import invoke, one_line_error
from tests.test_speech import write_audiofolder, write_commonvoice, write_commonvoice_parquet


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def _whisper(work: Path, name: str, *args: str) -> dict:
    """One `hw whisper --tiny` run into `work/name`, its report into `work/reports-name`; its metrics."""
    reports = work / f"reports-{name}"
    invoke(["whisper", "--tiny", *args, "--output-dir", str(work / name), "--reports-dir", str(reports)])
    return _metrics(work / name)


@pytest.fixture(scope="module", params=["zh", "fr"])
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Per language: one LoRA training run, the untrained base scored, and the saved adapter scored again."""
    language = request.param
    work = tmp_path_factory.mktemp(f"whisper-{language}")
    _whisper(work, "trained", "--lang", language)
    _whisper(work, "base", "--lang", language, "--eval-only")
    _whisper(work, "again", "--lang", language, "--eval-only", "--checkpoint", str(work / "trained"))
    return language, work


@pytest.mark.slow
def test_lora_training_clearly_beats_the_untrained_base(runs: tuple[str, Path]) -> None:
    language, work = runs
    trained, base = _metrics(work / "trained")["final"], _metrics(work / "base")["final"]
    assert trained["cer"] < 0.3 and trained["cer"] < base["cer"] / 2, (trained, base)
    if language == "fr":
        assert trained["wer"] < 0.5 and trained["wer"] < base["wer"] / 2, (trained, base)
    assert list(trained)[0] == ("cer" if language == "zh" else "wer")  # the headline comes first


@pytest.mark.slow
def test_eval_only_on_the_saved_adapter_reproduces_the_run(runs: tuple[str, Path]) -> None:
    _, work = runs
    again, trained = _metrics(work / "again"), _metrics(work / "trained")
    assert again["final"] == trained["final"]
    checkpoint = work / "trained" / "model"
    assert again["weights"] == (
        f"LoRA adapter from --checkpoint ({checkpoint}) on base model tiny:whisper, merged for inference, float32"
    )


@pytest.mark.slow
def test_eval_only_scores_a_full_model_checkpoint(runs: tuple[str, Path]) -> None:
    from hw.tiny import assets

    language, work = runs
    base = assets.materialize("tiny:whisper")
    metrics = _whisper(work, "full", "--lang", language, "--eval-only", "--checkpoint", base)
    assert metrics["weights"] == f"full model from --checkpoint ({base}), float32"
    assert metrics["final"] == _metrics(work / "base")["final"]  # the base, loaded as a full model


@pytest.mark.slow
def test_the_report_names_the_weights_scored(runs: tuple[str, Path]) -> None:
    language, work = runs
    assert _metrics(work / "base")["weights"] == "base model tiny:whisper (not fine-tuned), float32"
    trained = _metrics(work / "trained")["weights"]
    assert trained.startswith(f"LoRA adapter trained in this run ({work / 'trained' / 'model'})")
    assert "no CUDA device: 8bit quantization" in (work / "trained" / "run.log").read_text(encoding="utf-8")
    assert "scoring the base model tiny:whisper as it is" in (work / "base" / "run.log").read_text(
        encoding="utf-8"
    )
    fragment = (work / "reports-trained" / "fragments" / "whisper" / "trained.md").read_text(encoding="utf-8")
    assert f"**weights scored:** {trained}" in fragment
    header = next(line for line in fragment.splitlines() if line.startswith("| Source |"))
    assert header.startswith("| Source | Epoch | Training loss | Validation loss |")
    # For Chinese the normalized WER is scored per character, i.e. it is the CER: no column of its own.
    assert "| CER |" in header and ("| WER |" in header) == (language == "fr")
    assert "The model kept is step " in fragment


@pytest.mark.slow
def test_artifacts_loss_curve_and_error_tables(runs: tuple[str, Path]) -> None:
    language, work = runs
    metrics = _metrics(work / "trained")
    assert metrics["data"] == {"train": 512, "validation": 64, "eval": 64}
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3, 4]
    assert all(row["validation_loss"] > 0 and row["training_loss"] > 0 for row in metrics["epochs"])
    assert all({"wer", "cer"} <= set(row) for row in metrics["epochs"])  # validation transcripts, each time
    errors, clips = metrics["tables"]
    normalizer = {"zh": "normalized (zh, t2s)", "fr": "normalized (basic)"}[language]
    assert [row[0] for row in errors["rows"]] == [normalizer, "orthographic (none)"]
    assert errors["rows"][0][1] == metrics["final"]["wer"]
    assert clips["rows"] == [
        ["train", 512, 512, 0, 0, 0],
        ["validation", 64, 64, 0, 0, 0],
        ["eval", 64, 64, 0, 0, 0],
    ]
    samples = [json.loads(line) for line in (work / "trained" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 64 and len({row["file"] for row in samples}) == 64
    assert set(samples[0]) == {"file", "seconds", "reference", "hypothesis", "reference_normalized",
                               "hypothesis_normalized", "wer", "cer"}  # fmt: skip
    assert (work / "trained" / "model" / "adapter_config.json").is_file()
    assert (work / "trained" / "trainer_state.json").is_file()


@pytest.mark.slow
def test_every_evaluation_scores_transcripts_and_the_best_one_is_kept(runs: tuple[str, Path]) -> None:
    from safetensors.torch import load_file

    language, work = runs
    metric = {"zh": "cer", "fr": "wer"}[language]
    state = json.loads((work / "trained" / "trainer_state.json").read_text(encoding="utf-8"))
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert len(evaluations) == 4 and all({"eval_wer", "eval_cer"} <= set(entry) for entry in evaluations)
    best = min(evaluations, key=lambda entry: (entry[f"eval_{metric}"], entry["step"]))
    assert (state["best_global_step"], state["best_metric"]) == (best["step"], best[f"eval_{metric}"])
    kept = load_file(work / "trained" / "model" / "adapter_model.safetensors")
    checkpoint = work / "trained" / "checkpoints" / f"checkpoint-{best['step']}" / "adapter_model.safetensors"
    assert kept.keys() == load_file(checkpoint).keys()
    assert all(kept[name].equal(tensor) for name, tensor in load_file(checkpoint).items())


def test_packaged_configs_hold_the_course_defaults() -> None:
    for language in config.variants("whisper"):
        for tiny in (False, True):
            cfg = config.load(whisper.WhisperConfig, "whisper", language, run={"tiny": tiny})
            assert cfg.language == language.split("-")[0]  # zh-tw-full: zh
    cfg = config.load(whisper.WhisperConfig, "whisper", "zh")
    assert (cfg.model.name_or_path, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (
        "openai/whisper-large-v2",
        4,
        64,
        0.05,
    )
    assert (cfg.train.learning_rate, cfg.train.per_device_train_batch_size, cfg.train.num_train_epochs) == (
        1e-3,
        64,
        1,
    )
    assert (cfg.data.max_train_samples, cfg.data.max_validation_samples, cfg.data.shuffle_seed) == (
        640,
        320,
        16,
    )
    assert (cfg.eval.normalizer, cfg.eval.zh_convert, cfg.quantization) == ("zh", "t2s", "8bit")
    assert config.load(whisper.WhisperConfig, "whisper", "fr").eval.normalizer == "basic"
    # Kept by the headline metric, every validation clip transcribed on a GPU config, a few on tiny.
    assert (cfg.train.metric_for_best_model, cfg.eval.validation_generate_samples) == ("cer", None)
    fr = config.load(whisper.WhisperConfig, "whisper", "fr", run={"tiny": True})
    assert (fr.train.metric_for_best_model, fr.eval.validation_generate_samples) == ("wer", 32)
    with pytest.raises(ConfigError, match="train.metric_for_best_model: wer needs validation transcripts"):
        config.load(whisper.WhisperConfig, "whisper", "fr", overrides=["eval.validation_generate_samples=0"])


@pytest.mark.slow
def test_full_fine_tuning_learns_and_keeps_its_best_model(tmp_path: Path) -> None:
    metrics = _whisper(tmp_path, "full", "--variant", "zh-tw-full")
    state = json.loads((tmp_path / "full" / "trainer_state.json").read_text(encoding="utf-8"))
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0] / 2, losses
    assert min(entry["eval_cer"] for entry in evaluations) < evaluations[0]["eval_cer"], evaluations
    assert metrics["model"]["trainable_parameters"] == metrics["model"]["total_parameters"]
    assert metrics["weights"].startswith(f"full model trained in this run ({tmp_path / 'full' / 'model'})")
    assert (tmp_path / "full" / "model" / "model.safetensors").is_file()
    cfg = config.load(whisper.WhisperConfig, "whisper", "zh-tw-full")
    train = cfg.train
    assert (train.per_device_train_batch_size, train.gradient_accumulation_steps, train.learning_rate) == (
        8,
        2,
        1e-5,
    )
    assert (train.lr_scheduler_type, train.warmup_steps, train.max_steps, train.precision) == (
        "constant_with_warmup",
        50,
        500,
        "fp16",
    )
    assert (cfg.lora, cfg.quantization, train.gradient_checkpointing, cfg.eval.max_new_tokens) == (
        None,
        "none",
        True,
        225,
    )


def test_full_fine_tuning_of_8bit_weights_is_one_line(tmp_path: Path) -> None:
    error = one_line_error(["whisper", "--tiny", "--set", "lora=null", "--output-dir", str(tmp_path / "run")])
    assert error.startswith("full fine-tuning (lora: null) trains every weight, which 8bit weights cannot;")


@pytest.mark.slow
def test_an_audiofolder_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_audiofolder(tmp_path / "mine" / "train", [(f"me_{i}_{i + 1}.wav", "le chat") for i in range(8)])
    write_audiofolder(
        tmp_path / "mine" / "test", [("me_9_10.wav", "la maison"), ("me_10_11.wav", "un, deux")]
    )
    metrics = _whisper(tmp_path, "run", "--lang", "fr", "--set", f"data.dataset={tmp_path / 'mine'}",
                       "--set", "train.num_train_epochs=1", "--set", "train.eval_steps=1")  # fmt: skip
    # No validation split: the test split stands in for it, and the log says so.
    assert metrics["data"] == {"train": 8, "validation": 2, "eval": 2}
    assert "no 'validation' split" in (tmp_path / "run" / "run.log").read_text(encoding="utf-8")


def test_packaged_data_is_the_common_voice_parquet_export() -> None:
    for language, locale in (("fr", "fr"), ("zh", "zh-CN")):
        data = config.load(whisper.WhisperConfig, "whisper", language).data
        assert (data.dataset, data.revision, data.data_dir, data.config_name) == (
            "legacy-datasets/common_voice",
            "refs/convert/parquet",
            locale,
            None,
        )
        assert (data.train_split, data.validation_split, data.eval_split, data.text_column) == (
            "train",
            "validation",
            "test",
            "sentence",
        )
        sources = [
            entry.source for entry in config.load(whisper.WhisperConfig, "whisper", language).reference
        ]
        assert all("Common Voice 11" in source or "version" in source for source in sources), sources


@pytest.mark.slow
def test_the_parquet_export_layout_trains_and_all_lifts_every_cap(tmp_path: Path) -> None:
    """A local copy of the default dataset (`hf download … --include 'fr/*'`) runs with the packaged data keys;
    `--max-train-samples all` / `--max-eval-samples all` read every clip of train, validation and test."""
    from hw import speech, speech_sources
    from hw.tiny import assets

    assets.materialize("tiny:commonvoice-fr")
    tiny_fr = speech_sources.load_speech_splits("tiny:commonvoice-fr")

    def rows(split: str, count: int) -> list:
        return [
            (row["sentence"], speech.load_clip(row["audio"])) for row in tiny_fr[split].select(range(count))
        ]

    write_commonvoice_parquet(
        tmp_path / "cv",
        "fr",
        {"train-00000-of-00002": rows("train", 6), "train-00001-of-00002": rows("train", 4),
         "validation": rows("validation", 5), "test": rows("test", 5), "other": rows("train", 3)},
    )  # fmt: skip
    caps = ["--set", "data.max_validation_samples=2", "--set", "data.max_eval_samples=3"]
    metrics = _whisper(tmp_path, "run", "--lang", "fr", "--set", f"data.dataset={tmp_path / 'cv'}",
                       "--set", "data.data_dir=fr", *caps, "--max-train-samples", "all",
                       "--max-eval-samples", "all", "--set", "train.num_train_epochs=1")  # fmt: skip
    assert metrics["data"] == {"train": 10, "validation": 5, "eval": 5}


@pytest.mark.slow
def test_corrupt_and_overlong_clips_are_skipped_and_counted(tmp_path: Path) -> None:
    write_commonvoice(tmp_path / "cv", {"test.tsv": [("ok.mp3", "le chat", 1.0), ("long.mp3", "la", 3.5)]})
    (tmp_path / "cv" / "clips" / "bad.mp3").write_bytes(b"ID3" + bytes(300))
    with (tmp_path / "cv" / "test.tsv").open("a", encoding="utf-8") as handle:
        handle.write("speaker\tbad.mp3\tle père\t2\t0\t\t\t\tfr\t\n")
    metrics = _whisper(
        tmp_path, "run", "--lang", "fr", "--eval-only", "--set", f"data.dataset={tmp_path / 'cv'}"
    )
    assert metrics["data"] == {"eval": 1}
    assert metrics["tables"][1]["rows"] == [["eval", 3, 1, 1, 1, 0]]
    log = (tmp_path / "run" / "run.log").read_text(encoding="utf-8")
    assert (
        "eval: skipped 1 undecodable clip(s): bad.mp3" in log
        and "eval: skipped 1 too long clip(s): long.mp3" in log
    )


def test_unsupported_language_lists_the_supported_ones() -> None:
    assert one_line_error(["whisper", "--lang", "de", "--tiny"]) == (
        "--lang 'de' is not supported by hw whisper; choose one of: fr, zh, zh-tw-full"
    )


@pytest.mark.slow
def test_tsv_without_path_and_sentence_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "test.tsv").write_text("client_id\tclip\nx\ta.mp3\n", encoding="utf-8")
    line = one_line_error(
        ["whisper", "--lang", "fr", "--tiny", "--eval-only", "--set", f"data.dataset={tmp_path / 'cv'}"]
    )
    assert (
        line
        == f"{tmp_path / 'cv' / 'test.tsv'} lacks column(s) path, sentence (it has: client_id, clip); give it a header row with path, sentence"
    )


@pytest.mark.slow
def test_missing_checkpoint_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["whisper", "--lang", "zh", "--tiny", "--eval-only", "--checkpoint", "no/such/run"])
    assert line == (
        "--checkpoint 'no/such/run' does not exist; give a saved model, adapter or run directory, or a Hub id ORG/NAME"
    )


def test_score_asr_prints_one_json_object(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.csv"
    path.write_text('hyp,ref\nle chien noir,"Le chat, noir"\nbonjour,bonjour\n', encoding="utf-8")
    result = json.loads(invoke(["score", "asr", str(path), "--hyp-col", "hyp", "--ref-col", "ref", "--json"]))
    # basic: "le chat noir" vs "le chien noir" is 1 of 4 reference words; chat → chien is 3 of 19 characters
    # (a→i, t→e, +n; "le chat noir" 12 + "bonjour" 7).
    assert result["wer"] == 0.25 and result["cer"] == pytest.approx(3 / 19)
    assert (result["substitutions"], result["deletions"], result["insertions"]) == (1, 0, 0)
    assert result["sentence_error_rate"] == 0.5 and result["mean_utterance_wer"] == pytest.approx(1 / 6)
    assert result["utterances"] == 2


def test_score_asr_zh_with_opencc_and_text_output(tmp_path: Path) -> None:
    path = tmp_path / "zh.jsonl"
    path.write_text('{"hypothesis": "說話", "reference": "说话。"}\n', encoding="utf-8")
    output = invoke(["score", "asr", str(path), "--normalize", "zh", "--zh-convert", "t2s"])
    assert output.startswith("1 utterances, normalizer zh: WER 0.0000") and "CER 0.0000" in output


def test_score_asr_missing_column_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\nx,y\n", encoding="utf-8")
    assert (
        one_line_error(["score", "asr", str(path)])
        == f"{path}: no column 'hypothesis' (--hyp-col); available: a, b"
    )


def _run_of(folder: Path, homework: str, variant: str) -> Path:
    """A run directory as far as its manifest goes: enough for the checks made before any weights load."""
    folder.mkdir(parents=True)
    manifest = {
        "homework": homework,
        "variant": variant,
        "tiny": True,
        "eval_only": False,
        "status": "finished",
    }
    (folder / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_a_run_of_another_language_is_refused_unless_allowed(tmp_path: Path) -> None:
    french = str(_run_of(tmp_path / "fr-run", "whisper", "fr"))
    options = {"tiny": True, "eval_only": True, "checkpoint": french}
    cfg = config.load(whisper.WhisperConfig, "whisper", "zh", run=options)
    with pytest.raises(HwError, match=r"was trained on --lang fr, not zh; score it with --lang fr, or add"):
        whisper._language_notes(cfg)
    allowed = config.load(
        whisper.WhisperConfig, "whisper", "zh", run=options, overrides=["eval.allow_language_mismatch=true"]
    )
    assert whisper._language_notes(allowed) == [
        "**Language mismatch: these weights were trained on --lang fr speech and are scored here as zh.**"
    ]
    same = config.load(whisper.WhisperConfig, "whisper", "fr", run=options)
    assert whisper._language_notes(same) == []


def test_a_run_of_another_homework_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    qa_run = _run_of(tmp_path / "qa-run", "qa", "qa")
    message = one_line_error(
        ["whisper", "--lang", "zh", "--tiny", "--eval-only", "--checkpoint", str(qa_run),
         "--output-dir", str(tmp_path / "scored"), "--reports-dir", str(tmp_path / "reports")]
    )  # fmt: skip
    assert message.startswith(
        f"--checkpoint {str(qa_run)!r} is a qa (variant qa, tiny) run; hw whisper scores"
    )
    assert not (tmp_path / "scored").exists() and not (tmp_path / "reports").exists()


@pytest.fixture(scope="module")
def local_base_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A LoRA run on a local copy of tiny:whisper (a base other than the packaged one), and its work folder."""
    from hw.tiny import assets

    work = tmp_path_factory.mktemp("whisper-local-base")
    base = work / "my-whisper"
    shutil.copytree(assets.materialize("tiny:whisper"), base)
    _whisper(
        work, "trained", "--lang", "fr", "--set", f"model.name_or_path={base}", "--set", "train.max_steps=4"
    )
    return work, base


def _other_shapes(folder: Path, base: Path) -> Path:
    """A Whisper of narrower layers than `base`, with its processor: a base the adapter cannot sit on."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    narrow = WhisperConfig.from_pretrained(base)
    narrow.d_model, narrow.encoder_ffn_dim, narrow.decoder_ffn_dim = 32, 64, 64
    WhisperForConditionalGeneration(narrow).save_pretrained(folder)
    for name in (
        "generation_config.json",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        shutil.copy(base / name, folder / name)
    return folder


@pytest.mark.slow
def test_eval_only_scores_an_adapter_on_the_base_it_was_trained_on(local_base_run: tuple[Path, Path]) -> None:
    work, base = local_base_run
    again = _whisper(work, "again", "--lang", "fr", "--eval-only", "--checkpoint", str(work / "trained"))
    assert again["weights"].endswith(f"on base model {base}, merged for inference, float32")
    assert again["final"] == _metrics(work / "trained")["final"]
    log = (work / "again" / "run.log").read_text(encoding="utf-8")
    assert f"base model {base}: the one adapter --checkpoint {work / 'trained'} was trained on" in log


@pytest.mark.slow
def test_an_adapter_on_a_base_of_other_shapes_is_one_line(local_base_run: tuple[Path, Path]) -> None:
    work, base = local_base_run
    other = _other_shapes(work / "narrow-whisper", base)
    # the base the run names can be read: refused before loading, from configs
    run_args = ["whisper", "--lang", "fr", "--tiny", "--eval-only", "--set", f"model.name_or_path={other}"]
    line = one_line_error([*run_args, "--checkpoint", str(work / "trained"), "--output-dir", str(work / "x")])
    assert line.startswith(
        f"--checkpoint {str(work / 'trained')!r} is an adapter trained on base {str(base)!r}, but "
        f"model.name_or_path is {str(other)!r} (d_model 64 there, 32 here)"
    )
    # the base the adapter names is gone: PEFT's size-mismatch crash becomes the same kind of line
    moved = work / "moved-adapter"
    shutil.copytree(work / "trained" / "model", moved)
    adapter = json.loads((moved / "adapter_config.json").read_text(encoding="utf-8"))
    adapter["base_model_name_or_path"] = str(work / "deleted-base")
    (moved / "adapter_config.json").write_text(json.dumps(adapter), encoding="utf-8")
    line = one_line_error([*run_args, "--checkpoint", str(moved), "--output-dir", str(work / "y")])
    assert line.startswith(
        f"--checkpoint {str(moved)!r} is an adapter trained on base {str(work / 'deleted-base')!r}, whose shapes "
        f"differ from model.name_or_path {str(other)!r} (model.encoder.layers.0."
    )
    assert not (work / "x").exists() and not (work / "y").exists()


def test_eval_backend_is_checked_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert one_line_error(["whisper", "--lang", "fr", "--tiny", "--set", "eval.backend=onnx"]).endswith(
        "eval.backend: 'onnx' is not one of transformers, ctranslate2"
    )
    monkeypatch.setattr(whisper.importlib.util, "find_spec", lambda name: None)
    assert whisper.WhisperEval(backend="ctranslate2").problems() == [
        "backend: 'ctranslate2' needs the ctranslate2 package; install it with pip install 'hw[ct2]' or set "
        "eval.backend=transformers"
    ]


def test_ctranslate2_compute_type_is_checked_against_this_device() -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    assert one_line_error(["whisper", "--lang", "fr", "--tiny", "--set", "eval.compute_type=int4"]).endswith(
        "eval.compute_type: 'int4' is not one of auto, float32, int8, int8_float32, float16, int8_float16, "
        "bfloat16, int8_bfloat16, int16"
    )
    if torch.cuda.is_available() or "float16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("this device runs float16")
    supported = ", ".join(sorted(ctranslate2.get_supported_compute_types("cpu")))
    assert whisper.WhisperEval(backend="ctranslate2", compute_type="float16").problems() == [
        f"compute_type: 'float16' is not supported by CTranslate2 on this cpu, which supports {supported}; set "
        "eval.compute_type to one of them or to auto"
    ]
    assert whisper.WhisperEval(backend="ctranslate2").problems() == []  # auto: float32 on a CPU


@pytest.mark.slow
def test_eval_only_with_the_ctranslate2_backend(tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    ours = _whisper(tmp_path, "ct2", "--lang", "fr", "--eval-only", "--set", "eval.backend=ctranslate2")
    reference = _whisper(tmp_path, "torch", "--lang", "fr", "--eval-only")
    assert ours["weights"].endswith("float32, converted to CTranslate2 float32")  # the CPU default
    assert (tmp_path / "ct2" / "ctranslate2-float32" / "model.bin").is_file()
    assert ours["final"] == reference["final"]
    samples = [(tmp_path / name / "samples.jsonl").read_text(encoding="utf-8") for name in ("ct2", "torch")]
    assert samples[0] == samples[1]
