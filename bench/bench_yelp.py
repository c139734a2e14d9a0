"""P1: training throughput and padding efficiency of `hw yelp` against the notebook's pad-to-512 pipeline.

Both runs train the same tiny BERT through the real `hw yelp` code path on the same synthetic reviews whose
lengths follow Yelp's (median about 110 words, long tail, truncated at 512 tokens); only the padding choice and
the length-grouped sampler differ. Padding efficiency = real tokens / computed tokens, from the sampler `hw`
gives the Trainer (and, for comparison, transformers' own LengthGroupedSampler) over the same lengths. Usage: python bench/bench_yelp.py [--train 2000 --epochs 3]
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)  # the course notebook's
    args = parser.parse_args()

    from hw import config
    from hw.runner import run_homework
    from hw.tasks import yelp
    from hw.tiny.classification import reviews, write_jsonl

    work = Path(tempfile.mkdtemp(prefix="bench-yelp-"))
    data = work / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", reviews(args.train, list(range(5)), seed=11, short=False))
    write_jsonl(data / "test.jsonl", reviews(args.test, list(range(5)), seed=12, short=False))
    common = [f"data.dataset={data}", f"train.num_train_epochs={args.epochs}", "data.max_train_samples=null",
              "data.max_eval_samples=null", "train.eval_strategy=no"]  # fmt: skip
    settings = {
        "hw yelp (dynamic padding, length-grouped)": ["data.padding=dynamic", "train.group_by_length=true"],
        "notebook (pad to 512, random order)": ["data.padding=max_length", "train.group_by_length=false"],
    }
    rows = {}
    for label, overrides in settings.items():
        cfg = config.load(yelp.YelpConfig, "yelp", overrides=common + overrides, run={"tiny": True})
        run_dir = run_homework(cfg, runs_root=work / "runs", reports_dir=work / "reports")
        rows[label] = _measure(run_dir, dynamic="dynamic" in overrides[0])
    _print(rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "yelp.json").write_text(json.dumps(rows, indent=2))


def _measure(run_dir: Path, dynamic: bool) -> dict:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    summary = next(entry for entry in state["log_history"] if "train_runtime" in entry)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lengths = _token_lengths(run_dir)
    batch = state["train_batch_size"]
    return {
        "train_samples_per_second": summary["train_samples_per_second"],
        "train_runtime_s": summary["train_runtime"],
        "padding_efficiency": _efficiency(lengths, batch, _hw_order)
        if dynamic
        else sum(lengths) / (len(lengths) * 512),
        "transformers_sampler_efficiency": _efficiency(lengths, batch, _transformers_order)
        if dynamic
        else None,
        "accuracy": metrics["final"]["accuracy"],
        "median_tokens": statistics.median(lengths),
    }


def _token_lengths(run_dir: Path) -> list[int]:
    """Token counts of the training reviews, with the run's own tokenizer and truncation."""
    import datasets
    import yaml
    from transformers import AutoTokenizer

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    texts = datasets.load_dataset("json", data_files=str(Path(config["data"]["dataset"]) / "train.jsonl"))[
        "train"
    ]["text"]
    return [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=512)["input_ids"]]


def _hw_order(lengths: list[int], batch_size: int) -> list[int]:
    from hw.training import LengthGroupedBatches

    return list(LengthGroupedBatches(lengths, batch_size, seed=42))


def _transformers_order(lengths: list[int], batch_size: int) -> list[int]:
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    return list(
        LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(42))
    )


def _efficiency(lengths: list[int], batch_size: int, sampler) -> float:
    """Real / computed tokens when `sampler` orders the examples and the DataLoader cuts batches."""
    order = sampler(lengths, batch_size)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    computed = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return sum(lengths) / computed


def _print(rows: dict) -> None:
    (ours, ours_row), (base, base_row) = rows.items()
    speedup = ours_row["train_samples_per_second"] / base_row["train_samples_per_second"]
    print("\n| pipeline | train samples/s | padding efficiency | accuracy |\n|---|---|---|---|")
    for label, row in rows.items():
        print(
            f"| {label} | {row['train_samples_per_second']:.1f} | {row['padding_efficiency']:.1%} | {row['accuracy']:.3f} |"
        )
    print(f"\nP1 speed-up {speedup:.2f}× (goal ≥ 2.5×); padding efficiency {ours_row['padding_efficiency']:.1%} "
          f"(goal ≥ 90 %; transformers' LengthGroupedSampler: {ours_row['transformers_sampler_efficiency']:.1%}); accuracy {ours_row['accuracy']:.3f} vs {base_row['accuracy']:.3f}; "
          f"median review {ours_row['median_tokens']:.0f} tokens. Tiny BERT on CPU: relative figures only.")  # fmt: skip


if __name__ == "__main__":
    main()
