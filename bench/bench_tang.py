"""P4: test-set generation with `hw tang`'s batched path against the course's one-prompt-at-a-time loop.

Both generate greedily with the same tiny model: the tiny Llama with a LoRA adapter trained by `hw tang --tiny`
in this run (so it writes poems and stops at `</s>`, like a tuned chat model). The candidate is the task's own
`_generate` (left-padded batches of `eval.batch_size`, answer extraction and scoring included); the baseline is
the course notebook's `evaluate` loop: one prompt per `generate` call, the whole sequence decoded and split at
`[/INST]`. Both run on one thread. Usage: python bench/bench_tang.py [--prompts 96 --batch-size 16]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=50)
    args = parser.parse_args()

    import torch

    from hw import config, models
    from hw.generation import TANG_FORMAT, build_prompt
    from hw.runner import run_homework
    from hw.tasks import tang
    from hw.tiny.causal_lm import poem_records

    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention
    work = Path(tempfile.mkdtemp(prefix="bench-tang-"))
    common = ["generation.do_sample=false", f"generation.max_new_tokens={args.max_new_tokens}",
              f"eval.batch_size={args.batch_size}"]  # fmt: skip
    trained = config.load(tang.TangConfig, "tang", overrides=common, run={"tiny": True})
    run_dir = run_homework(trained, runs_root=work / "runs", reports_dir=work / "reports")
    cfg = config.load(tang.TangConfig, "tang", overrides=common, run={"tiny": True, "eval_only": True,
                                                                      "checkpoint": str(run_dir)})  # fmt: skip
    loaded = models.causal_lm(models.resolve(cfg.model, cfg.run.checkpoint), cfg.quantization)
    tokenizer, model = loaded.processor, loaded.model
    records = poem_records(args.prompts, seed=7)  # unseen first couplets
    poems = tang.Poems(train=[], validation=[], test=records, references=[r["output"] for r in records])
    prompts = [build_prompt(tokenizer, TANG_FORMAT, record)[0] for record in records]

    started = time.perf_counter()
    batched = tang._generate(model, tokenizer, prompts, poems, cfg, cfg.generation)
    batched_seconds = time.perf_counter() - started
    started = time.perf_counter()
    one_by_one = [_course_evaluate(model, tokenizer, prompt, cfg.generation) for prompt in prompts]
    course_seconds = time.perf_counter() - started

    predictions = [row["prediction"] for row in batched.samples]
    mismatches = sum(ours != theirs for ours, theirs in zip(predictions, one_by_one, strict=True))
    rows = {
        f"hw tang, left-padded batches of {args.batch_size}": {"seconds": batched_seconds},
        "course notebook, one prompt per generate call": {"seconds": course_seconds},
    }
    for row in rows.values():
        row.update(prompts=len(prompts), prompts_per_second=len(prompts) / row["seconds"])
    speedup = course_seconds / batched_seconds
    _print(rows, speedup, mismatches, batched.summary)
    RESULTS.mkdir(exist_ok=True)
    summary = {"rows": rows, "speedup": speedup, "mismatches": mismatches, "scores": batched.summary}
    (RESULTS / "tang.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def _course_evaluate(model, tokenizer, prompt: str, decoding) -> str:
    """The course notebook's `evaluate`: one prompt, whole sequence decoded, answer taken after `[/INST]`."""
    import torch
    from transformers import GenerationConfig

    generation_config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size,
        pad_token_id=tokenizer.pad_token_id,
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(
            input_ids=inputs["input_ids"].to(model.device),
            generation_config=generation_config,
            return_dict_in_generate=True,
            output_scores=True,
            max_new_tokens=decoding.max_new_tokens,
        )
    text = tokenizer.decode(output.sequences[0])
    return text.split("[/INST]")[1].replace("</s>", "").replace("<s>", "").strip()


def _print(rows: dict, speedup: float, mismatches: int, scores: dict) -> None:
    print("\n| pipeline | prompts | seconds | prompts/s |\n|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row['prompts']} | {row['seconds']:.2f} | {row['prompts_per_second']:.1f} |")
    print(f"\nP4 speed-up {speedup:.1f}× (goal ≥ 5×); greedy outputs differing: {mismatches} of "
          f"{next(iter(rows.values()))['prompts']} (goal 0); form {scores['form']:.3f}, char-F1 "
          f"{scores['char_f1']:.3f}. Tiny model on one CPU thread: relative figures only.")  # fmt: skip


if __name__ == "__main__":
    main()
