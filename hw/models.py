"""The one place that loads weights: a base model, a saved full model or PEFT adapter on top of it, quantized or
not, with new LoRA adapters when training, merged for inference; and the sentence that names those weights.

Every homework goes through one entry point per model family (`classifier`, `question_answering`, `whisper`,
`causal_lm`). Names are checked first (`resolve`, before any data is read), then whether the weights fit the family
(`weight_checks`, from configs alone); weights load later (`hw.ctranslate2` converts what `whisper` loaded).
Adapter detection, k-bit preparation, merging, device placement, revision and `trust_remote_code` live only here.
"""

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hw import runs, sources, weight_checks
from hw.config import LoraConfig, ModelConfig, Quantization
from hw.errors import HwError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Weights:
    """The weights a run loads, resolved to loadable names before any data or weights are read.

    Attributes:
        model: the config naming the base, its revision and whether its repository code may run.
        base: the base, resolved (a local directory or a Hub id known to resolve); None when a full checkpoint
            with its own tokenizer makes it unnecessary.
        checkpoint: a saved full model or PEFT adapter directory on top of the base; None for the base alone.
        given: how the checkpoint was given (`--checkpoint RUN`), for the weights sentence; None when this run
            trained it.
        key: the setting that names the base, for error messages.
    """

    model: ModelConfig
    base: str | None
    checkpoint: str | None = None
    given: str | None = None
    key: str = "model.name_or_path"

    @property
    def adapter(self) -> bool:
        """True when the checkpoint is a PEFT adapter (applied to the base), not a full model."""
        return self.checkpoint is not None and is_adapter(self.checkpoint)

    @property
    def loads_from(self) -> tuple[str, str | None]:
        """The name and revision `from_pretrained` loads: a saved full model (no revisions), else the base."""
        if self.checkpoint is not None and not self.adapter:
            return self.checkpoint, None
        return self.base, self.model.revision


@dataclass(frozen=True)
class Loaded:
    """A loaded model, its tokenizer (or Whisper processor), and one sentence naming exactly its weights."""

    model: Any
    processor: Any
    weights: str


def is_adapter(directory: str | Path) -> bool:
    """Whether a saved directory holds a PEFT adapter (`adapter_config.json`) rather than a full model."""
    return (Path(directory) / "adapter_config.json").is_file()


def resolve(model: ModelConfig, checkpoint: str | None = None, key: str = "model.name_or_path") -> Weights:
    """Check the base and the checkpoint (a model, adapter or run directory) resolve; no weights load here.

    Raises:
        HwError: a missing directory, something that is no saved model, a damaged weight file, or a Hub id that
            cannot be reached.
    """
    resolved = sources.resolve_checkpoint(checkpoint) if checkpoint else None
    if resolved:
        weight_checks.require_whole(Path(resolved), f"--checkpoint {checkpoint!r}")
    if resolved and is_adapter(resolved):
        _log_base(model, checkpoint, key)
    if resolved and not is_adapter(resolved) and (Path(resolved) / "tokenizer_config.json").is_file():
        return Weights(model, None, resolved, checkpoint, key)  # a full model with its tokenizer: no base
    base = sources.resolve_model(model.name_or_path, model.revision, key=key)
    if sources.is_local(base):
        weight_checks.require_whole(Path(base), f"{key} {model.name_or_path!r}")
    return Weights(model, base, resolved, checkpoint, key)


def _log_base(model: ModelConfig, checkpoint: str, key: str) -> None:
    """Say which base an adapter `--checkpoint` is scored on, and why (`config.load` chose its own by default)."""
    named = sources.checkpoint_base(checkpoint, key.removesuffix(".name_or_path"))
    trained_on, source = named or (None, None)
    if trained_on is not None and trained_on["name_or_path"] == model.name_or_path:
        log.info(
            "base model %s: the one adapter --checkpoint %s was trained on (%s); --set %s=… to score it on another",
            model.name_or_path,
            checkpoint,
            source,
            key,
        )
    else:
        log.info(
            "base model %s, set by %s; adapter --checkpoint %s was trained on %s",
            model.name_or_path,
            key,
            checkpoint,
            trained_on["name_or_path"] if trained_on else "a base it does not record",
        )


def trained_here(weights: Weights, directory: str | Path) -> Weights:
    """The weights this run just saved in `directory`, on the same base."""
    return replace(weights, checkpoint=str(directory), given=None)


def trained_sentence(directory: Path, start: str | None = None) -> str:
    """The weights sentence of a model fine-tuned in this run, optionally naming what it started from."""
    return f"fine-tuned in this run ({directory})" + (f" from {start}" if start else "")


def classifier(weights: Weights, labels: list[str], lora: LoraConfig | None = None) -> Loaded:
    """A sequence classifier with one output per label name; new LoRA adapters when `lora` is given."""
    from transformers import AutoModelForSequenceClassification

    weight_checks.require_family(weights, "classifier")
    names = dict(enumerate(labels))
    head = {"num_labels": len(names), "id2label": names, "label2id": {name: i for i, name in names.items()}}
    model, _ = _pretrained(AutoModelForSequenceClassification, weights, base_options=head)
    if lora is not None:
        model = add_lora(model, lora, task_type="SEQ_CLS")
    if weights.checkpoint:
        sentence = f"checkpoint {weights.given}"
    else:
        sentence = f"base model {weights.model.name_or_path} (classification head untrained)"
    return Loaded(model, _tokenizer(weights), sentence)


def question_answering(weights: Weights, seed: int) -> Loaded:
    """An extractive QA model; a head its files lack starts from the same random weights in every run."""
    from transformers import AutoModelForQuestionAnswering, set_seed

    weight_checks.require_family(weights, "question_answering")
    set_seed(seed)
    model, missing = _pretrained(AutoModelForQuestionAnswering, weights)
    if weights.checkpoint:
        sentence = f"checkpoint {weights.given} ({weights.checkpoint})"
    else:
        sentence = f"base model {weights.model.name_or_path}"
    # A plain encoder has no QA head: those weights are missing from its files and start random. Said of the
    # start only: after fine-tuning, "fine-tuned … from base model X; its QA head started from random weights".
    sentence += (
        f"; its QA head ({', '.join(missing)}) started from random weights"
        if missing
        else " (QA head included)"
    )
    return Loaded(model, _tokenizer(weights), sentence)


def whisper_processor(weights: Weights, language: str, task: str = "transcribe") -> Any:
    """The Whisper processor of the checkpoint when it saved one, else the base's, set to `language` and `task`."""
    from hw import speech

    weight_checks.require_family(weights, "whisper")
    saved = weights.checkpoint and any(
        (Path(weights.checkpoint) / name).is_file()
        for name in ("preprocessor_config.json", "processor_config.json")
    )
    if saved:
        return speech.load_processor(weights.checkpoint, language, task)
    return speech.load_processor(weights.base, language, task, weights.model.revision)


def max_label_tokens(weights: Weights) -> int:
    """Tokens a Whisper transcript may have to be a training label: its decoder's positions (448 for OpenAI's)."""
    return weight_checks.model_config(weights).max_target_positions


def whisper(
    weights: Weights,
    language: str,
    task: str = "transcribe",
    *,
    training: bool = False,
    quantization: Quantization = "none",
    lora: LoraConfig | None = None,
    precision: str = "auto",
) -> Loaded:
    """Whisper to train (quantized as asked, new LoRA adapters when `lora` is given, else every weight in full
    precision) or to score (adapter merged, half precision on a GPU, eval mode), with language and task fixed in
    its generation config.

    Args:
        precision: inference precision, as `TrainConfig.precision` (`auto`: bf16 or fp16 on a GPU, fp32 on CPU).
    """
    from transformers import WhisperForConditionalGeneration

    from hw import speech

    weight_checks.require_family(weights, "whisper")
    if training and lora is None and quantization != "none":  # k-bit weights are frozen: only adapters learn
        raise HwError(
            f"full fine-tuning (lora: null) trains every weight, which {quantization} weights cannot; "
            "set quantization: none, or train LoRA adapters (lora.r=…)"
        )
    options = quantized_loading(quantization) if training else {}
    model, _ = _pretrained(WhisperForConditionalGeneration, weights, base_options=options)
    speech.set_language(model, language, task)
    processor = whisper_processor(weights, language, task)
    if training:
        model.config.use_cache = False  # the cache only serves generation; training recomputes everything
        model = add_lora(model, lora, task_type=None) if lora is not None else model
        return Loaded(model, processor, f"base model {weights.model.name_or_path}")
    base = weights.model.name_or_path
    origin = "from --checkpoint" if weights.given else "trained in this run"
    if weights.checkpoint is None:
        sentence = f"base model {base} (not fine-tuned)"
    elif weights.adapter:
        sentence = f"LoRA adapter {origin} ({weights.checkpoint}) on base model {base}, merged for inference"
    else:
        sentence = f"full model {origin} ({weights.checkpoint})"
    model = for_inference(model, precision)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return Loaded(model, processor, f"{sentence}, {dtype}")


def causal_lm(weights: Weights, quantization: Quantization, lora: LoraConfig | None = None) -> Loaded:
    """A causal LM, quantized while loading on CUDA (one GPU per process), a saved adapter or new LoRA on top.

    Its tokenizer pads (Llama has no pad token: padding is masked everywhere, so any token will do).
    """
    import torch
    from transformers import AutoModelForCausalLM

    weight_checks.require_family(weights, "causal_lm")
    options = quantized_loading(quantization)
    if torch.cuda.is_available():
        options.setdefault("device_map", {"": runs.local_rank()})
    model, _ = _pretrained(AutoModelForCausalLM, weights, options=options)
    if lora is not None:
        model = add_lora(model, lora, task_type="CAUSAL_LM")
    tokenizer = _tokenizer(weights)
    if tokenizer.pad_token is None:
        # Llama has none (the course pads with id 0, its <unk>); left padding with an attention mask in
        # generation, labels -100 in training.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if weights.checkpoint:
        sentence = f"checkpoint {weights.given}"
    else:
        sentence = f"untuned base model {weights.model.name_or_path}"
    return Loaded(model, tokenizer, sentence)


def _pretrained(
    auto_class: Any,
    weights: Weights,
    base_options: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Any, list[str]]:
    """The model of `weights` (base; saved full model; or base + saved adapter) and the weights its files lacked.

    `base_options` apply when the base is loaded (a new head's size, quantization); `options` to every load.
    """
    name, revision = weights.loads_from
    full = weights.checkpoint is not None and not weights.adapter
    model, info = auto_class.from_pretrained(
        name,
        revision=revision,
        trust_remote_code=weights.model.trust_remote_code,
        output_loading_info=True,
        **({} if full else base_options or {}),
        **(options or {}),
    )
    if weights.adapter:
        from peft import PeftModel

        try:
            with _peft_quietly():
                model = PeftModel.from_pretrained(model, weights.checkpoint)
        except RuntimeError as error:
            mismatch = weight_checks.adapter_mismatch(weights, error)
            if mismatch is None:
                raise
            raise mismatch from None
    return model, sorted(info["missing_keys"])


def _tokenizer(weights: Weights) -> Any:
    """The checkpoint's own tokenizer when it saved one, else the base's."""
    from transformers import AutoTokenizer

    if weights.checkpoint and (Path(weights.checkpoint) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(
            weights.checkpoint, trust_remote_code=weights.model.trust_remote_code
        )
    return AutoTokenizer.from_pretrained(
        weights.base, revision=weights.model.revision, trust_remote_code=weights.model.trust_remote_code
    )


def quantized_loading(quantization: Quantization) -> dict[str, Any]:
    """`from_pretrained` arguments that quantize the weights with bitsandbytes while loading, on this process's GPU.

    `4bit` is QLoRA's NF4 with double quantization (Dettmers et al. 2023), computing in bf16 where the GPU has
    it, else fp16; `8bit` is LLM.int8(). bitsandbytes needs CUDA: without it the model loads in full
    precision, and the log says so. `none` asks for full precision.

    Raises:
        HwError: if quantization is asked on a CUDA machine without bitsandbytes installed.
    """
    import torch

    if quantization == "none":
        return {}
    if not torch.cuda.is_available():
        log.warning(
            "no CUDA device: %s quantization (bitsandbytes) needs one, so the model loads in full precision",
            quantization,
        )
        return {}
    if importlib.util.find_spec("bitsandbytes") is None:
        raise HwError(
            f"quantization {quantization!r} needs bitsandbytes, which is not installed; "
            "run `pip install 'hw[gpu]'` or set quantization: none"
        )
    from transformers import BitsAndBytesConfig

    placement = {"device_map": {"": runs.local_rank()}}  # k-bit weights cannot move after loading
    if quantization == "8bit":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), **placement}
    compute_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    return {"quantization_config": config, **placement}


def add_lora(model: Any, lora: LoraConfig, task_type: str | None) -> Any:
    """Wrap a model with PEFT LoRA adapters; everything else is frozen except `modules_to_save`.

    A model loaded in 4 or 8 bits is first prepared for k-bit training (norms in fp32, activation
    checkpointing on), as QLoRA does. Checkpointing is non-reentrant: peft turns no kwargs into `{}`, which torch
    reads as reentrant, and reentrant checkpointing fails under DDP with find_unused_parameters, which the
    Trainer sets for any PEFT model ("Expected to mark a variable ready only once", peft issue #313).
    """
    import peft

    weight_checks.require_lora_targets(model, lora)
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = peft.prepare_model_for_kbit_training(
            model, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    adapter = peft.LoraConfig(
        task_type=task_type,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        modules_to_save=list(lora.modules_to_save) or None,
    )
    with _peft_quietly():
        return peft.get_peft_model(model, adapter)


@contextlib.contextmanager
def _peft_quietly() -> Iterator[None]:
    """Wrap a model with peft without its one FutureWarning per model.

    peft reads `model.is_gradient_checkpointing`, which transformers 5 deprecates for
    `is_activation_checkpointing`: the call is peft's, the warning says nothing a user can act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield


def for_inference(model: Any, precision: str = "auto") -> Any:
    """Merge a LoRA adapter into its base (`merge_and_unload`), move to the GPU in half precision, eval mode.

    Args:
        model: a model, possibly a `PeftModel`.
        precision: `auto`, `bf16`, `fp16` or `fp32` as `TrainConfig.precision`; fp32 on CPU.
    """
    import torch

    from hw.training import precision_flags

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if torch.cuda.is_available():
        flags = precision_flags(precision)
        dtype = torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32
        model = model.to("cuda", dtype=dtype)
    return model.eval()
