"""`hw atc` configuration: the frozen dataclasses an `AtcConfig` is made of, and the names of the stages."""

from dataclasses import dataclass, field
from typing import Literal

from hw.config import (
    Dataset,
    LoraConfig,
    ModelConfig,
    Quantization,
    ReferenceRun,
    RunOptions,
    Tokens,
    TrainConfig,
)
from hw.generation import ATC_BASE_PROMPT, ATC_FINE_TUNED_PROMPT
from hw.metrics import asr

STAGES = ("asr_train", "transcribe", "pairs", "corrector_train", "correct", "score")
# The ASR columns of the transcripts and of the matrix: the base Whisper, and the one fine-tuned in the run
# (or given with --checkpoint).
ASR_SYSTEMS = ("zero_shot", "fine_tuned")


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: a split of a speech dataset with a `text` column of references."""

    name: str
    """Short name used in tables and samples (`atcosim`, `atco2`)."""
    dataset: Dataset
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

    dataset: Dataset = "Jzuluaga/atcosim_corpus"
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
    max_new_tokens: Tokens = 128
    """Tokens generated at most per clip."""
    validation_generate_samples: int | None = None
    """Validation clips transcribed at each evaluation of ASR training for `eval_wer` / `eval_cer` (and
    `train.metric_for_best_model: wer|cer`); None: every one, 0: the loss only."""


@dataclass(frozen=True)
class CorrectorConfig:
    """The LLM that corrects transcripts: its base prompted, and LoRA/QLoRA-tuned on (hypothesis → reference)."""

    model: ModelConfig
    train: TrainConfig
    lora: LoraConfig
    quantization: Quantization = "4bit"
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
    cutoff_len: Tokens = 256
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
    corrector: CorrectorConfig | None
    """The LLM correcting the transcripts; None (`--set corrector=null`) scores the ASR alone."""
    lora: LoraConfig | None = None
    """ASR LoRA adapters; None fine-tunes every weight, as the course does with whisper-small."""
    asr: AsrSettings = field(default_factory=AsrSettings)
    eval: AtcEval = field(default_factory=AtcEval)
    stages: StageSelection = field(default_factory=StageSelection)
    reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown above this run's in the report's main table (keys `set/asr/corrector/wer`)."""
    matrix_reference: list[ReferenceRun] = field(default_factory=list)
    """Published numbers shown only in the matrices, e.g. the homework's mean of per-utterance WER."""

    def problems(self) -> list[str]:
        chosen = self.stages.only or self.stages.start
        found = []
        if chosen and not self.run.resume:  # without it, a new run would compute every stage anyway
            found.append(
                "stages: --stage/--from-stage belong to an existing run; add --resume [--output-dir RUN]"
            )
        if self.train.metric_for_best_model in ("wer", "cer") and self.asr.validation_generate_samples == 0:
            found.append(
                f"train.metric_for_best_model: {self.train.metric_for_best_model} needs validation transcripts; "
                "set asr.validation_generate_samples above 0 (or null: every validation clip)"
            )
        return found
