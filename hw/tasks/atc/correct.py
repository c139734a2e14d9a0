"""`hw atc` corrector stages: fine-tune the LLM on (hypothesis → reference) pairs, and correct every transcript
with the base prompt, the retrieval-augmented prompt and the fine-tuned model."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq

from hw import models, runs
from hw.config import LoraConfig, ModelConfig, TrainConfig
from hw.errors import HwError
from hw.generation import (
    ATC_RAG_EXAMPLE,
    ATC_RAG_PROMPT,
    EXPLANATION_MARKERS,
    IGNORE_INDEX,
    ROLE_PREFIXES,
    extract_answer,
    generate_batch,
    raw_format,
    tokenize_example,
)
from hw.tasks.atc.config import ASR_SYSTEMS
from hw.training import (
    build_trainer,
    drop_checkpoints,
    parameter_counts,
    train,
    write_trainer_state,
)

log = logging.getLogger(__name__)

# Where a chat model stops answering: a new made-up example, a question about the sentence, an explanation.
ATC_STOP_MARKERS = (*EXPLANATION_MARKERS, "Explanation", "Air traffic control sentence", "DO NOT SAY",
                    "What does", "What is", "Your turn", "Please let me know")  # fmt: skip
# Lead-ins before the answer: the prompt's last word, and the prompt's own phrasing restated ("Air traffic
# control sentence dictated by whisper: 'X'", 1 in 8 of the homework's raw ATCO2 outputs).
ATC_ROLE_PREFIXES = (*ROLE_PREFIXES, "Corrected", "Air traffic control sentence dictated by whisper",
                     "Air traffic control sentence")  # fmt: skip


@dataclass(frozen=True)
class CorrectorTrainInput:
    """What `train_corrector` reads."""

    model: ModelConfig
    train: TrainConfig
    lora: LoraConfig
    quantization: str
    fine_tuned_prompt: str
    cutoff_len: int
    pairs: str
    """The `pairs` stage's key."""

    @property
    def seed(self) -> int:
        """The seed the stage starts from (`stages.stage_seed`): `train.seed`, in the key through `train`."""
        return self.train.seed


@dataclass(frozen=True)
class CorrectInput:
    """What `correct` reads."""

    model: ModelConfig
    quantization: str
    base_prompt: str
    fine_tuned_prompt: str
    rag_k: int
    batch_size: int
    max_new_tokens: int
    transcripts: str
    """The `transcribe` stage's key."""
    pairs: str | None
    """The `pairs` stage's key when RAG reads the pairs (`rag_k` above 0), else None."""
    corrector: str | None
    """The fine-tuned corrector: `corrector_train`'s key, or the `corrector.checkpoint` directory, or None."""


def load_corrector(model: ModelConfig, quantization: str, adapter: str | None = None) -> tuple[Any, Any]:
    """Tokenizer and causal LM (quantized on CUDA), with a saved adapter on top when given.

    Args:
        model: the corrector's `ModelConfig`.
        quantization: `4bit`, `8bit` or `none`.
        adapter: a PEFT adapter directory, or a full fine-tuned model directory, or None for the base.
    """
    weights = models.resolve(model, key="corrector.model.name_or_path")
    loaded = models.causal_lm(models.trained_here(weights, adapter) if adapter else weights, quantization)
    return loaded.processor, loaded.model


def train_corrector(corrector: CorrectorTrainInput, pairs_dir: Path, folder: Path, resume: bool) -> None:
    """LoRA (QLoRA on CUDA) fine-tuning on `<s>[INST] {hypothesis} [/INST] {reference}</s>`, loss on the answer."""
    pairs = runs.read_jsonl(pairs_dir / "pairs.jsonl")
    weights = models.resolve(corrector.model, key="corrector.model.name_or_path")
    loaded = models.causal_lm(weights, corrector.quantization, lora=corrector.lora)
    tokenizer, model = loaded.processor, loaded.model
    prompt_format = raw_format(corrector.fine_tuned_prompt)
    examples = []
    for pair in pairs:
        prompt = prompt_format.user.format(hypothesis=pair["hypothesis"])
        target = f"{prompt_format.answer_prefix}{pair['reference']}{tokenizer.eos_token}"
        examples.append(tokenize_example(tokenizer, prompt, target, cutoff_len=corrector.cutoff_len))
    examples = [example for example in examples if example["labels"][-1] != IGNORE_INDEX]
    if not examples:
        raise HwError(
            f"no training pair keeps an answer token within corrector.cutoff_len={corrector.cutoff_len}"
        )
    trainer = build_trainer(
        model,
        corrector.train,
        folder,
        train_dataset=examples,
        eval_dataset=None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
        processing_class=tokenizer,
        remove_unused_columns=False,  # PEFT's forward signature hides the model's input names
        label_names=["labels"],
    )
    train(trainer, folder, resume)
    trainer.save_model(str(folder / "model"))
    write_trainer_state(trainer, folder)  # its losses make the report's corrector table
    runs.write_json(folder / "history.json", {"pairs": len(examples), "model": parameter_counts(model)})
    drop_checkpoints(folder)


def similar_pairs(queries: list[str], pool: list[str], k: int, batch_size: int = 256) -> list[list[int]]:
    """Indices of the `k` pool texts most similar to each query: cosine of TF-IDF word vectors.

    Args:
        queries: texts to find neighbours for (the hypotheses to correct).
        pool: texts to search (the training pairs' hypotheses).
        k: neighbours per query, most similar first.
    """
    vocabulary: dict[str, int] = {}
    documents = [
        [vocabulary.setdefault(word, len(vocabulary)) for word in text.lower().split()] for text in pool
    ]
    frequency = torch.zeros(len(vocabulary))
    for words in documents:
        frequency[list(set(words))] += 1
    idf = torch.log((1 + len(pool)) / (1 + frequency)) + 1  # scikit-learn's smoothed idf
    pool_vectors = _tf_idf([words for words in documents], idf).to_sparse()
    neighbours = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        ids = [[vocabulary[word] for word in text.lower().split() if word in vocabulary] for text in batch]
        scores = torch.sparse.mm(pool_vectors, _tf_idf(ids, idf).T)  # pool × batch
        neighbours += scores.topk(min(k, len(pool)), dim=0).indices.T.tolist()
    return neighbours


def _tf_idf(documents: list[list[int]], idf: torch.Tensor) -> torch.Tensor:
    """Rows of L2-normalized TF-IDF weights (a row of zeros for a document without known words)."""
    vectors = torch.zeros(len(documents), len(idf))
    for row, words in enumerate(documents):
        for word in words:
            vectors[row, word] += idf[word]
    return torch.nn.functional.normalize(vectors, dim=1)


def _rag_prompts(hypotheses: list[str], pairs: list[dict], k: int) -> list[str]:
    """The base prompt with the k most similar training pairs as solved examples before the question."""
    neighbours = similar_pairs(hypotheses, [pair["hypothesis"] for pair in pairs], k)
    prompts = []
    for hypothesis, indices in zip(hypotheses, neighbours, strict=True):
        examples = "".join(ATC_RAG_EXAMPLE.format(**pairs[index]) for index in indices)
        prompts.append(ATC_RAG_PROMPT.format(examples=examples, hypothesis=hypothesis))
    return prompts


def corrections(
    corrector: CorrectInput, hypotheses: list[str], pairs: list[dict] | None, checkpoint: str | None
) -> dict[str, list[tuple[str, str]]]:
    """Each hypothesis corrected by every corrector `corrector` names, as the `correct` stage prompts them.

    Args:
        pairs: the training pairs the retrieval-augmented prompt draws examples from (None without RAG).
        checkpoint: the fine-tuned corrector's directory, or None.

    Returns:
        Per corrector (`base`, `rag`, `fine_tuned`), each hypothesis's raw generation and extracted answer (empty
        when nothing could be extracted).
    """
    prompts = {"base": [corrector.base_prompt.format(hypothesis=hypothesis) for hypothesis in hypotheses]}
    if corrector.rag_k:
        assert pairs is not None, "RAG draws its examples from the training pairs"
        prompts["rag"] = _rag_prompts(hypotheses, pairs, corrector.rag_k)
    settings = {"max_new_tokens": corrector.max_new_tokens, "do_sample": False}
    tokenizer, model = load_corrector(corrector.model, corrector.quantization)
    raw = {
        name: generate_batch(model, tokenizer, texts, settings, corrector.batch_size)
        for name, texts in prompts.items()
    }
    if checkpoint is not None:
        tokenizer, model = load_corrector(corrector.model, corrector.quantization, adapter=checkpoint)
        fine_tuned = [corrector.fine_tuned_prompt.format(hypothesis=hypothesis) for hypothesis in hypotheses]
        raw["fine_tuned"] = generate_batch(model, tokenizer, fine_tuned, settings, corrector.batch_size)
    return {
        name: [
            (text, extract_answer(text, stop_markers=ATC_STOP_MARKERS, role_prefixes=ATC_ROLE_PREFIXES))
            for text in outputs
        ]
        for name, outputs in raw.items()
    }


def correct(
    corrector: CorrectInput,
    transcripts_dir: Path,
    pairs_dir: Path | None,
    checkpoint: str | None,
    folder: Path,
) -> None:
    """`corrections.jsonl`: every (evaluation clip, ASR) hypothesis corrected by each available corrector.

    The folders are where the stages that `corrector` names by key wrote their outputs; `checkpoint` is the
    fine-tuned corrector's directory.

    A row names its clip as the transcript does (`set` and `index`, its position there) and holds the raw
    generation, the extracted answer, and `fallback: true` when nothing could be extracted and the hypothesis
    itself stands as the answer.
    """
    assert (checkpoint is None) == (corrector.corrector is None), (
        "a fine-tuned corrector exactly when keyed by one"
    )
    transcripts = runs.read_jsonl(transcripts_dir / "transcripts.jsonl")
    systems = [system for system in ASR_SYSTEMS if system in transcripts[0]]
    cells = [(row, system) for system in systems for row in transcripts]
    hypotheses = [row[system] for row, system in cells]
    pairs = None
    if corrector.rag_k:
        assert pairs_dir is not None and corrector.pairs is not None, (
            "the pairs stage runs whenever RAG is on"
        )
        pairs = runs.read_jsonl(pairs_dir / "pairs.jsonl")
    corrected = corrections(corrector, hypotheses, pairs, checkpoint)
    rows = []
    for name, outputs in corrected.items():
        for (row, system), hypothesis, (text, answer) in zip(cells, hypotheses, outputs, strict=True):
            rows.append({"set": row["set"], "index": row["index"], "audio_id": row["audio_id"], "asr": system,
                         "corrector": name, "raw": text, "answer": answer or hypothesis,
                         "fallback": not answer})  # fmt: skip
    runs.write_jsonl(folder / "corrections.jsonl", rows)
    log.info("corrected %d hypotheses with %s", len(hypotheses), ", ".join(corrected))
