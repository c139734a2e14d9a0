"""WER/CER and normalizers: hand-worked counts, then the real Common Voice and ATC transcripts."""

import json
import unicodedata
from pathlib import Path

import pytest

from hw.errors import HwError
from hw.metrics.asr import NORMALIZERS, normalize, score, score_file
from tests.shared_data import SHARED_DATA


def _shared_data(*parts: str) -> Path:
    """A file of the shared real data, or skip the test when the data folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set HW_SHARED_DATA)")
    return path


def _lines(*parts: str) -> list[str]:
    return [
        line.strip() for line in _shared_data(*parts).read_text(encoding="utf-8").split("\n") if line.strip()
    ]


# Hand-worked: "the cat sat on the mat" → "the cat sit on mat" is 1 substitution (sat→sit) and
# 1 deletion (the) over 6 words; "hello world" → "hello big world" is 1 insertion over 2 words;
# "good morning" is right. Corpus WER = 3 / 10; mean of utterance WER = (2/6 + 1/2 + 0) / 3 = 5/18.
REFERENCES = ["the cat sat on the mat", "hello world", "good morning"]
HYPOTHESES = ["the cat sit on mat", "hello big world", "good morning"]


def test_hand_worked_word_and_character_counts():
    result = score(HYPOTHESES, REFERENCES, normalize="none")
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 1)
    assert result.reference_words == 10
    assert result.wer == pytest.approx(0.3)
    assert result.mean_utterance_wer == pytest.approx(5 / 18)
    assert result.sentence_error_rate == pytest.approx(2 / 3)
    # Characters, spaces included: a→i plus "the " deleted = 5; " big" inserted = 4; over 22 + 11 + 12.
    assert [utterance.character_errors for utterance in result.per_utterance] == [5, 4, 0]
    assert result.reference_characters == 45
    assert result.cer == pytest.approx(9 / 45)
    assert [utterance.wer for utterance in result.per_utterance] == pytest.approx([2 / 6, 1 / 2, 0])
    assert (result.utterances, result.empty_references) == (3, 0)


def test_empty_hypothesis_is_all_deletions():
    result = score([""], ["a b c"], normalize="none")
    assert (result.substitutions, result.deletions, result.insertions) == (0, 3, 0)
    assert (result.wer, result.cer) == (1.0, 1.0)


def test_empty_reference_counts_insertions_but_stays_out_of_the_mean():
    result = score(["a b", "x y"], ["a b", ""], normalize="none")
    assert result.insertions == 2
    assert result.wer == 1.0  # 2 inserted words over the 2 words of the only non-empty reference
    assert result.mean_utterance_wer == 0.0
    assert result.empty_references == 1
    assert result.sentence_error_rate == 0.5
    assert result.per_utterance[1].wer is None
    assert result.per_utterance[1].cer is None


def test_mean_utterance_wer_weights_short_utterances_like_long_ones():
    reference = "one two three four five six seven eight nine ten"
    result = score(["no", reference], ["yes", reference], normalize="none")
    assert result.wer == pytest.approx(1 / 11)
    assert result.mean_utterance_wer == pytest.approx(0.5)


def test_no_reference_word_is_an_error():
    with pytest.raises(HwError, match=r"none of the 2 references has a word after 'basic' normalization"):
        score(["a", "b"], ["", " ,"], normalize="basic")


def test_lengths_must_match():
    with pytest.raises(HwError, match="cannot score 1 hypotheses against 2 references"):
        score(["a"], ["a", "b"])


def test_unknown_normalizer_lists_the_allowed_ones():
    assert NORMALIZERS == ("none", "basic", "zh", "atc")
    with pytest.raises(HwError, match=r"unknown normalizer 'english'; allowed: none, basic, zh, atc"):
        score(["a"], ["a"], normalize="english")


def test_unknown_chinese_conversion_lists_the_allowed_ones():
    with pytest.raises(
        HwError, match=r"unknown Chinese script conversion 's2x'; allowed: t2s, s2t, s2tw, s2twp"
    ):
        score(["中"], ["中"], normalize="zh", zh_convert="s2x")


def test_basic_forgives_case_and_punctuation_that_none_counts():
    hypotheses, references = (
        ["bonjour le monde", "j'appelle maintenant"],
        ["Bonjour, le monde !", "J’appelle maintenant."],
    )
    assert score(hypotheses, references, normalize="basic").wer == 0.0
    orthographic = score(hypotheses, references, normalize="none")
    # "Bonjour,"→"bonjour" and "J’appelle"→"j'appelle", "maintenant."→"maintenant" substituted, "!" deleted.
    assert (orthographic.substitutions, orthographic.deletions, orthographic.insertions) == (3, 1, 0)
    assert orthographic.wer == pytest.approx(4 / 6)


def test_basic_keeps_french_accents():
    assert normalize("Élève, à l’école !", "basic") == "élève à l école"
    assert score(["eleve"], ["élève"], normalize="basic").wer == 1.0
    # Decomposed accents (e + U+0301) are the same letters as composed ones.
    assert score([unicodedata.normalize("NFD", "élève")], ["élève"], normalize="basic").wer == 0.0


def test_zh_converts_script_and_drops_punctuation_and_spaces():
    assert normalize("我愛 北京，天安門。", "zh", zh_convert="t2s") == "我爱北京天安门"
    assert score(["我愛北京天安門"], ["我爱北京天安门。"], normalize="zh").wer == 0.0
    orthographic = score(["我愛北京天安門"], ["我爱北京天安门。"], normalize="none")
    assert (orthographic.wer, orthographic.substitutions) == (1.0, 1)  # one unspaced "word" each


def test_zh_scores_characters_so_wer_equals_cer():
    result = score(["今天天汽很好啊"], ["今天天气很好"], normalize="zh", zh_convert="t2s")
    assert (result.substitutions, result.deletions, result.insertions) == (1, 0, 1)
    assert result.wer == result.cer == pytest.approx(2 / 6)
    assert result.zh_convert == "t2s"
    assert score(["a"], ["a"], normalize="basic").zh_convert is None


def test_zh_cn_sentences_cost_almost_nothing_against_their_traditional_conversion():
    import opencc

    references = _lines("commonvoice", "zh-CN_wiki_sentences.txt") + _lines(
        "commonvoice", "zh-CN_sentence-collector.txt"
    )
    traditional = opencc.OpenCC("s2t")
    hypotheses = [traditional.convert(sentence) for sentence in references]
    result = score(hypotheses, references, normalize="zh", zh_convert="t2s")
    # Measured with OpenCC 1.4.2: of 50,106 characters in 3,041 sentences, 4 do not round-trip because
    # s2t picks a variant that t2s keeps as valid Simplified: 想象→想像, 位于→位於 (twice), 计画→計畫.
    # Normalizing to Simplified (t2s) leaves the least residue; s2t or s2tw on both sides leave ~20.
    assert (result.deletions, result.insertions) == (0, 0)
    assert result.substitutions <= 4
    residue = {
        (reference_character, hypothesis_character)
        for utterance in result.per_utterance
        for reference_character, hypothesis_character in zip(
            utterance.reference, utterance.hypothesis, strict=True
        )
        if reference_character != hypothesis_character
    }
    assert residue <= {("象", "像"), ("于", "於"), ("画", "划")}
    assert result.cer < 1e-4
    assert score(hypotheses, references, normalize="none").sentence_error_rate > 0.9


def test_zh_tw_word_segmented_lines_cost_nothing_against_the_unspaced_sentence():
    segmented = [
        line.split(maxsplit=1)[1] for line in _lines("commonvoice", "zh-TW_cv2019_train_text.kaldi.txt")
    ]
    unspaced = [sentence.replace(" ", "") for sentence in segmented]
    result = score(segmented, unspaced, normalize="zh", zh_convert="s2twp")
    assert result.utterances == 1697
    assert (result.wer, result.cer, result.sentence_error_rate) == (0.0, 0.0, 0.0)
    assert score(segmented, unspaced, normalize="none").wer > 1.0  # every extra word is an insertion


def test_full_width_punctuation_costs_nothing_normalized_but_counts_orthographically():
    references = _lines("commonvoice", "zh-CN_sentence-collector.txt")
    hypotheses = [
        sentence.translate(str.maketrans("", "", "，。？！、；：“”‘’《》（）…—")) for sentence in references
    ]
    changed = sum(
        hypothesis != reference for hypothesis, reference in zip(hypotheses, references, strict=True)
    )
    assert changed == 326  # of the 541 sentences
    assert score(hypotheses, references, normalize="zh", zh_convert="t2s").wer == 0.0
    # Without spaces a sentence is one orthographic token, so each changed sentence is one substitution;
    # one sentence ("…历史佳话。 八年之后…") has an ASCII space between two changed clauses: 326 + 1.
    orthographic = score(hypotheses, references, normalize="none")
    assert (orthographic.substitutions, orthographic.deletions, orthographic.insertions) == (327, 0, 0)


def test_french_sentences_unaccented_cost_exactly_their_accented_words():
    references = _lines("commonvoice", "fr_debats-assemblee-nationale_sentences.txt")

    def strip_accents(text: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))

    accented_words = sum(
        word != strip_accents(word) for text in references for word in normalize(text, "basic").split()
    )
    result = score([strip_accents(text) for text in references], references, normalize="basic")
    assert accented_words > 1000
    assert (result.substitutions, result.deletions, result.insertions) == (accented_words, 0, 0)
    assert score([text.upper() for text in references], references, normalize="basic").wer == 0.0


def test_score_file_reads_quoted_commas_and_newlines(tmp_path):
    path = tmp_path / "transcripts.csv"
    path.write_text('id,hypothesis,reference\n1,"hello, world",hello world\n2,"good\nmorning",good morning\n')
    assert score_file(path, "hypothesis", "reference", "basic")["wer"] == 0.0
    result = score_file(path, "hypothesis", "reference", "none")
    assert result["wer"] == 0.25  # "hello," for "hello"; the quoted newline is whitespace between words
    assert (result["utterances"], result["hypothesis_column"], result["file"]) == (2, "hypothesis", str(path))


def test_score_file_reads_jsonl_with_a_missing_hypothesis(tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [{"prediction": "a b", "reference": "a b"}, {"prediction": None, "reference": "c d"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    result = score_file(path, "prediction", "reference", "none")
    assert (result["deletions"], result["wer"]) == (2, 0.5)


def test_score_file_errors_name_the_problem(tmp_path):
    with pytest.raises(HwError, match=r"transcript file not found: .*missing\.csv"):
        score_file(tmp_path / "missing.csv", "h", "r", "none")
    path = tmp_path / "t.csv"
    path.write_text("hyp,ref\na,a\n")
    with pytest.raises(HwError, match=r"no column 'prediction' \(--hyp-col\); available: hyp, ref"):
        score_file(path, "prediction", "ref", "none")
    with pytest.raises(HwError, match=r"unknown normalizer 'english'; allowed: none, basic, zh, atc"):
        score_file(path, "hyp", "ref", "english")
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(HwError, match=r"suffix '\.txt' is not one of \.csv, \.jsonl"):
        score_file(tmp_path / "t.txt", "hyp", "ref", "none")
    (tmp_path / "latin1.csv").write_bytes("hyp,ref\nélève,élève\n".encode("latin-1"))
    with pytest.raises(HwError, match=r"latin1\.csv: it is not UTF-8 text"):
        score_file(tmp_path / "latin1.csv", "hyp", "ref", "none")
    (tmp_path / "t.jsonl").write_text('{"hyp": "a", "ref": "a"}\n{"hyp": \n')
    with pytest.raises(HwError, match=r"line 2 is not JSON"):
        score_file(tmp_path / "t.jsonl", "hyp", "ref", "none")


def test_score_file_reproduces_the_atc_homework_figures():
    # SOURCES.md figures for the ATCO2 test transcripts (870 multi-line quoted CSV records), whitespace
    # tokens only: the homework's published mean of per-utterance WER and the corpus WER.
    path = _shared_data("atc", "homework_transcripts", "atco2_test_whisper_small_llama2_base.csv")
    result = score_file(path, "llm_text", "correct_text", "none")
    assert result["utterances"] == 870
    assert result["mean_utterance_wer"] == pytest.approx(1.0685482071348031, rel=1e-12)
    assert result["wer"] == pytest.approx(0.9742605554301197, rel=1e-12)


def test_atc_normalizer_puts_numbers_in_digits_on_both_sides():
    assert normalize("Lufthansa Five Three One Eight, contact Zurich one three four decimal six.", "atc") == (
        "lufthansa 5318 contact zurich 134.6"
    )
    assert normalize("DLH5318 climb 3,200 feet, alpha", "atc") == "dlh5318 climb 3200 feet alfa"
    # Lines are speaker turns: the number ending one does not merge with the number opening the next.
    assert normalize("one two decimal five\nthree four", "atc") == "12.5 34"
    # Hand-worked: "lufthansa 5318 contact zurich 134.6" against the spoken reference is 0 errors;
    # "134.5" for "134.6" is 1 substitution of 5 tokens, where word level would count 1 of 9.
    spoken = "lufthansa five three one eight contact zurich one three four decimal six"
    assert score(["Lufthansa 5318, contact Zurich 134.6"], [spoken], "atc").wer == 0.0
    result = score(
        ["lufthansa five three one eight contact zurich one three four decimal five"], [spoken], "atc"
    )
    assert (result.substitutions, result.reference_words, result.wer) == (1, 5, 0.2)
