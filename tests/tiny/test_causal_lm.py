import json
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hw.generation import TANG_FORMAT, build_prompt, extract_answer, generate_batch, tokenize_example
from hw.metrics.poem import form_score, score_poems, split_clauses, traditional_share
from hw.tiny.causal_lm import (
    APPRECIATIONS,
    INSTRUCTION,
    POOL,
    SIGMA,
    build_model,
    build_poem_data,
    build_tokenizer,
    poem_records,
)

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_sigma_is_one_cycle_through_the_pool():
    assert SIGMA["山"] == "樓"  # pool index 0 + 17
    assert SIGMA["溪"] == "城"  # (39 + 17) mod 40 = 16
    character, seen = "山", []
    for _ in range(len(POOL)):
        character = SIGMA[character]
        seen.append(character)
    assert sorted(seen) == sorted(POOL)


def test_poem_records_follow_the_rules():
    records = poem_records(200, seed=0)
    assert records == poem_records(200, seed=0)
    assert records != poem_records(200, seed=1)
    for record in records:
        assert record["instruction"] == INSTRUCTION
        couplet = split_clauses(record["input"])
        length = len(couplet[0])
        assert len(split_clauses(record["output"])) == (6 if length == 5 else 2)
        assert form_score(record["input"], record["output"]) == 1.0
        chain = [record["input"][-2]] + [
            character for character in record["output"] if character not in "，。"
        ]
        assert all(SIGMA[before] == after for before, after in zip(chain, chain[1:], strict=False))
        assert traditional_share(record["output"]) == 1.0
    assert {len(split_clauses(record["input"])[0]) for record in records} == {5, 7}


def test_poem_data_is_written_in_the_course_formats(tmp_path):
    build_poem_data(tmp_path)
    train = json.loads((tmp_path / "Tang_training_data.json").read_text(encoding="utf-8"))
    tests = json.loads((tmp_path / "Tang_testing_data.json").read_text(encoding="utf-8"))
    ground_truth = (tmp_path / "Tang_testing_gt.txt").read_text(encoding="utf-8")
    assert len(train) == 1200 and set(train[0]) == {"instruction", "input", "output"}
    assert len(tests) == 30 and set(tests[0]) == {"instruction", "input"}
    lines = ground_truth.split("\n")
    assert len(lines) == 30 and not ground_truth.endswith("\n")  # like the real file
    expected = poem_records(30, seed=2)
    for test, line, record in zip(tests, lines, expected, strict=True):
        assert test["input"] == record["input"]
        assert "，" not in line and "。" not in line
        assert line.split("\t") == split_clauses(record["output"])
        assert form_score(test["input"], line) == 1.0


def test_tokenizer_keeps_poem_characters_whole_and_saves(tmp_path):
    tokenizer = build_tokenizer()
    assert all(len(tokenizer(character, add_special_tokens=False)["input_ids"]) == 1 for character in POOL)
    record = poem_records(1, seed=0)[0]
    prompt, target = build_prompt(tokenizer, TANG_FORMAT, record, record["output"])
    ids = tokenizer(prompt + target)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt + target.removesuffix("</s>")
    # <s>, then the template up to the couplet in 7 tokens (cut at its three `，`/`。`), then `\n[/INST]`
    assert len(tokenizer(prompt)["input_ids"]) == 1 + 7 + len(record["input"]) + 1
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(prompt + target)["input_ids"] == ids
    assert reloaded.chat_template == tokenizer.chat_template


@pytest.fixture
def one_thread():
    """Tiny models run as fast on one thread and do not collapse when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_lora_on_the_pretrained_base_learns_to_continue_poems(tmp_path, one_thread):
    """The tiny base writes an appreciation; LoRA r 8 on all projections teaches it to continue poems."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    started = time.perf_counter()
    build_model(tmp_path / "base")
    build_poem_data(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    assert 250_000 < model.num_parameters() < 350_000
    train = json.loads((tmp_path / "Tang_training_data.json").read_text(encoding="utf-8"))[:400]
    tests = json.loads((tmp_path / "Tang_testing_data.json").read_text(encoding="utf-8"))
    references = (tmp_path / "Tang_testing_gt.txt").read_text(encoding="utf-8").splitlines()

    def scores(candidate) -> tuple[list[str], dict[str, float]]:
        prompts = [build_prompt(tokenizer, TANG_FORMAT, test)[0] for test in tests]
        raw = generate_batch(candidate, tokenizer, prompts, {"max_new_tokens": 50, "do_sample": False}, 16)
        answers = [extract_answer(text) for text in raw]
        return answers, score_poems([test["input"] for test in tests], answers, references)[1]

    answers, before = scores(model)
    assert all(answer in APPRECIATIONS for answer in answers)
    assert before["form"] == 0.0 and before["char_f1"] == 0.0

    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.05, target_modules=LORA_MODULES, task_type="CAUSAL_LM"
    )
    adapted = get_peft_model(model, lora)
    examples = [
        tokenize_example(tokenizer, *build_prompt(tokenizer, TANG_FORMAT, r, r["output"])) for r in train
    ]
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=16,
        num_train_epochs=3,
        learning_rate=5e-3,
        warmup_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    Trainer(model=adapted, args=arguments, train_dataset=examples, data_collator=collator).train()
    _, after = scores(adapted)
    assert after["form"] >= 0.9
    assert after["char_f1"] >= 0.7
    assert after["chrf"] >= 0.6
    print(f"tiny Tang LoRA: {before} -> {after} in {time.perf_counter() - started:.0f} s")
