"""Causal-LM helpers shared by tang and atc: prompts, training examples, batched generation, answers.

One function, `build_prompt`, turns a record into the prompt *and* the training target, so what the
model is trained on and what it is asked at generation time cannot drift apart.
"""

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from hw import runs
from hw.errors import HwError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # labels the loss skips (PyTorch cross-entropy's default ignore_index)

TANG_SYSTEM = (
    "You are a helpful assistant and good at writing Tang poem. 你是一個樂於助人的助手且擅長寫唐詩。"
)
# The course's instruction before every first couplet (COURSE.md).
TANG_INSTRUCTION = "以下是一首唐詩的第一句話，請用你的知識判斷並完成整首詩。"
LLAMA2_TEMPLATE = "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user}\n[/INST]"

# Text that never belongs to an answer: end-of-turn tokens and chat-template markers of common models.
TEMPLATE_MARKERS = (
    "</s>", "<s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>",
    "<|eot_id|>", "<|im_end|>", "<|im_start|>", "<|endoftext|>",
)  # fmt: skip
# Where a chat model starts explaining its answer instead of giving it.
EXPLANATION_MARKERS = ("Explanation:", "Note:", "This poem", "這首詩", "这首诗", "解釋：", "說明：", "註：")
ROLE_PREFIXES = ("Assistant", "AI", "Answer", "Response", "答", "回答", "助手")


@dataclass(frozen=True)
class PromptFormat:
    """How a record (a dict of text fields) becomes a prompt and a training target.

    Attributes:
        user: the user's message, a `str.format` template over the record's fields.
        system: the system message; None for none.
        template: a raw prompt template over `{system}` and `{user}`; None to use the tokenizer's own
            chat template instead.
        answer_prefix: raw templates only: the text between the prompt and the answer.
    """

    user: str = "{instruction}\n{input}"
    system: str | None = TANG_SYSTEM
    template: str | None = LLAMA2_TEMPLATE
    answer_prefix: str = " "


TANG_FORMAT = PromptFormat()  # the course's: prompt `[INST] <<SYS>>…[/INST]`, target ` {output}</s>`
# The ATC homework's corrector prompts (COURSE.md): the base chat model is asked in plain text; the fine-tuned
# one learns `<s>[INST] {hypothesis} [/INST] {reference}</s>` (the tokenizer adds `<s>`).
_ATC_INSTRUCTION = "DO NOT SAY Explanation. DO NOT SAY answer. \n"
_ATC_QUESTION = "Air traffic control sentence dictated by whisper : '{hypothesis}'\nCorrected: "
ATC_BASE_PROMPT = _ATC_INSTRUCTION + _ATC_QUESTION
ATC_FINE_TUNED_PROMPT = "[INST] {hypothesis} [/INST]"
# The homework's "simple RAG": solved training pairs as worked examples before the question, in its own words.
ATC_RAG_PROMPT = _ATC_INSTRUCTION + "{examples}" + _ATC_QUESTION
ATC_RAG_EXAMPLE = _ATC_QUESTION + "{reference}\n"


def raw_format(user: str) -> PromptFormat:
    """A prompt used as it is, no system message or chat template: `user` over the record's fields."""
    return PromptFormat(user=user, system=None, template="{user}", answer_prefix=" ")


def build_prompt(
    tokenizer, prompt_format: PromptFormat, record: Mapping[str, str], answer: str | None = None
) -> tuple[str, str]:
    """Return `(prompt, target)` for a record; the target is "" when no answer is given.

    The target ends with the end-of-sequence token. Prompts never start with the tokenizer's
    beginning-of-sequence text: tokenizing adds that token, once.

    Raises:
        HwError: if the record lacks a field the format names, or no chat template is available.
    """
    try:
        user = prompt_format.user.format(**record)
    except KeyError as missing:
        raise HwError(
            f"the prompt names the field {missing} but the record has only {sorted(record)}; "
            "fix the prompt's user template or the data's columns"
        ) from None
    if prompt_format.template is not None:
        prompt = prompt_format.template.format(system=prompt_format.system or "", user=user)
        target = "" if answer is None else prompt_format.answer_prefix + answer + tokenizer.eos_token
        return prompt, target
    return _chat_prompt(tokenizer, prompt_format.system, user, answer)


def _chat_prompt(tokenizer, system: str | None, user: str, answer: str | None) -> tuple[str, str]:
    """`build_prompt` through the tokenizer's chat template: the target is what the answer adds."""
    if not tokenizer.chat_template:
        raise HwError(
            f"the tokenizer of {tokenizer.name_or_path!r} has no chat template; "
            "set a raw prompt template (e.g. the course's Llama-2 template) instead"
        )
    system_messages = [{"role": "system", "content": system}] if system else []
    messages = [*system_messages, {"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if answer is None:
        return _without_bos(tokenizer, prompt), ""
    conversation = messages + [{"role": "assistant", "content": answer}]
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    if not full.startswith(prompt):
        raise HwError(
            f"the chat template of {tokenizer.name_or_path!r} renders the prompt differently once an answer "
            "follows, so the prompt cannot be masked; use a raw prompt template instead"
        )
    return _without_bos(tokenizer, prompt), full[len(prompt) :]


def _without_bos(tokenizer, prompt: str) -> str:
    bos = tokenizer.bos_token
    return prompt.removeprefix(bos) if bos else prompt


def tokenize_example(
    tokenizer, prompt: str, target: str, cutoff_len: int = 256, mask_prompt: bool = True
) -> dict[str, list[int]]:
    """Token ids, attention mask and labels of `prompt + target`, cut at `cutoff_len` tokens.

    With `mask_prompt` the prompt's labels are IGNORE_INDEX, so the loss covers the answer only; without
    it every token is a label (the course's behaviour). An example whose prompt fills the cutoff keeps
    no label at all: callers drop those.

    Raises:
        HwError: if the tokenizer merges the prompt's last token with the answer's first one.
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    input_ids = tokenizer(prompt + target)["input_ids"]
    if input_ids[: len(prompt_ids)] != prompt_ids:
        raise HwError(
            f"the tokenizer merges the end of the prompt ({prompt[-12:]!r}) with the answer "
            f"({target[:12]!r}), so the prompt cannot be masked; end the prompt template with a space, "
            "a newline or a special token"
        )
    input_ids = input_ids[:cutoff_len]
    labels = list(input_ids)
    if mask_prompt:
        masked = min(len(prompt_ids), len(labels))
        labels[:masked] = [IGNORE_INDEX] * masked
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def generate_batch(
    model, tokenizer, prompts: Sequence[str], generation_kwargs: Mapping, batch_size: int
) -> list[str]:
    """Generate for every prompt in left-padded batches; return the new text only, in the prompts' order.

    Prompts are batched longest first (similar lengths waste little padding, and an out-of-memory
    error shows in the first batch). Special tokens are dropped from the decoded text. The model runs in
    eval mode and gets its previous mode back. In a distributed run each process generates its share of
    the batches (`runs.spread`) and all get every answer.

    Raises:
        HwError: if `batch_size` is below 1.
    """
    import torch  # deferred: importing this module for prompts alone stays light

    if batch_size < 1:
        raise HwError(
            f"generation batch size must be at least 1, got {batch_size}; set a positive batch size"
        )
    assert tokenizer.pad_token_id is not None, "set tokenizer.pad_token before batched generation"
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda index: -lengths[index])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    counter = running_count(len(batches), len(order), "prompts")

    def generate(indices: list[int]) -> list[str]:
        batch = tokenizer(
            [prompts[index] for index in indices], return_tensors="pt", padding=True, padding_side="left"
        ).to(model.device)
        with torch.inference_mode(), max_new_tokens_only(model, generation_kwargs):
            output = model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                **{"pad_token_id": tokenizer.pad_token_id, **generation_kwargs},
            )
        logger.info("generated %s", counter(len(indices)))
        return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)

    answers = [""] * len(prompts)
    was_training = model.training
    model.eval()
    for indices, texts in zip(batches, runs.spread(generate, batches), strict=True):
        for index, text in zip(indices, texts, strict=True):
            answers[index] = text
    model.train(was_training)
    return answers


def running_count(batches: int, items: int, noun: str):
    """A counter of generated batches: each call with a batch's size returns `batch 3/6, 192/384 prompts`.

    In a distributed run each process counts its own share, against the totals of all.
    """
    done = {"batches": 0, "items": 0}

    def count(size: int) -> str:
        done["batches"] += 1
        done["items"] += size
        return f"batch {done['batches']}/{batches}, {done['items']}/{items} {noun}"

    return count


@contextlib.contextmanager
def max_new_tokens_only(model, generation_kwargs: Mapping) -> Iterator[None]:
    """Generate with `max_new_tokens` as the only length limit when it is given.

    Checkpoints' generation configs often carry a `max_length` (Whisper's 448, many LLMs' 4096); with
    `max_new_tokens` given too, transformers warns on every `generate` call that the latter wins. Set aside for
    the call, it is restored afterwards, so a model saved later keeps its own config.
    """
    config = model.generation_config
    kept = config.max_length
    if generation_kwargs.get("max_new_tokens") is not None:
        config.max_length = None
    try:
        yield
    finally:
        config.max_length = kept


def extract_answer(
    text: str,
    echoes: Sequence[str] = (),
    stop_markers: Sequence[str] = EXPLANATION_MARKERS,
    role_prefixes: Sequence[str] = ROLE_PREFIXES,
) -> str:
    """The answer inside a chat model's raw output; "" when there is none (the caller picks a fallback).

    In order: drop leading echoes (e.g. the prompt), template markers and a role prefix (`Assistant:`,
    `Corrected:`); cut at the first template marker or stop marker (a new turn, an explanation, a made-up
    next example); skip lead-in lines ending with a colon (`以下是完成的詩：`); keep the first paragraph;
    drop a role prefix again and quotes around the whole answer. An answer without a single letter or
    digit (a lone quote, `...`) is no answer.
    """
    text = _drop_role(_drop_leading(text, [*echoes, *TEMPLATE_MARKERS]), role_prefixes)
    cut = min(
        (text.find(marker) for marker in [*TEMPLATE_MARKERS, *stop_markers] if marker in text), default=-1
    )
    text = text if cut < 0 else text[:cut]
    lines = text.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].rstrip().endswith((":", "："))):
        lines.pop(0)
    paragraph = re.split(r"\n\s*\n", "\n".join(lines))[0] if lines else ""
    answer = _unquote(_drop_role(paragraph, role_prefixes).strip())
    return answer if any(character.isalnum() for character in answer) else ""


def _drop_role(text: str, role_prefixes: Sequence[str]) -> str:
    """Remove a leading `Name:` (any of `role_prefixes`, case-insensitive, either colon) from the text."""
    if not role_prefixes:
        return text
    names = "|".join(re.escape(name) for name in role_prefixes)
    return re.sub(rf"^\s*(?:{names})\s*[:：]\s*", "", text, flags=re.IGNORECASE)


def _drop_leading(text: str, prefixes: Sequence[str]) -> str:
    """Remove any of `prefixes` (compared without surrounding whitespace) from the start, repeatedly."""
    prefixes = [prefix.strip() for prefix in prefixes if prefix.strip()]
    text = text.strip()
    while any(text.startswith(prefix) for prefix in prefixes):
        prefix = next(prefix for prefix in prefixes if text.startswith(prefix))
        text = text[len(prefix) :].strip()
    return text


def _unquote(text: str) -> str:
    for opening, closing in ("''", '""', "“”", "‘’", "「」", "『』"):
        if len(text) >= 2 and text.startswith(opening) and text.endswith(closing):
            return text[1:-1].strip()
    return text
