"""Speech recognition scores: WER and CER with jiwer after a named, language-aware text normalizer."""

import csv
import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import cache, partial
from pathlib import Path

import jiwer
import opencc

from hw.atc_text import normalize as atc_normalize
from hw.atc_text import words_to_digits
from hw.errors import HwError

# OpenCC conversions that bring Chinese text to one script: t2s for zh-CN data (Simplified references),
# s2tw or s2twp for zh-TW data (Traditional references; s2twp also maps mainland to Taiwan vocabulary).
ZH_CONVERSIONS = tuple(
    ["t2s", "s2t", "s2tw", "s2twp", "tw2s", "tw2sp", "s2hk", "hk2s", "t2tw", "tw2t", "t2hk", "hk2t"]
)


@dataclass(frozen=True)
class Normalizer:
    """A text normalizer and the way its output splits into the tokens WER counts.

    Attributes:
        normalize: Text → normalized text whose characters are what CER counts.
        split: Normalized text → tokens; whitespace words, or characters for scripts written without spaces.
    """

    normalize: Callable[[str], str]
    split: Callable[[str], list[str]] = str.split


def _collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def _normalize_basic(text: str) -> str:
    """Lowercase, turn every Unicode punctuation mark into a space, collapse whitespace; keep accents.

    NFKC first, so composed and decomposed accents compare equal and no-break spaces (French typography
    puts U+202F before `;:!?`) become plain spaces. Whisper's English normalizer is not used: it strips
    accents, which would forgive `eleve` for `élève` in French.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return _collapse_whitespace("".join(" " if unicodedata.category(c).startswith("P") else c for c in text))


@cache
def _opencc(conversion: str) -> opencc.OpenCC:
    """One OpenCC converter per conversion name, built on first use (it loads its dictionaries)."""
    if conversion not in ZH_CONVERSIONS:
        raise HwError(
            f"unknown Chinese script conversion {conversion!r}; allowed: {', '.join(ZH_CONVERSIONS)} "
            "(t2s for zh-CN references, s2tw or s2twp for zh-TW)"
        )
    return opencc.OpenCC(conversion)


def _normalize_chinese(text: str, conversion: str) -> str:
    """Drop punctuation (full-width too) and all whitespace, lowercase Latin letters, convert to one script.

    Punctuation and spaces go before the OpenCC conversion, so a word-segmented line and the same
    unspaced sentence reach OpenCC's phrase matching as the same string.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P"))
    return _opencc(conversion).convert(kept)


def _normalize_atc(text: str) -> str:
    """ATC conventions (`hw.atc_text`): normalized, numbers in digits; each line converted as its own turn.

    Lines are speaker turns in ATCO2 transcripts: converted together, the number ending one turn and the
    number opening the next would merge into one.
    """
    return " ".join(filter(None, (words_to_digits(atc_normalize(line)) for line in text.splitlines())))


def _normalizers(zh_convert: str) -> dict[str, Normalizer]:
    """The normalizers by name; a new one is one more line here."""
    return {
        "none": Normalizer(_collapse_whitespace),
        "basic": Normalizer(_normalize_basic),
        # Chinese has no word spaces: a token is a character, so the zh WER equals the zh CER.
        "zh": Normalizer(partial(_normalize_chinese, conversion=zh_convert), split=list),
        # Digits on both sides, the homework's "converted" form: `one three four decimal six` = `134.6`.
        "atc": Normalizer(_normalize_atc),
    }


NORMALIZERS = tuple(_normalizers("t2s"))


def _normalizer(name: str, zh_convert: str) -> Normalizer:
    normalizers = _normalizers(zh_convert)
    if name not in normalizers:
        raise HwError(
            f"unknown normalizer {name!r}; allowed: {', '.join(normalizers)} "
            "(none = orthographic, basic = lowercase without punctuation, zh = Chinese one script, "
            "atc = air-traffic-control spellings with numbers in digits)"
        )
    return normalizers[name]


def normalize(text: str, normalize: str = "basic", zh_convert: str = "t2s") -> str:
    """Normalize one text exactly as `score` does before counting errors.

    Args:
        text: Raw transcript.
        normalize: One of `NORMALIZERS`.
        zh_convert: OpenCC conversion used by the `zh` normalizer (one of `ZH_CONVERSIONS`).
    """
    return _normalizer(normalize, zh_convert).normalize(text)


@dataclass(frozen=True)
class UtteranceScore:
    """One utterance's normalized texts and error counts (token level), for samples.jsonl.

    `wer` and `cer` are None when the normalized reference is empty: a rate over zero words is undefined.
    """

    reference: str
    hypothesis: str
    reference_words: int
    substitutions: int
    deletions: int
    insertions: int
    character_errors: int
    wer: float | None
    cer: float | None


@dataclass(frozen=True)
class AsrScore:
    """Corpus scores of one normalizer over a list of utterances.

    Attributes:
        normalize: Normalizer name; zh_convert: the OpenCC conversion applied (None unless `zh`).
        wer: Corpus word error rate, (substitutions + deletions + insertions) / reference words.
        cer: Corpus character error rate over the normalized texts. For whitespace-delimited normalizers
            the single spaces between words count as characters, as in jiwer's default CER transform.
        substitutions, deletions, insertions, reference_words: Token-level totals behind `wer`.
        reference_characters: Characters in the normalized references, the denominator of `cer`.
        sentence_error_rate: Share of utterances whose normalized tokens differ at all.
        mean_utterance_wer: Mean of per-utterance WER over utterances with a non-empty reference (some
            homeworks report it; unlike the corpus WER it weights a 2-word and a 20-word utterance alike).
        utterances: Number of utterances; empty_references: how many were left out of the mean.
        per_utterance: One `UtteranceScore` per input pair, in input order.
    """

    normalize: str
    zh_convert: str | None
    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    reference_characters: int
    sentence_error_rate: float
    mean_utterance_wer: float
    utterances: int
    empty_references: int
    per_utterance: list[UtteranceScore] = field(repr=False)

    def metrics(self) -> dict[str, float | int | str | None]:
        """Every corpus figure as a flat dict, for metrics.json and the CLI."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "per_utterance"}


def _edit_counts(alignment: list[jiwer.AlignmentChunk]) -> tuple[int, int, int]:
    """Substitutions, deletions and insertions of one utterance's jiwer alignment."""
    counts = {"substitute": 0, "delete": 0, "insert": 0}
    for chunk in alignment:
        if chunk.type in ("substitute", "delete"):
            counts[chunk.type] += chunk.ref_end_idx - chunk.ref_start_idx
        elif chunk.type == "insert":
            counts["insert"] += chunk.hyp_end_idx - chunk.hyp_start_idx
    return counts["substitute"], counts["delete"], counts["insert"]


def _align(references: list[list[str]], hypotheses: list[list[str]]) -> list[tuple[int, int, int]]:
    """Per-utterance (substitutions, deletions, insertions) of token lists, aligned by jiwer."""

    # jiwer only calls its transforms; ours hands over the tokens we already split.
    def as_tokens(sentences: list[list[str]]) -> list[list[str]]:
        return sentences

    output = jiwer.process_words(references, hypotheses, as_tokens, as_tokens)
    return [_edit_counts(alignment) for alignment in output.alignments]


def _utterance_scores(
    references: list[str], hypotheses: list[str], normalizer: Normalizer
) -> list[UtteranceScore]:
    """Token and character edit counts of each normalized (reference, hypothesis) pair."""
    reference_tokens = [normalizer.split(text) for text in references]
    word_counts = _align(reference_tokens, [normalizer.split(text) for text in hypotheses])
    character_counts = _align([list(text) for text in references], [list(text) for text in hypotheses])
    scores = []
    for reference, hypothesis, tokens, words, characters in zip(
        references, hypotheses, reference_tokens, word_counts, character_counts, strict=True
    ):
        scores.append(
            UtteranceScore(
                reference=reference,
                hypothesis=hypothesis,
                reference_words=len(tokens),
                substitutions=words[0],
                deletions=words[1],
                insertions=words[2],
                character_errors=sum(characters),
                wer=sum(words) / len(tokens) if tokens else None,
                cer=sum(characters) / len(reference) if reference else None,
            )
        )
    return scores


def _corpus_score(per_utterance: list[UtteranceScore], normalize: str, zh_convert: str | None) -> AsrScore:
    """Sum per-utterance counts into corpus rates; the caller made sure some reference has a word."""
    substitutions, deletions, insertions = (
        sum(getattr(utterance, name) for utterance in per_utterance)
        for name in ("substitutions", "deletions", "insertions")
    )
    reference_words = sum(utterance.reference_words for utterance in per_utterance)
    reference_characters = sum(len(utterance.reference) for utterance in per_utterance)
    rated = [utterance.wer for utterance in per_utterance if utterance.wer is not None]
    wrong = [
        utterance.substitutions + utterance.deletions + utterance.insertions > 0
        for utterance in per_utterance
    ]
    return AsrScore(
        normalize=normalize,
        zh_convert=zh_convert,
        wer=(substitutions + deletions + insertions) / reference_words,
        cer=sum(utterance.character_errors for utterance in per_utterance) / reference_characters,
        substitutions=substitutions,
        deletions=deletions,
        insertions=insertions,
        reference_words=reference_words,
        reference_characters=reference_characters,
        sentence_error_rate=sum(wrong) / len(per_utterance),
        mean_utterance_wer=sum(rated) / len(rated),
        utterances=len(per_utterance),
        empty_references=len(per_utterance) - len(rated),
        per_utterance=per_utterance,
    )


def score(
    hypotheses: Sequence[str], references: Sequence[str], normalize: str = "basic", zh_convert: str = "t2s"
) -> AsrScore:
    """Score hypotheses against references after one normalizer; call once per normalizer wanted.

    An empty hypothesis counts as deletions of every reference word. An empty reference counts its
    hypothesis words as insertions in the corpus rates and is left out of `mean_utterance_wer`.

    Args:
        hypotheses: Model transcripts, one per utterance.
        references: Reference transcripts, in the same order.
        normalize: `none` (orthographic), `basic`, `zh` or `atc`; see `NORMALIZERS`.
        zh_convert: OpenCC conversion the `zh` normalizer applies to both sides (`t2s` for zh-CN
            references, `s2tw`/`s2twp` for zh-TW); recorded in the result.

    Raises:
        HwError: Unknown normalizer or conversion, mismatched lengths, or no reference word at all.
    """
    normalizer = _normalizer(normalize, zh_convert)
    if len(hypotheses) != len(references):
        raise HwError(
            f"cannot score {len(hypotheses)} hypotheses against {len(references)} references; "
            "give one hypothesis per reference"
        )
    per_utterance = _utterance_scores(
        [normalizer.normalize(text) for text in references],
        [normalizer.normalize(text) for text in hypotheses],
        normalizer,
    )
    if all(utterance.reference_words == 0 for utterance in per_utterance):
        raise HwError(
            f"cannot score: none of the {len(references)} references has a word after {normalize!r} "
            "normalization; check that the reference column holds the transcripts"
        )
    return _corpus_score(per_utterance, normalize, zh_convert if normalize == "zh" else None)


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    # newline="" lets the csv module keep newlines inside quoted fields; utf-8-sig drops a BOM.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _read_jsonl(path: Path) -> tuple[list[str], list[dict]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise HwError(
                    f"{path}: line {line_number} is not JSON ({error.msg}); write one object per line"
                ) from None
            if not isinstance(row, dict):
                raise HwError(
                    f"{path}: line {line_number} is not a JSON object (got a {type(row).__name__}); "
                    "write one object per line"
                )
            rows.append(row)
    return (list(rows[0]) if rows else []), rows


_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl}


def _column(rows: list[dict], name: str, path: Path) -> list[str]:
    """One column as text; a missing value (None, empty CSV cell) is an empty transcript."""
    values = []
    for row_number, row in enumerate(rows, start=1):
        if name not in row:
            raise HwError(f"{path}: row {row_number} has no {name!r} field; give every row the same columns")
        values.append("" if row[name] is None else str(row[name]))
    return values


def score_file(
    path: str | Path, hyp_col: str, ref_col: str, normalize: str, zh_convert: str = "t2s"
) -> dict[str, float | int | str | None]:
    """Score a CSV (header row, quoted multi-line fields allowed) or JSONL file of transcripts.

    Args:
        path: `.csv` or `.jsonl` file, one utterance per row.
        hyp_col: Column holding the hypotheses.
        ref_col: Column holding the references.
        normalize: One of `NORMALIZERS`.
        zh_convert: OpenCC conversion for the `zh` normalizer.

    Returns:
        `AsrScore.metrics()` plus the file and the two column names.
    """
    path = Path(path)
    if not path.is_file():
        raise HwError(f"transcript file not found: {path}; give the path of a .csv or .jsonl file")
    if path.suffix.lower() not in _READERS:
        raise HwError(
            f"cannot read {path}: suffix {path.suffix!r} is not one of {', '.join(_READERS)}; "
            "save it as CSV with a header row or as JSON Lines"
        )
    try:
        columns, rows = _READERS[path.suffix.lower()](path)
    except UnicodeDecodeError:
        raise HwError(f"cannot read {path}: it is not UTF-8 text; re-save it as UTF-8") from None
    for flag, name in (("--hyp-col", hyp_col), ("--ref-col", ref_col)):
        if name not in columns:
            raise HwError(f"{path}: no column {name!r} ({flag}); available: {', '.join(columns) or 'none'}")
    result = score(_column(rows, hyp_col, path), _column(rows, ref_col, path), normalize, zh_convert)
    return {"file": str(path), "hypothesis_column": hyp_col, "reference_column": ref_col, **result.metrics()}
