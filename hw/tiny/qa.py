"""A tiny DistilBERT and synthetic SQuAD-schema questions it learns to answer in seconds on a CPU.

Each context tells four facts about one person ("Nora lives in Oslo. Nora plays chess. ..."); the question asks
for one of them and the answer is a single-token word. PITFALLS.md: a ~330k-parameter encoder learned this kind
of data (EM 1 → 47 in 6 epochs) only with one entity per context, about four facts and single-token answers;
two entities or multi-piece answers stayed near 7 % EM. This one: EM under 1 → about 60 after 2 epochs (15-30 s of training).
"""

import random
from collections.abc import Iterator
from pathlib import Path

from hw.tiny.classification import wordpiece_tokenizer, write_jsonl

PEOPLE = ["Nora", "Omar", "Lena", "Ivan", "Maya", "Hugo", "Sara", "Theo", "Lily", "Felix", "Anna", "Milo"]
# relation → (sentence about the person, question about it, the single-token answers it can have)
FACTS = {
    "city": (
        "{person} lives in {value}.",
        "Where does {person} live?",
        ["Paris", "London", "Tokyo", "Cairo", "Lima", "Oslo", "Rome", "Delhi", "Madrid", "Berlin"],
    ),
    "job": (
        "{person} works as a {value}.",
        "What is the job of {person}?",
        ["baker", "pilot", "nurse", "farmer", "judge", "dentist", "plumber", "teacher", "painter", "lawyer"],
    ),
    "sport": (
        "{person} plays {value} on weekends.",
        "Which sport does {person} play?",
        ["tennis", "golf", "chess", "rugby", "hockey", "cricket", "soccer", "squash", "polo", "darts"],
    ),
    "pet": (
        "{person} owns a {value}.",
        "What pet does {person} own?",
        ["cat", "dog", "parrot", "horse", "rabbit", "turtle", "hamster", "goat", "pony", "snake"],
    ),
    "food": (
        "{person} eats {value} every day.",
        "What does {person} eat every day?",
        ["rice", "bread", "pasta", "soup", "cheese", "salad", "noodles", "apples", "beans", "fish"],
    ),
    "colour": (
        "{person} likes the colour {value}.",
        "Which colour does {person} like?",
        ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown"],
    ),
    "language": (
        "{person} speaks {value} at home.",
        "Which language does {person} speak?",
        ["French", "German", "Dutch", "Polish", "Greek", "Turkish", "Swedish", "Danish", "Arabic", "Hindi"],
    ),
}
FACTS_PER_CONTEXT = 4


def question(index: int, split: str, rng: random.Random) -> dict:
    """One SQuAD-schema row: a context of `FACTS_PER_CONTEXT` facts about one person and a question on one."""
    person = rng.choice(PEOPLE)
    relations = rng.sample(sorted(FACTS), FACTS_PER_CONTEXT)
    asked = rng.choice(relations)
    context, answer, answer_start = "", "", -1
    for relation in relations:
        template, _, values = FACTS[relation]
        value = rng.choice(values)
        before, _, after = template.format(person=person, value="\0").partition("\0")  # around the answer
        if relation == asked:
            answer, answer_start = value, len(context) + len(before)
        context += before + value + after + " "
    return {
        "id": f"tiny-{split}-{index:05d}",
        "title": person,
        "context": context.rstrip(),
        "question": FACTS[asked][1].format(person=person),
        "answers": {"text": [answer], "answer_start": [answer_start]},
    }


def questions(count: int, split: str, seed: int) -> Iterator[dict]:
    """`count` rows of `question`, ids `tiny-<split>-<index>`, reproducible from `seed`."""
    rng = random.Random(seed)
    for index in range(count):
        yield question(index, split, rng)


def build_squad(directory: Path) -> None:
    """`train.jsonl` (4000) and `validation.jsonl` (400) in the `squad` schema."""
    write_jsonl(directory / "train.jsonl", questions(4000, "train", seed=1))
    write_jsonl(directory / "validation.jsonl", questions(400, "validation", seed=2))


def corpus() -> Iterator[str]:
    """Text the tokenizer is trained on: the synthetic contexts and questions."""
    for row in questions(2000, "corpus", seed=0):
        yield row["question"]
        yield row["context"]


def encoder_config(tokenizer):
    """The tiny DistilBERT's shape (~290k parameters with this module's vocabulary, 512 positions)."""
    import transformers

    # Two wide layers learned faster than four narrow ones of about the same size (2 epochs: EM 47-70 vs 38-46).
    return transformers.DistilBertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        dim=128,
        n_layers=2,
        n_heads=4,
        hidden_dim=128,
    )


def tokenizer():
    """An uncased BERT-style WordPiece tokenizer whose vocabulary is every word of the corpus."""
    return wordpiece_tokenizer(corpus(), cased=False)


def build_encoder(directory: Path) -> None:
    """A tiny random uncased DistilBERT whose vocabulary holds every answer as one token."""
    import torch
    import transformers

    tokens = tokenizer()
    multi_piece = [
        value for _, _, values in FACTS.values() for value in values if len(tokens.tokenize(value)) > 1
    ]
    assert not multi_piece, f"answers must be single tokens, these are not: {multi_piece}"
    torch.manual_seed(0)  # with the fixed vocabulary: the same tiny base on every machine
    transformers.DistilBertModel(encoder_config(tokens)).save_pretrained(directory)
    tokens.save_pretrained(directory)
