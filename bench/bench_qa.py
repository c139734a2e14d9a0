"""P2: evaluation examples/s of `hw qa` (dynamic padding, longest windows first) against the notebook's windows
all padded to 384 tokens, on the same tiny model and the same SQuAD questions; EM/F1 must be identical.

The questions are the real SQuAD v1.1 dev articles in shared/data/squad when present (HW_SHARED_DATA), else
synthetic questions with contexts of SQuAD-like length. The tiny model has the tiny preset's shape, with a
WordPiece vocabulary trained on those texts so that windows have about the lengths BERT's vocabulary gives.
Run: python bench/bench_qa.py [--repeats 3]
"""

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from hw import runs
from hw.config import TrainConfig
from hw.tasks.qa import QAData, SquadScorer, to_features
from hw.tiny import qa as tiny_qa
from hw.tiny.classification import wordpiece_tokenizer
from hw.training import build_trainer

ROOT = Path(__file__).resolve().parents[1]
SQUAD_FILE = "squad_v1.1_dev_subset_5articles.json"
GOAL = 2.0


def dev_questions() -> tuple[Dataset, str]:
    """The SQuAD dev questions in the `squad` schema, or synthetic ones of similar length, and where they come from."""
    shared = Path(os.environ.get("HW_SHARED_DATA", ROOT / ".." / "shared" / "data"))
    if (shared / "squad" / SQUAD_FILE).is_file():
        document = json.loads((shared / "squad" / SQUAD_FILE).read_text(encoding="utf-8"))
        rows = [
            {
                "id": question["id"],
                "context": paragraph["context"],
                "question": question["question"],
                "answers": {
                    "text": [answer["text"] for answer in question["answers"]],
                    "answer_start": [answer["answer_start"] for answer in question["answers"]],
                },
            }
            for article in document["data"]
            for paragraph in article["paragraphs"]
            for question in paragraph["qas"]
        ]
        return Dataset.from_list(rows), f"SQuAD v1.1 dev, the 5 articles of {SQUAD_FILE}"
    return Dataset.from_list(_long_synthetic_questions(1700)), "synthetic, SQuAD-like context lengths"


def _long_synthetic_questions(count: int) -> list[dict]:
    """Tiny-preset questions whose contexts are padded with other people's facts to ~110 words (SQuAD's mean)."""
    rng = random.Random(0)
    rows = []
    for index in range(count):
        row = tiny_qa.question(index, "bench", rng)
        filler = " ".join(tiny_qa.question(0, "filler", rng)["context"] for _ in range(rng.randint(1, 9)))
        rows.append({**row, "context": row["context"] + " " + filler})
    return rows


def tiny_model(questions: Dataset, epochs: int):
    """Tokenizer trained on the questions' texts, and a tiny DistilBERT QA model trained briefly on them.

    Training gives the answers clear margins: a random model's logits nearly tie, and float rounding, which
    differs between padded and unpadded batches, then flips some answers in either pipeline.
    """
    texts = list(questions["context"]) + list(questions["question"])
    tokenizer = wordpiece_tokenizer(iter(texts), cased=False, vocab_size=8000)
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(tiny_qa.encoder_config(tokenizer))
    settings = TrainConfig(
        learning_rate=2e-3, num_train_epochs=epochs, per_device_train_batch_size=32, eval_strategy="no"
    )
    with tempfile.TemporaryDirectory() as scratch:
        build_trainer(
            model,
            settings,
            Path(scratch),
            train_dataset=to_features(questions, tokenizer, QAData()),
            eval_dataset=None,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        ).train()
    return tokenizer, model.eval()


def pipeline(model, tokenizer, questions: Dataset, padding: str, scratch: Path) -> dict:
    """`hw qa`'s evaluation with one padding choice: its windows, scorer and Trainer, and the tokenizing time."""
    data = QAData(padding=padding)
    started = time.perf_counter()
    features = to_features(questions, tokenizer, data)
    tokenize_seconds = time.perf_counter() - started
    scorer = SquadScorer(questions, features, data)
    trainer = build_trainer(
        model,
        TrainConfig(per_device_eval_batch_size=64, precision="fp32"),
        scratch / padding,
        train_dataset=None,
        eval_dataset=features,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=scorer,
    )
    return {"features": features, "scorer": scorer, "trainer": trainer, "tokenize_seconds": tokenize_seconds}


def measure(pipelines: dict[str, dict], questions: int, repeats: int) -> dict[str, dict]:
    """Best-of-`repeats` seconds of prediction + post-processing + scoring, the pipelines taking turns."""
    seconds = {name: [] for name in pipelines}
    for _ in range(repeats):
        for name, parts in pipelines.items():
            started = time.perf_counter()
            metrics = parts["trainer"].predict(parts["features"]).metrics
            seconds[name].append(time.perf_counter() - started)
            parts["metrics"] = metrics
    return {
        name: {
            "windows": len(parts["features"]),
            "tokens_per_window": sum(map(len, parts["features"]["input_ids"])) / len(parts["features"]),
            "tokenize_seconds": parts["tokenize_seconds"],
            "seconds": min(seconds[name]),
            "examples_per_second": questions / min(seconds[name]),
            "exact_match": parts["metrics"]["test_exact_match"],
            "f1": parts["metrics"]["test_f1"],
        }
        for name, parts in pipelines.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per pipeline; the best counts")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the tiny model first")
    arguments = parser.parse_args()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is steadier; both pipelines alike
    questions, source = dev_questions()
    tokenizer, model = tiny_model(questions, arguments.epochs)
    names = {"max_length": "notebook: every window padded to 384", "dynamic": "hw qa: dynamic, longest first"}
    with tempfile.TemporaryDirectory() as scratch:
        pipelines = {name: pipeline(model, tokenizer, questions, name, Path(scratch)) for name in names}
        results = measure(pipelines, len(questions), arguments.repeats)
    same = (
        pipelines["max_length"]["scorer"].latest.predictions
        == pipelines["dynamic"]["scorer"].latest.predictions
    )
    ratio = results["dynamic"]["examples_per_second"] / results["max_length"]["examples_per_second"]
    print(
        f"\nQA evaluation of {len(questions)} questions ({source}); tiny DistilBERT, batch 64, CPU, 1 thread\n"
    )
    print("| Pipeline | Windows | Tokens/window | Tokenize s | Eval s | Examples/s | EM | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        print(
            f"| {names[name]} | {result['windows']} | {result['tokens_per_window']:.0f} | "
            f"{result['tokenize_seconds']:.2f} | {result['seconds']:.2f} | {result['examples_per_second']:.0f} | "
            f"{result['exact_match']:.4f} | {result['f1']:.4f} |"
        )
    print(f"\nspeed-up {ratio:.2f}× (goal ≥ {GOAL}×); identical predictions: {same}")
    summary = {"source": source, "questions": len(questions), "ratio": ratio, "goal": GOAL}
    summary |= {"identical_predictions": same, "results": results}
    runs.write_json(ROOT / "bench" / "results" / "qa.json", summary)


if __name__ == "__main__":
    main()
