"""`hw atc`: fine-tune Whisper on ATCOSIM, correct its transcripts with an LLM, and score the ASR × corrector matrix.

The run is a chain of cached stages (`hw.stages`): `asr_train` → `transcribe` (evaluation sets, zero-shot and
fine-tuned ASR) and `pairs` (the training split, zero-shot) → `corrector_train` → `correct` → `score`. Each
stage is a function of one frozen input holding exactly what it reads, its upstream stages as their keys
(`stage_inputs`), and is keyed by the hash of that input, so a re-run in the same run directory redoes only
what changed; `--stage NAME` redoes one stage, `--from-stage NAME` it and every later one. Without a
corrector (`corrector: null`) the corrector's stages do not run and the matrix scores the ASR alone.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Any

from hw import models, runs, sources, speech, stages, weight_checks
from hw.errors import HwError
from hw.record import SAMPLES_FILE, TRAINER_STATE_FILE, RunRecord
from hw.tasks.atc import asr, correct, score
from hw.tasks.atc.asr import Clips
from hw.tasks.atc.config import STAGES, AtcConfig, AtcData, CorrectorConfig
from hw.training import kept_model_note, mean_logged_loss

log = logging.getLogger(__name__)


def run(cfg: AtcConfig, run_dir: Path) -> RunRecord:
    """Run every stage (cached ones are read back); the run's record comes from `score` and the training stages."""
    asr_checkpoint, corrector_checkpoint = _preflight(cfg)
    inputs = stage_inputs(cfg, asr_checkpoint, corrector_checkpoint)
    stages_dir = run_dir / "stages"
    done: list[stages.StageResult] = []

    def stage(name: str, build: Any) -> Path:
        force = cfg.stages.only == name or (
            cfg.stages.start is not None and STAGES.index(name) >= STAGES.index(cfg.stages.start)
        )
        done.append(stages.run_stage(stages_dir, name, inputs[name], build, force=force))
        return done[-1].directory

    fine_tuned_asr = asr_checkpoint
    if "asr_train" in inputs:
        trained = stage(
            "asr_train", lambda folder: asr.train_asr(inputs["asr_train"], folder, cfg.run.resume)
        )
        fine_tuned_asr = str(trained / "model")
    transcripts = stage(
        "transcribe", lambda folder: asr.transcribe_eval_sets(inputs["transcribe"], fine_tuned_asr, folder)
    )
    pairs = corrections = None
    if "pairs" in inputs:
        pairs = stage("pairs", lambda folder: asr.transcribe_pairs(inputs["pairs"], folder))
    corrector = corrector_checkpoint
    if "corrector_train" in inputs:
        trained = stage(
            "corrector_train",
            lambda folder: correct.train_corrector(inputs["corrector_train"], pairs, folder, cfg.run.resume),
        )
        corrector = str(trained / "model")
    if "correct" in inputs:
        corrections = stage(
            "correct",
            lambda folder: correct.correct(inputs["correct"], transcripts, pairs, corrector, folder),
        )
    scores = stage("score", lambda folder: score.score(inputs["score"], transcripts, corrections, folder))
    return _record(cfg, run_dir, done, scores, fine_tuned_asr, corrector)


def stage_inputs(
    cfg: AtcConfig, asr_checkpoint: str | None, corrector_checkpoint: str | None
) -> dict[str, Any]:
    """The frozen input of every stage this run runs, in order; pure, so a test sees the keys `run` uses.

    Args:
        cfg: the run's configuration.
        asr_checkpoint: the resolved --checkpoint (scored with --eval-only), or None.
        corrector_checkpoint: the resolved `corrector.checkpoint`, or None (always without a corrector).
    """
    corrector, key = cfg.corrector, stages.stage_key
    train_clips, validation_clips = _training_clips(cfg.data)
    inputs: dict[str, Any] = {}
    fine_tuned_asr = asr_checkpoint
    if not cfg.run.eval_only:
        inputs["asr_train"] = asr.AsrTrainInput(
            model=cfg.model, train=cfg.train, lora=cfg.lora, language=cfg.asr.language,
            target_text=cfg.asr.target_text, train_clips=train_clips, validation_clips=validation_clips,
            scoring=_validation_scoring(cfg),
        )  # fmt: skip
        fine_tuned_asr = key(inputs["asr_train"])
    recognizer = asr.Recognizer(
        model=cfg.model, language=cfg.asr.language, batch_size=cfg.asr.batch_size,
        max_new_tokens=cfg.asr.max_new_tokens, precision=cfg.train.precision,
    )  # fmt: skip
    inputs["transcribe"] = asr.TranscribeInput(recognizer, _eval_clips(cfg.data), fine_tuned_asr)
    if corrector is not None:
        inputs |= _corrector_inputs(cfg, corrector, recognizer, train_clips, key(inputs["transcribe"]),
                                    corrector_checkpoint)  # fmt: skip
    inputs["score"] = score.ScoreInput(
        normalizer=cfg.eval.normalizer, samples_seed=cfg.eval.samples_seed,
        references=(*cfg.reference, *cfg.matrix_reference), transcripts=key(inputs["transcribe"]),
        corrections=key(inputs["correct"]) if "correct" in inputs else None,
    )  # fmt: skip
    return inputs


def _corrector_inputs(
    cfg: AtcConfig,
    corrector: CorrectorConfig,
    recognizer: asr.Recognizer,
    train_clips: Clips,
    transcripts: str,
    corrector_checkpoint: str | None,
) -> dict[str, Any]:
    """The inputs of the corrector's stages (`pairs`, `corrector_train`, `correct`), those this run runs.

    Args:
        transcripts: the `transcribe` stage's key.
    """
    key = stages.stage_key
    inputs: dict[str, Any] = {}
    train_corrector = corrector_checkpoint is None and corrector.fine_tune and not cfg.run.eval_only
    if train_corrector or corrector.rag_k:  # the training split's transcripts serve these two only
        inputs["pairs"] = asr.PairsInput(recognizer, dataclasses.replace(train_clips, name="pairs"))
    fine_tuned_corrector = corrector_checkpoint
    if train_corrector:
        inputs["corrector_train"] = correct.CorrectorTrainInput(
            model=corrector.model, train=corrector.train, lora=corrector.lora,
            quantization=corrector.quantization, fine_tuned_prompt=corrector.fine_tuned_prompt,
            cutoff_len=corrector.cutoff_len, pairs=key(inputs["pairs"]),
        )  # fmt: skip
        fine_tuned_corrector = key(inputs["corrector_train"])
    inputs["correct"] = correct.CorrectInput(
        model=corrector.model, quantization=corrector.quantization, base_prompt=corrector.base_prompt,
        fine_tuned_prompt=corrector.fine_tuned_prompt, rag_k=corrector.rag_k, batch_size=corrector.batch_size,
        max_new_tokens=corrector.max_new_tokens, transcripts=transcripts,
        pairs=key(inputs["pairs"]) if corrector.rag_k else None, corrector=fine_tuned_corrector,
    )  # fmt: skip
    return inputs


def _training_clips(data: AtcData) -> tuple[Clips, Clips]:
    """The training corpus's subsets that train the ASR and give its validation loss."""
    subsets = (
        ("train", data.train_split, data.max_train_samples),
        ("validation", data.validation_split, data.max_validation_samples),
    )
    return tuple(
        Clips(name, data.dataset, data.config_name, data.revision, split, data.text_column, limit,
              data.shuffle_seed, config_key=f"data.{name}_split")
        for name, split, limit in subsets
    )  # fmt: skip


def _eval_clips(data: AtcData) -> tuple[Clips, ...]:
    """The scored subset of every evaluation set."""
    return tuple(
        Clips(evaluation.name, evaluation.dataset, evaluation.config_name, evaluation.revision,
              evaluation.split, data.text_column, data.max_eval_samples, data.shuffle_seed,
              config_key=f"data.eval_sets[{evaluation.name}].split")
        for evaluation in data.eval_sets
    )  # fmt: skip


def _preflight(cfg: AtcConfig) -> tuple[str | None, str | None]:
    """Fail before any stage runs on a dataset, model or checkpoint that is missing or of the wrong kind.

    Every model a stage will load is resolved here (names and configs only, no weights): a corrector that
    cannot be had fails in seconds, not after the ASR has trained.

    Returns:
        The ASR's --checkpoint and the corrector's checkpoint, resolved (None where not given).
    """
    if runs.world_size() > 1:  # stages are built and renamed into place by one process; not yet shared out
        raise HwError(
            f"hw atc runs in one process, but this launch has {runs.world_size()}; "
            "start it without torchrun / accelerate launch"
        )
    checkpoint = cfg.corrector and cfg.corrector.checkpoint
    if checkpoint is not None and sources.is_local(checkpoint) and not Path(checkpoint).expanduser().is_dir():
        raise HwError(
            f"corrector.checkpoint {checkpoint!r} does not exist; give a saved corrector adapter or model "
            "directory (e.g. runs/atc/RUN/stages/corrector_train/model) or remove the setting"
        )
    weight_checks.require_family(models.resolve(cfg.model), "whisper")
    if cfg.corrector is not None:
        corrector_base = models.resolve(cfg.corrector.model, key="corrector.model.name_or_path")
        weight_checks.require_family(corrector_base, "causal_lm")
    training = [] if cfg.run.eval_only else _training_clips(cfg.data)
    asr.check_data([*training, *_eval_clips(cfg.data)])
    return checkpoints(cfg)


def checkpoints(cfg: AtcConfig) -> tuple[str | None, str | None]:
    """The ASR's --checkpoint and the corrector's `corrector.checkpoint`, resolved (None where not given)."""
    asr_checkpoint = cfg.run.checkpoint and sources.resolve_checkpoint(cfg.run.checkpoint)
    checkpoint = cfg.corrector and cfg.corrector.checkpoint
    if not checkpoint:
        return asr_checkpoint, None
    return asr_checkpoint, sources.resolve_checkpoint(checkpoint, key="corrector.checkpoint")


def _validation_scoring(cfg: AtcConfig) -> speech.ValidationScoring | None:
    """WER and CER of the ASR's validation transcripts at each evaluation, normalized as the final scores."""
    if cfg.asr.validation_generate_samples == 0:
        return None
    decoding = speech.Decoding(cfg.asr.language, "transcribe", cfg.asr.batch_size, cfg.asr.max_new_tokens)
    return speech.ValidationScoring(decoding, cfg.asr.validation_generate_samples, cfg.eval.normalizer)


def _record(
    cfg: AtcConfig,
    run_dir: Path,
    done: list[stages.StageResult],
    score_dir: Path,
    fine_tuned_asr: str | None,
    corrector: str | None,
) -> RunRecord:
    """The run's record, from the stages' outputs."""
    scores = runs.read_json(score_dir / "scores.json")
    stages_dir = run_dir / "stages"
    history = (
        runs.read_json(stages_dir / "asr_train" / "history.json")
        if fine_tuned_asr and cfg.run.checkpoint is None
        else {}
    )
    # The report's main table sets this run beside the homework's figures: the cells the homework published
    # join the last validation row (all cells are in the matrices below it).
    published = {key for reference in cfg.reference for row in reference.rows for key in row}
    headline = {key: value for key, value in scores["final"].items() if key in published}
    epochs = history.get("epochs", [])
    if epochs:
        epochs[-1].update(headline)
    else:
        epochs = [{"epoch": None, **headline}]
    state_file = stages_dir / "asr_train" / TRAINER_STATE_FILE
    state = runs.read_json(state_file) if state_file.is_file() and history else None
    kept = kept_model_note(state, cfg.train.metric_for_best_model) if state else None
    transcripts_dir = stages_dir / "transcribe"
    clips = runs.read_json(transcripts_dir / "clips.json") + history.get("clips", [])
    pairs_file = stages_dir / "pairs" / "pairs.jsonl"
    ran = {result.name for result in done}
    pairs = {"corrector pairs": len(runs.read_jsonl(pairs_file))} if "pairs" in ran else {}
    stage_rows = [[result.name, result.key, "computed" if result.computed else "cached", result.seconds]
                  for result in done]  # fmt: skip
    fine_tuning = [_corrector_training(stages_dir / "corrector_train")] if "corrector_train" in ran else []
    return RunRecord(
        final=scores["final"],
        epochs=epochs,
        weights=_weights(cfg, fine_tuned_asr, corrector),
        dataset=cfg.data.dataset,
        data={row[0]: row[2] for row in clips} | pairs,
        model=history.get("model", {}),
        tables=scores["tables"] + fine_tuning + [
            {"title": "Clips per split", "columns": ["Split", "Clips", "Kept",
             *(f"Skipped: {reason}" for reason in speech.SKIP_REASONS)], "rows": clips},
            {"title": "Stages (cached: read back from run_dir/stages, not recomputed)",
             "columns": ["Stage", "Key", "This run", "Seconds when computed"], "rows": stage_rows},
        ],
        notes=[f"Text conventions: normalizer {cfg.eval.normalizer!r} on references and every hypothesis "
               "(lowercase, punctuation and hesitations dropped, ICAO spellings alfa/juliett, numbers in "
               "digits: `one three four decimal six` = `134.6`, `three thousand two hundred` = `3200`)."]
              + ([f"ASR fine-tuning: {kept}"] if kept else []),
        samples=runs.read_jsonl(score_dir / SAMPLES_FILE),
        trainer_state=state,
    )  # fmt: skip


def _corrector_training(folder: Path) -> dict[str, Any]:
    """The corrector's fine-tuning as a one-row table: its pairs, parameters, steps and training loss."""
    history, state = runs.read_json(folder / "history.json"), runs.read_json(folder / "trainer_state.json")
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry] or ["—"]
    mean = mean_logged_loss(state["log_history"])
    model = history["model"]
    return {
        "title": "Corrector fine-tuning (loss on the answer tokens; the corrector has no validation split)",
        "columns": ["Pairs trained on", "Trainable parameters", "Total parameters", "Steps",
                    "Loss at the first logging step", "Loss at the last logging step", "Mean loss"],
        "rows": [[history["pairs"], model["trainable_parameters"], model["total_parameters"],
                  state["global_step"], losses[0], losses[-1], "—" if mean is None else mean]],
    }  # fmt: skip


def _weights(cfg: AtcConfig, fine_tuned_asr: str | None, corrector: str | None) -> str:
    """One sentence naming exactly the weights behind every row of the matrix."""
    asr_weights = f"ASR zero-shot: {cfg.model.name_or_path}"
    if fine_tuned_asr:
        origin = "from --checkpoint" if cfg.run.checkpoint else "fine-tuned in this run"
        asr_weights += f"; ASR fine-tuned: {origin} ({fine_tuned_asr})"
    if cfg.corrector is None:
        return f"{asr_weights}; no corrector (ASR only)"
    llm = f"corrector base: {cfg.corrector.model.name_or_path}"
    if corrector:
        origin = "corrector.checkpoint" if cfg.corrector.checkpoint else "fine-tuned in this run"
        llm += f"; corrector fine-tuned: {origin} ({corrector})"
    return f"{asr_weights}; {llm}"
