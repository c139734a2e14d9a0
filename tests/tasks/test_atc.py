"""`hw atc` end to end on the tiny preset: both fine-tunings learn, stages cache, bad input is one line;
and the homework's real transcript files re-scored through `hw score asr`."""

import json
import re
import shutil
from pathlib import Path

import pytest

from hw import config
from hw.errors import HwError
from hw.tasks import atc
from tests.invoking import invoke, one_line_error
from tests.shared_data import SHARED_DATA

HOMEWORK_FILE = SHARED_DATA / "atc" / "homework_transcripts" / "atco2_test_whisper_small_llama2_base.csv"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def _stage_marks(run_dir: Path) -> dict[str, float]:
    return {
        path.parent.name: json.loads(path.read_text())["finished"]
        for path in (run_dir / "stages").glob("*/stage.json")
    }


def _unfinished(run_dir: Path) -> None:
    """Mark a finished run as one killed after its stages, before its record: `--resume` continues it."""
    manifest = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    (run_dir / "run.json").write_text(json.dumps({**manifest, "status": "running"}), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """One full tiny run, then the same run again with --resume; the stage marks after the first."""
    work = tmp_path_factory.mktemp("atc")
    run_dir = work / "run"
    invoke(["atc", "--tiny", "--output-dir", str(run_dir), "--reports-dir", str(work / "reports")])
    first = _stage_marks(run_dir)
    _unfinished(run_dir)
    invoke(
        ["atc", "--tiny", "--resume", "--output-dir", str(run_dir), "--reports-dir", str(work / "reports")]
    )
    return run_dir, first


@pytest.mark.slow
def test_fine_tuned_asr_beats_zero_shot(tiny_run) -> None:
    final = _metrics(tiny_run[0])["final"]
    assert final["atcosim/fine_tuned/none/wer"] < 0.2 < 0.5 < final["atcosim/zero_shot/none/wer"], final


@pytest.mark.slow
def test_asr_training_scores_every_evaluation_and_keeps_the_best_wer(tiny_run) -> None:
    state = json.loads(
        (tiny_run[0] / "stages" / "asr_train" / "trainer_state.json").read_text(encoding="utf-8")
    )
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert len(evaluations) == 3 and all({"eval_wer", "eval_cer"} <= set(entry) for entry in evaluations)
    best = min(evaluations, key=lambda entry: (entry["eval_wer"], entry["step"]))
    assert state["best_global_step"] == best["step"]
    metrics = _metrics(tiny_run[0])
    assert all({"wer", "cer"} <= set(row) for row in metrics["epochs"])
    assert f"ASR fine-tuning: The model kept is step {best['step']}'s" in " ".join(metrics["notes"])


@pytest.mark.slow
def test_fine_tuned_corrector_lowers_the_wer_of_the_zero_shot_asr(tiny_run) -> None:
    final = _metrics(tiny_run[0])["final"]
    before, after = final["atcosim/zero_shot/none/wer"], final["atcosim/zero_shot/fine_tuned/wer"]
    assert after < before / 2, final
    assert final["atco2/zero_shot/fine_tuned/wer"] < final["atco2/zero_shot/none/wer"], final


@pytest.mark.slow
def test_second_run_reads_every_stage_back(tiny_run) -> None:
    run_dir, first = tiny_run
    assert set(first) == set(atc.STAGES)
    assert _stage_marks(run_dir) == first  # no stage was rewritten
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert all(f"stage {name}: cached" in log for name in atc.STAGES)
    rows = _metrics(run_dir)["tables"][-1]["rows"]
    assert [row[2] for row in rows] == ["cached"] * len(atc.STAGES)


@pytest.mark.slow
def test_stage_flags_recompute_that_stage_or_it_and_the_later_ones(tiny_run, tmp_path) -> None:
    run_dir, first = tiny_run
    common = ["atc", "--tiny", "--resume", "--output-dir", str(run_dir), "--reports-dir", str(tmp_path)]
    invoke([*common, "--stage", "pairs"])
    marks = _stage_marks(run_dir)
    assert [name for name in atc.STAGES if marks[name] != first[name]] == ["pairs"]
    invoke([*common, "--from-stage", "correct"])
    latest = _stage_marks(run_dir)
    assert [name for name in atc.STAGES if latest[name] != marks[name]] == ["correct", "score"]


@pytest.mark.slow
def test_recomputing_from_the_corrector_reproduces_every_cell(tiny_run, tmp_path) -> None:
    # A copy: the other tests expect the fixture's stages as they are. The first run computed the corrector
    # after four stages had drawn from the process's generator; this one computes it first.
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    invoke(["atc", "--tiny", "--resume", "--output-dir", str(run_dir), "--reports-dir", str(tmp_path / "reports"),
            "--from-stage", "corrector_train"])  # fmt: skip
    assert _stage_marks(run_dir)["corrector_train"] != _stage_marks(tiny_run[0])["corrector_train"]
    assert _metrics(run_dir)["final"] == _metrics(tiny_run[0])["final"]


@pytest.mark.slow
def test_a_stage_cached_by_an_older_hw_is_recomputed(tiny_run, tmp_path) -> None:
    run_dir, _ = tiny_run
    marker = run_dir / "stages" / "score" / "stage.json"
    # Before stage format 2, stage.json had no `format`; keep even today's key, the worst case.
    marker.write_text(json.dumps({key: value for key, value in json.loads(marker.read_text()).items()
                                  if key != "format"}))  # fmt: skip
    before = _stage_marks(run_dir)
    _unfinished(run_dir)
    invoke(["atc", "--tiny", "--resume", "--output-dir", str(run_dir), "--reports-dir", str(tmp_path)])
    after = _stage_marks(run_dir)
    assert [name for name in atc.STAGES if after[name] != before[name]] == ["score"]


@pytest.mark.slow
def test_matrix_tables_samples_and_report(tiny_run) -> None:
    run_dir, _ = tiny_run
    metrics = _metrics(run_dir)
    atcosim, atco2 = metrics["tables"][:2]
    assert atcosim["columns"][:4] == ["ASR", "Corrector", "WER", "Mean utterance WER"]
    cells = [(row[0], row[1]) for row in atcosim["rows"][:8]]
    assert cells == [(asr, corrector) for asr in ("zero-shot", "fine-tuned") for corrector in
                     ("none", "base LLM, homework prompt", "base LLM + retrieved examples", "fine-tuned LLM")]  # fmt: skip
    assert atcosim["rows"][0][2] == metrics["final"]["atcosim/zero_shot/none/wer"]
    assert any("hw's re-scoring" in str(row[0]) and row[3] == 0.7406 for row in atco2["rows"])
    assert any("homework README" in str(row[0]) and row[3] == 1.0597 for row in atco2["rows"])
    better, worse, unchanged = atcosim["rows"][3][8:11]
    assert better + worse + unchanged == pytest.approx(1) and better > worse
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 192 and {"audio_id", "reference", "zero_shot", "zero_shot+fine_tuned"} <= set(
        samples[0]
    )
    assert metrics["data"]["corrector pairs"] == 512


@pytest.mark.slow
def test_corrector_training_loss_is_reported(tiny_run) -> None:
    tables = {table["title"].split(" (")[0]: table for table in _metrics(tiny_run[0])["tables"]}
    [[pairs, trainable, total, steps, first, last, mean]] = tables["Corrector fine-tuning"]["rows"]
    assert (pairs, steps) == (512, 128)  # the tiny preset: 512 pairs / batch 16 × 4 epochs
    assert 0 < trainable < total
    assert last < mean < first


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path, monkeypatch) -> None:
    import datasets

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "no-text"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"audio": ["a.wav"], "sentence": ["x"]})}
    ).save_to_disk(str(folder))
    message = one_line_error(["atc", "--tiny", "--set", f"data.dataset={folder}"])
    assert message.startswith(f"dataset '{folder}' lacks column(s) text (it has: audio, sentence)")
    assert one_line_error(["atc", "--tiny", "--stage", "nonsense"]) == (
        "invalid configuration: stages.only: 'nonsense' is not a stage; choose one of: "
        + ", ".join(atc.STAGES)
    )
    assert one_line_error(["atc", "--tiny", "--set", "corrector.checkpoint=/no/such/adapter"]).startswith(
        "corrector.checkpoint '/no/such/adapter' does not exist; give a saved corrector adapter"
    )


@pytest.mark.slow
def test_asr_only_evaluation_scores_the_none_column_alone(tmp_path) -> None:
    run_dir = tmp_path / "run"
    invoke(["atc", "--tiny", "--eval-only", "--set", "corrector=null", "--output-dir", str(run_dir),
            "--reports-dir", str(tmp_path / "reports")])  # fmt: skip
    assert set(_stage_marks(run_dir)) == {"transcribe", "score"}
    metrics = _metrics(run_dir)
    assert sorted(metrics["final"]) == ["atco2/zero_shot/none/wer", "atcosim/zero_shot/none/wer"]
    assert [row[:2] for row in metrics["tables"][0]["rows"] if "(" not in row[0]] == [["zero-shot", "none"]]
    assert metrics["weights"].endswith("no corrector (ASR only)")
    run_log = (run_dir / "run.log").read_text(encoding="utf-8")
    for name in ("atcosim", "atco2"):  # each set's transcription is named, not only its batch counts
        assert re.search(rf"transcribing {name} \(zero-shot\): \d+ clips", run_log), run_log


@pytest.mark.slow
def test_every_model_is_resolved_before_the_first_stage(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    unusable = ["corrector.model.name_or_path=/no/such/llama"]
    message = one_line_error(["atc", "--tiny", "--eval-only", "--set", unusable[0]])
    assert message.startswith("corrector.model.name_or_path: '/no/such/llama' does not exist"), message
    assert not (tmp_path / "runs").exists()  # nothing ran, so nothing is kept
    # The preflight alone finds it (the tiny assets are built now): no stage runs before the error.
    cfg = config.load(atc.AtcConfig, "atc", overrides=unusable, run={"tiny": True})
    with pytest.raises(HwError, match=r"^corrector\.model\.name_or_path: '/no/such/llama' does not exist"):
        atc._preflight(cfg)


def test_packaged_config_loads_with_the_course_defaults() -> None:
    cfg = config.load(atc.AtcConfig, "atc")
    assert (cfg.model.name_or_path, cfg.train.learning_rate, cfg.train.max_steps) == (
        "openai/whisper-small",
        1e-5,
        1000,
    )
    assert (cfg.train.warmup_steps, cfg.train.eval_steps, cfg.train.per_device_train_batch_size) == (
        500,
        100,
        16,
    )
    assert cfg.corrector.model.name_or_path == "NousResearch/Llama-2-7b-chat-hf"
    assert cfg.corrector.fine_tuned_prompt == "[INST] {hypothesis} [/INST]"
    assert [s.dataset for s in cfg.data.eval_sets] == ["Jzuluaga/atcosim_corpus", "Jzuluaga/atco2_corpus_1h"]
    tiny_cfg = config.load(atc.AtcConfig, "atc", run={"tiny": True})
    assert tiny_cfg.corrector.model.name_or_path == "tiny:atc-llama"


@pytest.mark.skipif(not HOMEWORK_FILE.is_file(), reason="shared ATC data not found")
@pytest.mark.parametrize(
    ("normalize", "column", "mean_utterance", "corpus"),
    [
        # SOURCES.md: whitespace tokens only, the homework's own way; 1.0685 is hw's re-scoring of its CSVs (COURSE.md), not a figure it published.
        ("none", "llm_text", 1.0685482071348031, 0.9742605554301197),
        ("none", "whisper_text", 1.024923718575718, 0.9666967712801987),
    ],
)
def test_score_asr_reproduces_the_homework_figures(normalize, column, mean_utterance, corpus) -> None:
    output = invoke(["score", "asr", str(HOMEWORK_FILE), "--hyp-col", column, "--ref-col", "correct_text",
                      "--normalize", normalize, "--json"])  # fmt: skip
    result = json.loads(output)
    assert result["utterances"] == 870
    assert result["mean_utterance_wer"] == pytest.approx(mean_utterance, rel=1e-12)
    assert result["wer"] == pytest.approx(corpus, rel=1e-12)


@pytest.mark.skipif(not HOMEWORK_FILE.is_file(), reason="shared ATC data not found")
@pytest.mark.parametrize(
    ("column", "corpus", "mean_utterance"),
    [
        # Measured: ICAO spellings, case, punctuation and number form forgiven on both sides. At corpus level
        # the base Llama-2 then helps a little (0.7894 → 0.7746), where the homework's unnormalized mean of
        # per-utterance WER said it hurt (1.0249 → 1.0685).
        # Before Whisper's written digit runs were joined (`1 0` → `10`, `121-855` → `121855`): 0.8134, 0.7940.
        ("whisper_text", 0.7894, 0.8723),
        ("llm_text", 0.7746, 0.8761),
    ],
)
def test_atc_normalizer_on_the_homework_transcripts(column, corpus, mean_utterance) -> None:
    output = invoke(["score", "asr", str(HOMEWORK_FILE), "--hyp-col", column, "--ref-col", "correct_text",
                      "--normalize", "atc", "--json"])  # fmt: skip
    result = json.loads(output)
    assert (round(result["wer"], 4), round(result["mean_utterance_wer"], 4)) == (corpus, mean_utterance)


def test_a_distributed_launch_is_refused_before_any_stage(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = config.load(atc.AtcConfig, "atc", run={"tiny": True})
    with pytest.raises(HwError, match=r"hw atc runs in one process, but this launch has 2; start it without"):
        atc._preflight(cfg)
