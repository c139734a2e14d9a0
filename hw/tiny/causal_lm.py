"""A tiny pretrained Llama-like causal LM and synthetic Tang-poem data in the course's file formats.

The synthetic poems follow rules a small model learns in seconds: after a random first couplet every
character is σ of the character before it (punctuation skipped), σ a fixed cycle through a 40-character
pool; `，` and `。` alternate. A poem of 5-character clauses has 8 of them (a wulü), one of 7-character
clauses 4 (a qijue): the two commonest forms of the real training data (2,644 and 952 of 5,001).

Like a real chat model, the tiny base is pretrained on related text, not on the homework itself
(LoRA on a random base learns poorly, see PITFALLS.md): whole poems as plain text, and the course's
prompt answered by a short appreciation (`此篇描繪景色，…`) instead of a continuation. Fine-tuning then
only has to teach the task, as in the homework.
"""

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hw.generation import TANG_FORMAT, TANG_INSTRUCTION, PromptFormat, build_prompt, tokenize_example

INSTRUCTION = TANG_INSTRUCTION  # the synthetic poems ask what the course's ask
POOL = "山水風雲月花江天雪松竹梅鶴雁舟橋城樓門柳煙霜露星河海草木石泉林鷺鳥魚龍馬春秋夜溪"
# σ: pool[i] -> pool[(i + 17) mod 40], one cycle through the whole pool (17 is prime to 40), so a
# continuation of up to 6 × 7 = 42 characters repeats at most two
SIGMA = {character: POOL[(index + 17) % len(POOL)] for index, character in enumerate(POOL)}
APPRECIATIONS = (
    "此篇描繪景色，意境深遠，令人神往。",
    "此篇抒發情懷，語言優美，感人至深。",
    "此篇詠物言志，對仗工整，韻味悠長。",
    "此篇借景抒情，清新自然，耐人尋味。",
)
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
# Llama-2's layout with the system message outside [INST]; enough to exercise chat-template code paths.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)
CHAT_FORMAT = PromptFormat(template=None)  # the course's messages through the chat template
TRAIN_SIZE, TEST_SIZE = 1200, 30
# 1,200 examples × 3 epochs / 16 = 225 steps, about 25 s on one thread: the loss falls from 3.9 to 1.2
# (the random first couplets keep it above ~1.0).
PRETRAIN_POEMS, PRETRAIN_APPRECIATIONS, PRETRAIN_EPOCHS = 1000, 200, 3
PRETRAIN_BATCH_SIZE, PRETRAIN_LEARNING_RATE = 16, 3e-3


def poem_records(count: int, seed: int) -> list[dict[str, str]]:
    """`count` synthetic poems as `{instruction, input, output}` records (input: the first couplet)."""
    generator = random.Random(seed)
    records = []
    for _ in range(count):
        length = generator.choice((5, 7))
        clauses = ["".join(generator.choices(POOL, k=length)) for _ in range(2)]
        total = 8 if length == 5 else 4
        previous = clauses[-1][-1]
        while len(clauses) < total:
            clause = ""
            for _ in range(length):
                previous = SIGMA[previous]
                clause += previous
            clauses.append(clause)
        text = "".join(clause + ("，" if index % 2 == 0 else "。") for index, clause in enumerate(clauses))
        split = 2 * (length + 1)  # the first couplet with its two punctuation marks
        records.append({"instruction": INSTRUCTION, "input": text[:split], "output": text[split:]})
    return records


def build_poem_data(directory: Path) -> None:
    """Write Tang_training_data.json, Tang_testing_data.json and Tang_testing_gt.txt as the course does."""
    train, test = poem_records(TRAIN_SIZE, seed=1), poem_records(TEST_SIZE, seed=2)
    _write_json(directory / "Tang_training_data.json", train)
    _write_json(
        directory / "Tang_testing_data.json", [{k: r[k] for k in ("instruction", "input")} for r in test]
    )
    # one line per item: the continuation's clauses joined by TAB, no punctuation, no final newline
    lines = ["\t".join(record["output"].replace("，", "。").split("。")[:-1]) for record in test]
    (directory / "Tang_testing_gt.txt").write_text("\n".join(lines), encoding="utf-8")


def build_model(directory: Path) -> None:
    """The tiny tang base: poems and appreciations, pretrained and saved with its tokenizer."""
    pretrained_llama(
        directory,
        build_tokenizer(),
        _pretraining_examples,
        max_positions=256,
        epochs=PRETRAIN_EPOCHS,
        batch_size=PRETRAIN_BATCH_SIZE,
        learning_rate=PRETRAIN_LEARNING_RATE,
    )


def pretrained_llama(
    directory: Path,
    tokenizer,
    examples: Callable[[Any], list[dict[str, list[int]]]],
    *,
    max_positions: int,
    epochs: float,
    batch_size: int,
    learning_rate: float,
) -> None:
    """A tiny Llama pretrained through `training.build_trainer` on `examples(tokenizer)`, saved with its tokenizer."""
    import tempfile

    import torch
    from transformers import DataCollatorForSeq2Seq, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from hw import training
    from hw.config import TrainConfig

    torch.manual_seed(0)
    # 4 layers × (4·64² attention + 3·64·256 MLP) ≈ 262k, plus vocabulary × 64 tied embeddings
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    settings = TrainConfig(
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        warmup_steps=20,
        lr_scheduler_type="cosine",
        eval_strategy="no",
        logging_steps=50,
        seed=0,
        precision="fp32",
        group_by_length=False,
    )
    threads = torch.get_num_threads()
    # 64-wide matrices gain little from a second thread, and lose 7× when other work shares the cores
    # (measured: 6.7 steps/s on one thread, 1.0 on two, 2 cores under load 6)
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            trainer = training.build_trainer(
                model,
                settings,
                Path(scratch),
                train_dataset=examples(tokenizer),
                eval_dataset=None,
                data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
                processing_class=None,
                # Nothing to save; the CPU even beside a GPU, so the weights are alike on every machine.
                save_strategy="no",
                use_cpu=True,
                disable_tqdm=True,
            )
            trainer.train()
    finally:
        torch.set_num_threads(threads)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _pretraining_examples(tokenizer) -> list[dict[str, list[int]]]:
    """Whole poems as plain text, and the course prompt answered by an appreciation; loss on every token."""
    poems = poem_records(PRETRAIN_POEMS, seed=0)
    examples = [
        tokenize_example(
            tokenizer, "", record["input"] + record["output"] + tokenizer.eos_token, mask_prompt=False
        )
        for record in poems
    ]
    for record in poem_records(PRETRAIN_APPRECIATIONS, seed=3):
        # chosen by the couplet's last character, so the base learns to look back across the template
        appreciation = APPRECIATIONS[POOL.index(record["input"][-2]) % len(APPRECIATIONS)]
        prompt, target = build_prompt(tokenizer, TANG_FORMAT, record, appreciation)
        examples.append(tokenize_example(tokenizer, prompt, target, mask_prompt=False))
    return examples


def build_tokenizer():
    """A BPE tokenizer: every poem character one token, the prompt templates merged into a few tokens.

    Merges are learned from the template text around the record's input only, so no merge ever joins
    two poem characters or a template piece with the answer.
    """
    characters = set(POOL + "".join(APPRECIATIONS) + INSTRUCTION + TANG_FORMAT.system + "，。")
    characters |= {chr(code) for code in range(32, 127)} | {"\n", "\t"}
    characters_only = _bpe_tokenizer(characters, corpus=[])  # renders the templates to learn from
    return _bpe_tokenizer(characters, corpus=_template_pieces(characters_only))


def _bpe_tokenizer(characters: set[str], corpus: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    # punctuation stands alone, so a poem's `。` is the same token before the template's newline as inside
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("[，。]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=len(characters) + len(SPECIAL_TOKENS) + 400,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=sorted(characters),
        limit_alphabet=len(characters),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )


def _template_pieces(tokenizer) -> list[str]:
    """The text of both prompt formats (course and chat template) around a record's input."""
    placeholder = "\t"
    record = {"instruction": INSTRUCTION, "input": placeholder}
    prompts = [
        build_prompt(tokenizer, prompt_format, record)[0] for prompt_format in (TANG_FORMAT, CHAT_FORMAT)
    ]
    return [piece for prompt in prompts for piece in prompt.split(placeholder) if piece]


def _write_json(path: Path, records: list[dict[str, str]]) -> None:
    path.write_text(json.dumps(records, ensure_ascii=False, indent=4), encoding="utf-8")
