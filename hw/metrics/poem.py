"""Offline scores for a generated Tang-poem continuation: form, character overlap, repetition, script.

Every score is a fraction in [0, 1]. A poem's *clauses* are the runs of characters between punctuation
marks or whitespace, so the dataset's `output` (`綺殿千尋起，離宮百雉餘。…`) and a line of
`Tang_testing_gt.txt` (clauses separated by TAB, no punctuation) parse alike. A *character* is anything
that is neither punctuation (Unicode category P*) nor whitespace, so `□` (a placeholder for a lost
character in the sources) counts as one.

- form: ½·[the first couplet's clauses plus the continuation's number 4 or 8] + ½·(share of the
  continuation's clauses as long as the first couplet's, which must be 5 or 7; when the couplet is
  irregular any 5- or 7-character clause counts). No continuation scores 0. All 5,001 training items
  score 1; so do the test ground truths except one 10-clause pailü (排律), which scores 0.5.
- char_f1: F1 of the bags of characters (SQuAD-style token F1 with characters as tokens).
- chrf: chrF as sacreBLEU 2 computes it by default (character n-grams up to 6, β = 2, precision and
  recall each averaged over the orders both sides have, whitespace dropped; Popović 2015), on the
  characters only, because the ground-truth file has no punctuation (matches sacreBLEU 2 `CHRF()` on such text
  to 1e-16; sacreBLEU prints it ×100).
- repetition: share of the continuation's character bigrams (within clauses) that repeat an earlier
  one; 0 when it has none. Real continuations average 0.0006; a looping model approaches 1.
- traditional_share: among the CJK characters whose form differs between the scripts in context
  (OpenCC `s2t` or `t2s` rewrites them), the share in Traditional form, i.e. rewritten by `t2s` only.
  Characters valid in both scripts that `s2t` still rewrites (里, 云, 于) count as Simplified, so the
  real training poems score 0.980, not 1, and their Simplified conversion 0. With no CJK character
  the share is 0; with CJK characters but none that differ, 1.
- distinct_1 / distinct_2 (over a set of outputs): distinct n-grams / all n-grams within clauses
  (Li et al. 2016), to compare decoding settings.

A continuation that starts by repeating the first couplet is scored without that echo.
"""

import unicodedata
from collections import Counter
from functools import cache
from statistics import mean

from hw.errors import HwError

CLAUSE_LENGTHS = (5, 7)
CLAUSE_COUNTS = (4, 8)
CHRF_ORDER = 6
CHRF_BETA = 2.0
REPETITION_ORDER = 2


def split_clauses(text: str) -> list[str]:
    """Split a poem into clauses at punctuation and whitespace (TAB included), dropping empty ones."""
    clauses, current = [], []
    for character in text:
        if _is_separator(character):
            clauses.append("".join(current))
            current = []
        else:
            current.append(character)
    clauses.append("".join(current))
    return [clause for clause in clauses if clause]


def form_score(first_couplet: str, continuation: str) -> float:
    """Score in [0, 1] of how well the continuation keeps the first couplet's form (see module doc)."""
    couplet_clauses = split_clauses(first_couplet)
    clauses = split_clauses(continuation)
    if not clauses:
        return 0.0
    couplet_lengths = {len(clause) for clause in couplet_clauses}
    regular = len(couplet_lengths) == 1 and couplet_lengths <= set(CLAUSE_LENGTHS)
    allowed_lengths = couplet_lengths if regular else set(CLAUSE_LENGTHS)
    count_ok = len(couplet_clauses) + len(clauses) in CLAUSE_COUNTS
    length_share = sum(len(clause) in allowed_lengths for clause in clauses) / len(clauses)
    return (count_ok + length_share) / 2


def char_f1(prediction: str, reference: str) -> float:
    """F1 of the two bags of characters, punctuation and whitespace ignored; 0 when nothing is shared."""
    predicted, expected = Counter(_characters(prediction)), Counter(_characters(reference))
    shared = sum((predicted & expected).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / sum(predicted.values()), shared / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (orders 1-6, β 2, sacreBLEU 2 averaging) on the characters only, in [0, 1]."""
    predicted, expected = _characters(prediction), _characters(reference)
    precisions, recalls = [], []
    for order in range(1, CHRF_ORDER + 1):
        predicted_ngrams, expected_ngrams = _ngrams([predicted], order), _ngrams([expected], order)
        if predicted_ngrams and expected_ngrams:  # sacreBLEU's "effective order"
            shared = sum((Counter(predicted_ngrams) & Counter(expected_ngrams)).values())
            precisions.append(shared / len(predicted_ngrams))
            recalls.append(shared / len(expected_ngrams))
    if not precisions or sum(precisions) + sum(recalls) == 0:
        return 0.0
    precision, recall = mean(precisions), mean(recalls)
    beta_squared = CHRF_BETA**2
    return (1 + beta_squared) * precision * recall / (beta_squared * precision + recall)


def repetition_rate(text: str) -> float:
    """Share of the character bigrams (within clauses) that repeat an earlier one; 0 with no bigram."""
    bigrams = _ngrams(split_clauses(text), REPETITION_ORDER)
    return 1 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def distinct_n(texts: list[str], order: int) -> float:
    """Distinct n-grams over all n-grams (within clauses) of a set of outputs; 0 with no n-gram."""
    ngrams = _ngrams([clause for text in texts for clause in split_clauses(text)], order)
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def traditional_share(text: str) -> float:
    """Among CJK characters whose form differs between the scripts in context, the Traditional share."""
    positions = [index for index, character in enumerate(text) if _is_cjk(character)]
    if not positions:
        return 0.0
    to_traditional = _convert_aligned("s2t", text)
    to_simplified = _convert_aligned("t2s", text)
    simplified = sum(to_traditional[index] != text[index] for index in positions)
    traditional = sum(
        to_traditional[index] == text[index] and to_simplified[index] != text[index] for index in positions
    )
    return traditional / (traditional + simplified) if traditional + simplified else 1.0


def strip_echo(first_couplet: str, continuation: str) -> str:
    """Drop a leading repeat of the first couplet (compared clause by clause) from a continuation."""
    couplet_clauses = split_clauses(first_couplet)
    if not couplet_clauses or split_clauses(continuation)[: len(couplet_clauses)] != couplet_clauses:
        return continuation
    rest = continuation
    for clause in couplet_clauses:
        rest = _drop_leading_separators(rest).removeprefix(clause)
    return _drop_leading_separators(rest)


def score_poem(first_couplet: str, prediction: str, reference: str) -> dict[str, float]:
    """All per-item scores of one predicted continuation against its reference continuation."""
    continuation = strip_echo(first_couplet, prediction)
    return {
        "form": form_score(first_couplet, continuation),
        "char_f1": char_f1(continuation, reference),
        "chrf": chrf(continuation, reference),
        "repetition": repetition_rate(continuation),
        "traditional_share": traditional_share(continuation),
    }


def score_poems(
    first_couplets: list[str], predictions: list[str], references: list[str]
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-item scores and their means, plus distinct-1/2 over all predictions.

    Raises:
        HwError: if the three lists differ in length.
    """
    if not len(first_couplets) == len(predictions) == len(references):
        raise HwError(
            f"poem scoring needs one prediction and one reference per first couplet; got "
            f"{len(first_couplets)} couplets, {len(predictions)} predictions and {len(references)} "
            "references; check that the ground-truth file has one line per test item"
        )
    if not predictions:
        raise HwError("poem scoring got no predictions; allowed: at least one test item; check the test data")
    items = [score_poem(*triple) for triple in zip(first_couplets, predictions, references, strict=True)]
    continuations = [strip_echo(c, p) for c, p in zip(first_couplets, predictions, strict=True)]
    summary = {name: mean(item[name] for item in items) for name in items[0]}
    summary["distinct_1"] = distinct_n(continuations, 1)
    summary["distinct_2"] = distinct_n(continuations, 2)
    return items, summary


def _is_separator(character: str) -> bool:
    return character.isspace() or unicodedata.category(character).startswith("P")


def _drop_leading_separators(text: str) -> str:
    index = 0
    while index < len(text) and _is_separator(text[index]):
        index += 1
    return text[index:]


def _characters(text: str) -> str:
    return "".join(character for character in text if not _is_separator(character))


def _ngrams(clauses: list[str], order: int) -> list[str]:
    return [clause[i : i + order] for clause in clauses for i in range(len(clause) - order + 1)]


def _is_cjk(character: str) -> bool:
    """CJK unified ideographs (base block, extensions A to H) and compatibility ideographs."""
    code = ord(character)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x323AF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def _convert_aligned(config: str, text: str) -> str:
    """OpenCC conversion of the whole text (phrases give context: 皇后 stays, 后 alone becomes 後).

    Falls back to character by character when a phrase conversion changed the length, so that
    positions still line up.
    """
    converted = _converter(config).convert(text)
    if len(converted) == len(text):
        return converted
    return "".join(_converter(config).convert(character) or character for character in text)


@cache
def _converter(config: str):
    import opencc  # deferred: only the script share needs it

    return opencc.OpenCC(config)
