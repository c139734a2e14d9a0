"""P6: tokenizing 650,000 Yelp-length reviews with `hw yelp`'s cached pipeline — throughput, peak memory, re-run.

Each measurement runs in a fresh process, so peak memory (max RSS) and the cached re-run are honest. The baseline
is the notebook's `map(tokenize, padding="max_length")`, measured on `--baseline-fraction` of the reviews (its
Arrow cache holds 512 ids per review: 4 GB at full size). The tokenizer is the tiny preset's WordPiece unless
`--tokenizer` names a real one (e.g. a local bert-base-cased). Usage: python bench/bench_tokenize.py
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=650_000)
    parser.add_argument("--baseline-fraction", type=float, default=0.1)
    parser.add_argument("--tokenizer", default="tiny:bert-cased")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hw-bench-tokenize")
    parser.add_argument("--measure", choices=["hw", "notebook"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return _measure_in_this_process(args)
    reviews = _write_reviews(args.workdir, args.reviews)
    baseline = _write_reviews(args.workdir, int(args.reviews * args.baseline_fraction))
    rows = {
        "hw, first run": _child(args, "hw", reviews),
        "hw, cached re-run": _child(args, "hw", reviews),
        "notebook pad-to-512": _child(args, "notebook", baseline),
    }
    print("\n| run | reviews | seconds | reviews/s | peak memory |\n|---|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['reviews']:,} | {row['seconds']:.1f} | {row['reviews'] / row['seconds']:,.0f} | "
              f"{row['peak_rss_mb']:,.0f} MB |")  # fmt: skip
    first, cached, notebook = rows.values()
    ratio = (first["reviews"] / first["seconds"]) / (notebook["reviews"] / notebook["seconds"])
    print(f"\nP6 {first['reviews'] / first['seconds']:,.0f} reviews/s ({ratio:.2f}× the notebook's per-review rate); "
          f"peak {max(first['peak_rss_mb'], cached['peak_rss_mb']):,.0f} MB (goal ≤ 2048 MB); "
          f"cached re-run {cached['seconds']:.1f} s (goal ≤ 10 s). Tokenizer: {args.tokenizer}.")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tokenize.json").write_text(json.dumps(rows, indent=2))


def _write_reviews(workdir: Path, count: int) -> Path:
    from hw.tiny.classification import reviews, write_jsonl

    path = workdir / f"reviews-{count}" / "train.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write_jsonl(partial, reviews(count, list(range(5)), seed=21, short=False))
        partial.rename(path)
    return path


def _child(args: argparse.Namespace, pipeline: str, reviews: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--measure",
        pipeline,
        "--workdir",
        str(reviews.parent),
        "--tokenizer",
        args.tokenizer,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _measure_in_this_process(args: argparse.Namespace) -> None:
    """Load the reviews folder, tokenize it like `hw yelp` (or the notebook), print one JSON line."""
    import datasets
    from transformers import AutoTokenizer

    from hw import sources
    from hw.tasks.yelp import YelpData, _features

    started = time.perf_counter()
    split = sources.load_dataset_dict(str(args.workdir))["train"]
    tokenizer = AutoTokenizer.from_pretrained(sources.resolve_model(args.tokenizer))
    if args.measure == "hw":
        features = _features(split, tokenizer, YelpData())
    else:
        features = split.map(
            lambda batch: tokenizer(batch["text"], padding="max_length", truncation=True), batched=True
        )
    assert len(features) == len(split)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(
        json.dumps(
            {
                "reviews": len(split),
                "seconds": seconds,
                "peak_rss_mb": peak_mb,
                "datasets": datasets.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
