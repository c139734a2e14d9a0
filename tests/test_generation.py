import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hw.config import LoraConfig, ModelConfig
from hw.errors import HwError
from hw.generation import (
    IGNORE_INDEX,
    ROLE_PREFIXES,
    TANG_FORMAT,
    PromptFormat,
    build_prompt,
    extract_answer,
    generate_batch,
    tokenize_example,
)
from hw.models import Weights, add_lora, causal_lm
from hw.tiny.causal_lm import build_tokenizer

RECORD = {
    "instruction": "以下是一首唐詩的第一句話，請用你的知識判斷並完成整首詩。",
    "input": "山水風雲月，花江天雪松。",
    "output": "竹梅鶴雁舟，橋城樓門柳。",
}
COURSE_PROMPT = (
    "[INST] <<SYS>>\nYou are a helpful assistant and good at writing Tang poem. "
    "你是一個樂於助人的助手且擅長寫唐詩。\n<</SYS>>\n\n"
    "以下是一首唐詩的第一句話，請用你的知識判斷並完成整首詩。\n山水風雲月，花江天雪松。\n[/INST]"
)
CHAT_FORMAT = PromptFormat(template=None)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_course_prompt_and_target_are_the_course_template(tokenizer):
    prompt, target = build_prompt(tokenizer, TANG_FORMAT, RECORD, RECORD["output"])
    assert prompt == COURSE_PROMPT
    assert target == " 竹梅鶴雁舟，橋城樓門柳。</s>"
    assert build_prompt(tokenizer, TANG_FORMAT, RECORD) == (COURSE_PROMPT, "")


def test_chat_template_prompt_drops_bos_and_target_is_what_the_answer_adds(tokenizer):
    prompt, target = build_prompt(tokenizer, CHAT_FORMAT, RECORD, RECORD["output"])
    assert prompt == (
        "<<SYS>>\nYou are a helpful assistant and good at writing Tang poem. "
        "你是一個樂於助人的助手且擅長寫唐詩。\n<</SYS>>\n\n[INST] "
        "以下是一首唐詩的第一句話，請用你的知識判斷並完成整首詩。\n山水風雲月，花江天雪松。 [/INST]"
    )
    assert target == " 竹梅鶴雁舟，橋城樓門柳。</s>"
    assert build_prompt(tokenizer, CHAT_FORMAT, RECORD) == (prompt, "")


def test_prompt_errors_name_the_problem(tokenizer):
    with pytest.raises(HwError, match=r"names the field 'input' but the record has only \['instruction'\]"):
        build_prompt(tokenizer, TANG_FORMAT, {"instruction": "x"})
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(HwError, match="has no chat template; set a raw prompt template"):
        build_prompt(plain, CHAT_FORMAT, RECORD)
    plain.chat_template = "{% if add_generation_prompt %}Answer:{% endif %}{{ messages[-1]['content'] }}"
    with pytest.raises(HwError, match="renders the prompt differently once an answer follows"):
        build_prompt(plain, CHAT_FORMAT, RECORD, "answer")


def test_masking_covers_exactly_the_prompt_token_by_token(tokenizer):
    prompt, target = build_prompt(tokenizer, TANG_FORMAT, RECORD, RECORD["output"])
    example = tokenize_example(tokenizer, prompt, target)
    prompt_length = len(tokenizer(prompt)["input_ids"])
    ids, labels = example["input_ids"], example["labels"]
    assert labels == [IGNORE_INDEX] * prompt_length + ids[prompt_length:]
    assert tokenizer.decode(ids[:prompt_length]) == "<s>" + prompt
    assert tokenizer.decode(labels[prompt_length:]) == target
    assert labels[-1] == tokenizer.eos_token_id  # the `</s>` text became the end-of-sequence token
    assert example["attention_mask"] == [1] * len(ids)
    assert tokenize_example(tokenizer, prompt, target, mask_prompt=False)["labels"] == ids


def test_cutoff_keeps_the_first_tokens(tokenizer):
    prompt, target = build_prompt(tokenizer, TANG_FORMAT, RECORD, RECORD["output"])
    prompt_length = len(tokenizer(prompt)["input_ids"])
    cut = tokenize_example(tokenizer, prompt, target, cutoff_len=prompt_length + 3)
    assert len(cut["input_ids"]) == prompt_length + 3
    assert cut["labels"][prompt_length:] == cut["input_ids"][prompt_length:]
    assert tokenize_example(tokenizer, prompt, target, cutoff_len=4)["labels"] == [IGNORE_INDEX] * 4


def test_a_prompt_merged_with_its_answer_cannot_be_masked(tokenizer):
    # the tiny tokenizer merges "\n[/INST]" into one token, so "\n[/INS" + "T]" tokenizes differently
    with pytest.raises(
        HwError, match=r"merges the end of the prompt \('\\n\[/INS'\) with the answer \('T\]'\)"
    ):
        tokenize_example(tokenizer, "\n[/INS", "T]")


@pytest.fixture(scope="module")
def random_model(tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        initializer_range=0.5,  # peaked logits: no near-ties for padding round-off to flip
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config)


def test_batched_greedy_generation_equals_one_at_a_time_in_the_prompts_order(tokenizer, random_model):
    prompts = [
        "山",
        "山水風雲月花江天雪松竹梅",
        "雲",
        "花江天",
        build_prompt(tokenizer, TANG_FORMAT, RECORD)[0],
    ]
    settings = {"max_new_tokens": 8, "do_sample": False}
    random_model.train()
    batched = generate_batch(random_model, tokenizer, prompts, settings, batch_size=2)
    single = [
        generate_batch(random_model, tokenizer, [prompt], settings, batch_size=1)[0] for prompt in prompts
    ]
    assert batched == single
    assert len(set(batched)) > 1  # the outputs depend on the prompt, so an order mix-up would show
    assert all(len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 8 for text in batched)
    assert random_model.training  # the model's mode is given back


def test_generation_batch_size_must_be_positive(tokenizer, random_model):
    with pytest.raises(HwError, match="generation batch size must be at least 1, got 0"):
        generate_batch(random_model, tokenizer, ["山"], {}, batch_size=0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 綺殿千尋起，離宮百雉餘。</s>", "綺殿千尋起，離宮百雉餘。"),
        ("綺殿千尋起，離宮百雉餘。\n\n這是一首描寫宮殿的詩。", "綺殿千尋起，離宮百雉餘。"),
        ("綺殿千尋起，離宮百雉餘。這首詩描寫了宮殿。", "綺殿千尋起，離宮百雉餘。"),
        ("答：綺殿千尋起，離宮百雉餘。", "綺殿千尋起，離宮百雉餘。"),
        ("以下是完成的詩：\n\n綺殿千尋起，\n離宮百雉餘。\n  \n註：略", "綺殿千尋起，\n離宮百雉餘。"),
        ("Assistant: Sure! Here is the poem:\n綺殿千尋起", "綺殿千尋起"),
        ("[/INST] 綺殿千尋起 [INST] 再寫一首", "綺殿千尋起"),
        ("「綺殿千尋起」", "綺殿千尋起"),
        ("這首詩是唐太宗所作。", ""),
        ("</s>", ""),
        ("", ""),
    ],
)
def test_extract_answer(raw, expected):
    assert extract_answer(raw) == expected


def test_extract_answer_drops_an_echoed_prompt():
    assert extract_answer(COURSE_PROMPT + " 綺殿千尋起</s>", echoes=[COURSE_PROMPT]) == "綺殿千尋起"


def test_extract_answer_takes_caller_prefixes_for_other_tasks():
    raw = "Corrected: 'lufthansa 531 contact zurich' Explanation: I fixed the callsign."
    prefixes = (*ROLE_PREFIXES, "Corrected")
    assert extract_answer(raw, role_prefixes=prefixes) == "lufthansa 531 contact zurich"


def test_load_causal_lm_reads_base_adapter_or_full_model_with_the_right_tokenizer(
    tokenizer, random_model, tmp_path
):
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    random_model.save_pretrained(tmp_path / "base")
    no_pad.save_pretrained(tmp_path / "base")
    adapted = add_lora(
        copy.deepcopy(random_model), LoraConfig(r=2, alpha=4, target_modules=["q_proj"]), "CAUSAL_LM"
    )
    adapted.save_pretrained(tmp_path / "adapter")  # no tokenizer saved beside it
    random_model.save_pretrained(tmp_path / "full")
    tokenizer.save_pretrained(tmp_path / "full")
    base, settings = str(tmp_path / "base"), ModelConfig(name_or_path="unused")

    def load(checkpoint: str | None):
        loaded = causal_lm(Weights(settings, base, checkpoint, checkpoint), "none")
        return loaded.processor, loaded.model

    plain_tokenizer, plain = load(None)
    assert plain_tokenizer.pad_token == "<unk>"  # Llama's fallback: the base saved none
    assert not hasattr(plain, "disable_adapter")
    adapter_tokenizer, on_base = load(str(tmp_path / "adapter"))
    assert on_base.peft_config["default"].r == 2 and adapter_tokenizer.pad_token == "<unk>"
    full_tokenizer, full = load(str(tmp_path / "full"))
    assert full_tokenizer.pad_token == "<pad>"  # the checkpoint's own tokenizer
    assert torch.equal(full.lm_head.weight.cpu(), random_model.lm_head.weight)
