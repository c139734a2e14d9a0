"""Tiny BERT/DistilBERT encoders and synthetic reviews in the Yelp (5 stars) and IMDB (2 labels) schemas.

The reviews are learnable on purpose: each star rating has its own sentiment words, mixed into neutral filler
with noise (a neighbouring rating's word now and then), so a ~100k-parameter encoder reaches high accuracy in
seconds on a CPU while an untrained one sits at chance.
"""

import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

SENTIMENT_WORDS = [  # index = label (0 = one star ... 4 = five stars)
    ["terrible", "awful", "disgusting", "rude", "worst", "never", "refund", "horrible"],
    ["bad", "cold", "slow", "bland", "disappointing", "overpriced", "mediocre", "meh"],
    ["okay", "average", "decent", "fine", "alright", "standard", "ordinary", "fair"],
    ["good", "tasty", "friendly", "nice", "solid", "pleasant", "recommend", "enjoyed"],
    ["amazing", "excellent", "perfect", "outstanding", "incredible", "fantastic", "best", "love"],
]
FILLER_WORDS = [
    "the",
    "a",
    "we",
    "i",
    "our",
    "my",
    "food",
    "service",
    "place",
    "staff",
    "table",
    "waiter",
    "menu",
    "dinner",
    "lunch",
    "night",
    "friends",
    "came",
    "ordered",
    "pizza",
    "burger",
    "salad",
    "coffee",
    "wait",
    "time",
    "price",
    "room",
    "hotel",
    "movie",
    "story",
    "plot",
    "actor",
    "scene",
    "ending",
    "and",
    "was",
    "were",
    "it",
    "this",
    "that",
    "with",
    "for",
    "at",
    "on",
    "in",
    "to",
    "of",
    "they",
    "had",
    "have",
    "ate",
    "went",
    "visited",
    "again",
    "there",
    "here",
    "today",
    "back",
]


def review(label: int, words: int, rng: random.Random, noise: float = 0.15) -> str:
    """One synthetic review: filler words with about one sentiment word in six from the label's list."""
    tokens = []
    for _ in range(words):
        if rng.random() < 1 / 6:
            drawn = label
            if rng.random() < noise:  # noise: a word of a neighbouring rating, as real reviews hedge
                drawn = min(max(label + rng.choice((-1, 1)), 0), len(SENTIMENT_WORDS) - 1)
            tokens.append(rng.choice(SENTIMENT_WORDS[drawn]))
        else:
            tokens.append(rng.choice(FILLER_WORDS))
    text = " ".join(tokens)
    return text[0].upper() + text[1:] + "."


def yelp_like_lengths(rng: random.Random) -> int:
    """Words per review drawn like Yelp's: median about 110, long right tail, at least 5, at most 1000."""
    return min(max(int(rng.lognormvariate(4.7, 0.75)), 5), 1000)


def reviews(count: int, labels: list[int], seed: int, short: bool = True) -> Iterator[dict]:
    """`count` rows `{label, text}` with labels drawn uniformly; short reviews (8-40 words) unless `short=False`."""
    rng = random.Random(seed)
    for _ in range(count):
        label = rng.choice(labels)
        words = rng.randint(8, 40) if short else yelp_like_lengths(rng)
        yield {"label": label, "text": review(label, words, rng)}


def write_jsonl(path: Path, rows: Iterator[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def build_yelp(directory: Path) -> None:
    """`train.jsonl` (2000) and `test.jsonl` (500) in the `yelp_review_full` schema (label 0-4, text)."""
    write_jsonl(directory / "train.jsonl", reviews(2000, list(range(5)), seed=1))
    write_jsonl(directory / "test.jsonl", reviews(500, list(range(5)), seed=2))


def build_imdb(directory: Path) -> None:
    """`train.jsonl` (1000) and `validation.jsonl` (500) in the `shawhin/imdb-truncated` schema (label 0/1)."""

    # Negative reviews use one-star words, positive ones five-star words: the two ends of the Yelp scale.
    def binary(count: int, seed: int) -> Iterator[dict]:
        for row in reviews(count, [0, 4], seed):
            yield {"label": row["label"] // 4, "text": row["text"]}

    write_jsonl(directory / "train.jsonl", binary(1000, seed=3))
    write_jsonl(directory / "validation.jsonl", binary(500, seed=4))


def corpus() -> Iterator[str]:
    """Text the tiny tokenizers are trained on: every word of the synthetic reviews, in both cases."""
    words = FILLER_WORDS + [word for group in SENTIMENT_WORDS for word in group]
    yield from words
    yield from (word.capitalize() for word in words)
    yield from (row["text"] for row in reviews(2000, list(range(5)), seed=0))


def build_encoder(directory: Path, architecture: str, cased: bool) -> None:
    """A tiny random BERT (`bert`) or DistilBERT (`distilbert`) with a WordPiece tokenizer trained here."""
    import torch
    import transformers

    tokenizer = wordpiece_tokenizer(corpus(), cased=cased)
    torch.manual_seed(0)  # with the listed vocabulary: the same tiny base on every machine
    size = {
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if architecture == "bert":
        config = transformers.BertConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, **size
        )
        model = transformers.BertModel(config)
    else:
        config = transformers.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128, **size)
        # LoRA steers features a base already has (PITFALLS.md): a random base gives it nothing to steer,
        # so, like the real distilbert, this one is pretrained first, here on the related 5-star task.
        model = _pretrained_on_star_ratings(config, tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def _pretrained_on_star_ratings(config, tokenizer):
    """A DistilBERT encoder trained for 3 epochs to rate 2000 synthetic reviews (1-5 stars) from its mean token state.

    Mean pooling, not the first token: the token states learn sentiment, while the first position, which
    `DistilBertForSequenceClassification` reads, is left untrained for it, as in the real distilbert. An untrained
    head then sits at chance, and LoRA has real work to do. (Pretrained through the first token, a random head
    scored 0.03 or 0.97 by luck; masked-LM pretraining left LoRA at chance.)
    """
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, DistilBertModel

    from hw.config import TrainConfig
    from hw.training import build_trainer

    class MeanPooledRater(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.distilbert = DistilBertModel(config)
            self.head = torch.nn.Linear(config.dim, len(SENTIMENT_WORDS))

        def forward(self, input_ids, attention_mask, labels):
            states = self.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            logits = self.head((states * mask).sum(dim=1) / mask.sum(dim=1))
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    rater = MeanPooledRater()
    rows = Dataset.from_list(list(reviews(2000, list(range(5)), seed=5)))
    features = rows.map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"])
    settings = TrainConfig(
        learning_rate=2e-3,
        num_train_epochs=3,
        per_device_train_batch_size=32,
        eval_strategy="no",
        logging_steps=50,
    )
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(
            rater,
            settings,
            Path(scratch),
            train_dataset=features.rename_column("label", "labels"),
            eval_dataset=None,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        trainer.train()
    return rater.distilbert


def wordpiece_tokenizer(texts: Iterable[str], cased: bool):
    """A BERT-style WordPiece tokenizer ([CLS] text [SEP]) whose vocabulary is every word of `texts`, in a fixed order.

    The vocabulary is listed, not trained: the `tokenizers` trainer breaks frequency ties in a random order, so
    two builds got different vocabularies and the tiny models learned differently on every machine. Each word's
    characters (alone and as `##` continuations) spell words it has not seen.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=not cased)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = {
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    }
    characters = sorted({character for word in words for character in word})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocabulary = specials + sorted(words | set(characters)) + [f"##{character}" for character in characters]
    tokenizer = Tokenizer(
        models.WordPiece({token: index for index, token in enumerate(vocabulary)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls, sep = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
