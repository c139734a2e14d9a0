"""P: `hw atc` correction throughput: batched corrector generation against one hypothesis at a time.

Both decode greedily with the same tiny model, the tiny corrector base (`tiny:atc-llama`, which copies the
hypothesis after the fine-tuning prompt and stops at `</s>`), on the same noisy tiny ATC hypotheses (a third of
the words replaced at random), through the same `generate_batch` and answer extraction; only the batch size
differs. Both run on one thread. Usage: python bench/bench_atc.py [--hypotheses 256 --batch-size 32]
"""

import argparse
import json
import random
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypotheses", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()

    import torch

    from hw.config import ModelConfig
    from hw.generation import ATC_FINE_TUNED_PROMPT, extract_answer, generate_batch
    from hw.tasks.atc.correct import ATC_ROLE_PREFIXES, ATC_STOP_MARKERS, load_corrector
    from hw.tiny.atc import sentences
    from hw.tiny.whisper import LANGUAGE_UNITS

    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention
    tokenizer, model = load_corrector(ModelConfig("tiny:atc-llama"), "none")
    generator = random.Random(0)
    hypotheses = [
        " ".join(
            generator.choice(LANGUAGE_UNITS["en"]) if generator.random() < 1 / 3 else word
            for word in phrase.split()
        )
        for phrase in sentences(args.hypotheses, seed=9)
    ]
    prompts = [ATC_FINE_TUNED_PROMPT.format(hypothesis=hypothesis) for hypothesis in hypotheses]
    settings = {"max_new_tokens": args.max_new_tokens, "do_sample": False}

    def corrected(batch_size: int) -> tuple[list[str], float]:
        started = time.perf_counter()
        raw = generate_batch(model, tokenizer, prompts, settings, batch_size)
        answers = [
            extract_answer(text, stop_markers=ATC_STOP_MARKERS, role_prefixes=ATC_ROLE_PREFIXES)
            for text in raw
        ]
        return answers, time.perf_counter() - started

    corrected(args.batch_size)  # warm-up: first-call allocations would count against whichever runs first
    batched, batched_seconds = corrected(args.batch_size)
    one_by_one, single_seconds = corrected(1)
    mismatches = sum(ours != theirs for ours, theirs in zip(batched, one_by_one, strict=True))
    rows = {
        f"left-padded batches of {args.batch_size}": {"seconds": batched_seconds},
        "one hypothesis per generate call": {"seconds": single_seconds},
    }
    for row in rows.values():
        row.update(hypotheses=len(prompts), hypotheses_per_second=len(prompts) / row["seconds"])
    speedup = single_seconds / batched_seconds
    print("\n| corrector generation | hypotheses | seconds | hypotheses/s |\n|---|---|---|---|")
    for label, row in rows.items():
        print(
            f"| {label} | {row['hypotheses']} | {row['seconds']:.2f} | {row['hypotheses_per_second']:.1f} |"
        )
    print(f"\nspeed-up {speedup:.1f}× (goal ≥ 5×); greedy answers differing: {mismatches} of {len(prompts)} "
          "(goal 0). Tiny model on one CPU thread: relative figures only.")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    summary = {"rows": rows, "speedup": speedup, "mismatches": mismatches, "batch_size": args.batch_size}
    (RESULTS / "atc.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
