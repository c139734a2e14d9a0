"""`hw atc`: fine-tune Whisper on ATCOSIM, correct its transcripts with an LLM, and score the ASR × corrector matrix.

The run is a chain of cached stages (`hw.stages`): `asr_train` → `transcribe` (evaluation sets, zero-shot and
fine-tuned ASR) and `pairs` (the training split, zero-shot) → `corrector_train` → `correct` → `score`. Each
stage is keyed by its config section and its upstream stages' keys, so a re-run in the same run directory
redoes only what changed; `--stage NAME` redoes one stage, `--from-stage NAME` it and every later one.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hw import runs, sources, speech, stages
from hw.config import LoraConfig, ModelConfig, ReferenceRun, RunOptions, TrainConfig, to_dict
from hw.errors import HwError
from hw.generation import ATC_BASE_PROMPT, ATC_FINE_TUNED_PROMPT
from hw.metrics import asr
from hw.record import SAMPLES_FILE, TRAINER_STATE_FILE, RunRecord
from hw.tasks import atc_asr, atc_correct, atc_score

log = logging.getLogger(__name__)

STAGES = ("asr_train", "transcribe", "pairs", "corrector_train", "correct", "score")
# Version of the transcript and correction rows, part of the transcribe stage's key and so, through the
# upstream keys, of correct's and score's: a run directory from an older hw recomputes the three rather than
# read rows of another shape. 1: joined on file names; 2: rows carry `index`, the clip's position in its set.
ROW_FORMAT = 2


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: a split of a speech dataset with a `text` column of references."""

    name: str
    """Short name used in tables and samples (`atcosim`, `atco2`)."""
    dataset: str
    """Hub id, local folder (`save_to_disk`, audiofolder) or `tiny:NAME`."""
    split: str = "test"
    """The split scored."""
    config_name: str | None = None
    """Hub configuration name, if the dataset has several."""
    revision: str = "main"
    """Hub branch, tag or commit."""


@dataclass(frozen=True)
class AtcData:
    """ATCOSIM for training (ASR and corrector pairs) and the evaluation sets."""

    dataset: str = "Jzuluaga/atcosim_corpus"
    """Training corpus: Hub id, local folder or `tiny:NAME`; its train split trains the ASR and gives the pairs."""
    config_name: str | None = None
    """Hub configuration name of the training corpus."""
    revision: str = "main"
    """Hub branch, tag or commit of the training corpus."""
    train_split: str = "train"
    """Split that trains the ASR and, transcribed zero-shot, gives the corrector's training pairs."""
    validation_split: str = "test"
    """Split whose first `max_validation_samples` clips (after shuffling) give the ASR's validation loss."""
    text_column: str = "text"
    """Reference column of every dataset (the Hugging Face ATC datasets call it `text`)."""
    max_train_samples: int | None = None
    """Training clips drawn after shuffling; None uses the whole split (7,638 for ATCOSIM)."""
    max_validation_samples: int | None = 200
    """Validation clips for the loss during ASR training."""
    max_eval_samples: int | None = None
    """Clips scored per evaluation set, drawn after shuffling; None scores every clip."""
    shuffle_seed: int = 42
    """Seed of the shuffle before each subset is drawn."""
    eval_sets: list[EvalSet] = field(default_factory=list)
    """The evaluation sets, each scored with every ASR × corrector pair."""

    def problems(self) -> list[str]:
        limits = ("max_train_samples", "max_validation_samples", "max_eval_samples")
        found = [
            f"{key}: {getattr(self, key)!r} must be at least 1"
            for key in limits
            if getattr(self, key) is not None and getattr(self, key) < 1
        ]
        names = [evaluation.name for evaluation in self.eval_sets]
        if not names or len(set(names)) < len(names):
            found.append(f"eval_sets: {names!r} must name at least one set, each name once")
        return found


@dataclass(frozen=True)
class AsrSettings:
    """How the Whisper ASR is trained and decoded."""

    language: str = "en"
    """Whisper language code of the speech."""
    target_text: Literal["digits", "words"] = "digits"
    """What the ASR learns to write: numbers in digits (the course's best, 7.20 % WER) or the references' words."""
    batch_size: int = 16
    """Clips per `generate` call when transcribing."""
    max_new_tokens: int = 128
    """Tokens generated at most per clip."""


@dataclass(frozen=True)
class CorrectorConfig:
    """The LLM that corrects transcripts: its base prompted, and LoRA/QLoRA-tuned on (hypothesis → reference)."""

    model: ModelConfig
    train: TrainConfig
    lora: LoraConfig
    quantization: Literal["4bit", "8bit", "none"] = "4bit"
    """Weights quantized while loading (bitsandbytes, CUDA only): `4bit` is QLoRA's NF4."""
    checkpoint: str | None = None
    """A fine-tuned corrector (adapter or model directory) to use instead of training one."""
    fine_tune: bool = True
    """Train the corrector on the pairs (skipped with a `checkpoint`, or with --eval-only)."""
    base_prompt: str = ATC_BASE_PROMPT
    """The homework's prompt for the untuned chat model, over `{hypothesis}`."""
    fine_tuned_prompt: str = ATC_FINE_TUNED_PROMPT
    """The fine-tuning prompt over `{hypothesis}`; the target is ` {reference}</s>`."""
    rag_k: int = 3
    """Training pairs shown as worked examples in the retrieval-augmented prompt (0: no RAG column)."""
    cutoff_len: int = 256
    """Tokens kept per training example."""
    batch_size: int = 16
    """Prompts per `generate` call (left-padded, longest first)."""
    max_new_tokens: int = 64
    """Tokens generated per correction at most."""

    def problems(self) -> list[str]:
        found = [f"{key}: must be at least 1" for key in ("cutoff_len", "batch_size", "max_new_tokens")
                 if getattr(self, key) < 1]  # fmt: skip
        found += [] if self.rag_k >= 0 else [f"rag_k: {self.rag_k!r} must be 0 or more"]
        for key in ("base_prompt", "fine_tuned_prompt"):
            if "{hypothesis}" not in getattr(self, key):
                found.append(f"{key}: must contain {{hypothesis}}")
        return found


@dataclass(frozen=True)
class StageSelection:
    """Which stages are recomputed even when cached (`--stage`, `--from-stage`)."""

    only: str | None = None
    """Recompute this stage alone; later stages recompute only if their inputs changed."""
    start: str | None = None
    """Recompute this stage and every later one."""

    def problems(self) -> list[str]:
        return [
            f"{key}: {getattr(self, key)!r} is not a stage; choose one of: {', '.join(STAGES)}"
            for key in ("only", "start")
            if getattr(self, key) is not None and getattr(self, key) not in STAGES
        ]


@dataclass(frozen=True)
class AtcEval:
    """How transcripts are scored."""

    normalizer: str = "atc"
    """Normalizer of both sides: `atc` (ICAO spellings, hesitations dropped, numbers in digits) or another of hw score asr."""
    samples_seed: int = 0
    """Seed of the order of samples.jsonl, whose first rows the report shows."""

    def problems(self) -> list[str]:
        ok = self.normalizer in asr.NORMALIZERS
        return [] if ok else [f"normalizer: {self.normalizer!r} is not one of {', '.join(asr.NORMALIZERS)}"]


@dataclass(frozen=True)
class AtcConfig:
    """One `hw atc` run; `model`, `train` and `lora` are the ASR's, `corrector` the LLM's."""

    run: RunOptions
    model: ModelConfig
    data: AtcData
    train: TrainConfig
    corrector: CorrectorConfig
    lora: LoraConfig | None = None
    """ASR LoRA adapters; None fine-tunes every weight, as the course does with whisper-small."""
    asr: AsrSettings = field(default_factory=AsrSettings)
    eval: AtcEval = field(default_factory=AtcEval)
    stages: StageSelection = field(default_factory=StageSelection)
    reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown above this run's in the report's main table (keys `set/asr/corrector/wer`)."""
    matrix_reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown only in the matrices, e.g. the homework's mean of per-utterance WER."""


def run(cfg: AtcConfig, run_dir: Path) -> RunRecord:
    """Run every stage (cached ones are read back); the run's record comes from `score` and the training stages."""
    corrector_checkpoint = _preflight(cfg)
    stages_dir = run_dir / "stages"
    done: list[stages.StageResult] = []

    def stage(name: str, inputs: dict[str, Any], build: Any) -> stages.StageResult:
        force = cfg.stages.only == name or (
            cfg.stages.start is not None and STAGES.index(name) >= STAGES.index(cfg.stages.start)
        )
        done.append(stages.run_stage(stages_dir, name, inputs, build, force=force))
        return done[-1]

    section = _sections(cfg)
    fine_tuned_asr: str | None = cfg.run.checkpoint and sources.resolve_checkpoint(cfg.run.checkpoint)
    asr_key = fine_tuned_asr
    if not cfg.run.eval_only:
        trained = stage("asr_train", section["asr_train"], lambda folder: atc_asr.train_asr(cfg, folder))
        fine_tuned_asr, asr_key = str(trained.directory / "model"), trained.key
    transcribed = stage(
        "transcribe", {**section["transcribe"], "fine_tuned": asr_key},
        lambda folder: atc_asr.transcribe_eval_sets(cfg, fine_tuned_asr, folder),
    )  # fmt: skip
    train_corrector = corrector_checkpoint is None and cfg.corrector.fine_tune and not cfg.run.eval_only
    pairs = None  # the training split's transcripts serve corrector training and RAG only
    if train_corrector or cfg.corrector.rag_k:
        pairs = stage("pairs", section["pairs"], lambda folder: atc_asr.transcribe_pairs(cfg, folder))
    corrector_key = corrector_checkpoint
    if train_corrector:
        corrector = stage(
            "corrector_train", {**section["corrector_train"], "pairs": pairs.key},
            lambda folder: atc_correct.train_corrector(cfg.corrector, pairs.directory, folder, cfg.run.resume),
        )  # fmt: skip
        corrector_checkpoint, corrector_key = str(corrector.directory / "model"), corrector.key
    upstream = {"transcribe": transcribed.key, "pairs": pairs and pairs.key, "corrector": corrector_key}
    corrected = stage(
        "correct", {**section["correct"], **upstream},
        lambda folder: atc_correct.correct(
            cfg.corrector, transcribed.directory, pairs and pairs.directory, corrector_checkpoint, folder
        ),
    )  # fmt: skip
    score_inputs = {**section["score"], "transcribe": transcribed.key, "correct": corrected.key}
    scored = stage(
        "score", score_inputs,
        lambda folder: atc_score.score(
            cfg.eval.normalizer, transcribed.directory, corrected.directory, cfg.eval.samples_seed,
            cfg.reference + cfg.matrix_reference, folder,
        ),
    )  # fmt: skip
    return _record(cfg, run_dir, done, scored.directory, fine_tuned_asr, corrector_checkpoint)


def _preflight(cfg: AtcConfig) -> str | None:
    """Fail before any stage runs on a dataset or corrector checkpoint that is missing; return the latter resolved."""
    if runs.world_size() > 1:  # stages are built and renamed into place by one process; not yet shared out
        raise HwError(
            f"hw atc runs in one process, but this launch has {runs.world_size()}; "
            "start it without torchrun / accelerate launch"
        )
    checkpoint = cfg.corrector.checkpoint
    if checkpoint is not None and not Path(checkpoint).expanduser().is_dir():
        raise HwError(
            f"corrector.checkpoint {checkpoint!r} does not exist; give a saved corrector adapter or model "
            "directory (e.g. runs/atc/RUN/stages/corrector_train/model) or remove the setting"
        )
    atc_asr.check_data(cfg)
    if checkpoint is None:
        return None
    return sources.resolve_model(str(Path(checkpoint).expanduser()), key="corrector.checkpoint")


def _sections(cfg: AtcConfig) -> dict[str, dict[str, Any]]:
    """Each stage's own config inputs, so a change reaches only the stages that read it."""
    settings = to_dict(cfg)
    data, asr_settings = settings["data"], settings["asr"]
    training_data = {
        key: value for key, value in data.items() if key not in ("eval_sets", "max_eval_samples")
    }
    decoding = {key: asr_settings[key] for key in ("language", "batch_size", "max_new_tokens")}
    corrector = settings["corrector"]
    training = ("model", "train", "lora", "quantization", "fine_tuned_prompt", "cutoff_len")
    return {
        "asr_train": {"model": settings["model"], "train": settings["train"], "data": training_data,
                      "asr": asr_settings, "lora": settings["lora"]},
        "transcribe": {"model": settings["model"], "decoding": decoding, "precision": cfg.train.precision,
                       "data": {key: data[key] for key in ("eval_sets", "max_eval_samples", "text_column",
                                                           "shuffle_seed")}, "rows": ROW_FORMAT},
        "pairs": {"model": settings["model"], "decoding": decoding, "precision": cfg.train.precision,
                  "data": training_data},
        "corrector_train": {key: corrector[key] for key in training},
        "correct": {key: value for key, value in corrector.items() if key not in ("train", "fine_tune")},
        "score": {"eval": settings["eval"], "references": settings["reference"] + settings["matrix_reference"]},
    }  # fmt: skip


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
               "digits: `one three four decimal six` = `134.6`, `three thousand two hundred` = `3200`)."],
        samples=runs.read_jsonl(score_dir / SAMPLES_FILE),
        trainer_state=state,
    )  # fmt: skip


def _corrector_training(folder: Path) -> dict[str, Any]:
    """The corrector's fine-tuning as a one-row table: its pairs, parameters, steps and training loss."""
    history, state = runs.read_json(folder / "history.json"), runs.read_json(folder / "trainer_state.json")
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry] or ["—"]
    mean = next(entry["train_loss"] for entry in state["log_history"] if "train_loss" in entry)
    model = history["model"]
    return {
        "title": "Corrector fine-tuning (loss on the answer tokens; the corrector has no validation split)",
        "columns": ["Pairs trained on", "Trainable parameters", "Total parameters", "Steps",
                    "Loss at the first logging step", "Loss at the last logging step", "Mean loss"],
        "rows": [[history["pairs"], model["trainable_parameters"], model["total_parameters"],
                  state["global_step"], losses[0], losses[-1], mean]],
    }  # fmt: skip


def _weights(cfg: AtcConfig, fine_tuned_asr: str | None, corrector: str | None) -> str:
    """One sentence naming exactly the weights behind every row of the matrix."""
    asr_weights = f"ASR zero-shot: {cfg.model.name_or_path}"
    if fine_tuned_asr:
        origin = "from --checkpoint" if cfg.run.checkpoint else "fine-tuned in this run"
        asr_weights += f"; ASR fine-tuned: {origin} ({fine_tuned_asr})"
    llm = f"corrector base: {cfg.corrector.model.name_or_path}"
    if corrector:
        origin = "corrector.checkpoint" if cfg.corrector.checkpoint else "fine-tuned in this run"
        llm += f"; corrector fine-tuned: {origin} ({corrector})"
    return f"{asr_weights}; {llm}"
