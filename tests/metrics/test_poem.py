import json
from pathlib import Path

import pytest

from hw.errors import HwError
from hw.metrics import poem
from hw.metrics.poem import (
    char_f1,
    chrf,
    distinct_n,
    form_score,
    repetition_rate,
    score_poem,
    score_poems,
    split_clauses,
    strip_echo,
    traditional_share,
)
from tests.shared_data import SHARED_DATA

COUPLET = "秦川雄帝宅，函谷壯皇居。"
CONTINUATION = "綺殿千尋起，離宮百雉餘。連甍遙接漢，飛觀迥凌虛。雲日隱層闕，風煙出綺疎。"


def _tang_data() -> Path:
    directory = SHARED_DATA / "tang"
    if not (directory / "Tang_training_data.json").is_file():
        pytest.skip(f"real Tang data not found in {directory}")
    return directory


def test_split_clauses_reads_punctuated_text_and_tab_separated_ground_truth_alike():
    assert split_clauses(COUPLET) == ["秦川雄帝宅", "函谷壯皇居"]
    assert split_clauses("偕伴登山去\t觀雪且賞桔\n") == ["偕伴登山去", "觀雪且賞桔"]
    assert split_clauses("夫子何爲者？栖栖 一代中") == ["夫子何爲者", "栖栖", "一代中"]
    assert split_clauses("，。 ") == []


@pytest.mark.parametrize(
    ("couplet", "continuation", "expected"),
    [
        (COUPLET, CONTINUATION, 1.0),
        (COUPLET, "綺殿千尋起，離宮百雉餘。", 1.0),  # 4 clauses in all: a jueju
        (COUPLET, CONTINUATION.replace("疎", "疎疎"), 0.5 + 0.5 * 5 / 6),  # one 6-character clause
        (COUPLET, "綺殿千尋起，離宮百雉餘。連甍遙接漢。", 0.5),  # 5 clauses in all
        (COUPLET, "綺殿千尋起離宮百雉餘", 0.0),  # 3 clauses, 10 characters
        (COUPLET, "", 0.0),
        ("昨夜星辰昨夜風，畫樓西畔桂堂東。", "身無彩鳳雙飛翼，心有靈犀通。", 0.75),  # 7 wanted, one 5
        ("春眠不覺曉，處處聞啼鳥鳴。", "夜來風雨聲，花落知多少。", 1.0),  # irregular couplet: 5 or 7 counts
        ("春眠不覺曉，處處聞啼鳥鳴。", "夜來風雨，花落知多少。", 0.75),
    ],
)
def test_form_score_hand_worked(couplet, continuation, expected):
    assert form_score(couplet, continuation) == pytest.approx(expected)


def test_char_f1_is_bag_of_characters_ignoring_punctuation():
    assert char_f1("春，風。", "春雨\t秋風") == pytest.approx(2 / 3)  # P 2/2, R 2/4
    assert char_f1("春春", "春") == pytest.approx(2 / 3)  # only one 春 is shared: P 1/2, R 1
    assert char_f1("秋", "春") == 0.0
    assert char_f1("", "") == 0.0


def test_chrf_hand_worked():
    # orders 1 and 2 only (the prediction has no trigram): P = (1 + 1) / 2, R = (2/3 + 1/2) / 2 = 7/12;
    # F2 = 5 P R / (4 P + R) = (35/12) / (55/12) = 7/11
    assert chrf("春，風", "春風吹") == pytest.approx(7 / 11)
    assert chrf(CONTINUATION, CONTINUATION.replace("，", "\t").replace("。", "\t")) == pytest.approx(1.0)
    assert chrf("", "春") == 0.0
    assert chrf("秋", "春") == 0.0


def test_repetition_rate_counts_repeated_bigrams_within_clauses():
    # bigrams 春風 風春 春風 | 春風: 4 in all, 2 distinct
    assert repetition_rate("春風春風，春風") == pytest.approx(0.5)
    assert repetition_rate("春風，風春") == 0.0  # no bigram spans the comma
    assert repetition_rate(CONTINUATION) == 0.0
    assert repetition_rate("春") == 0.0


def test_distinct_n_over_a_set_of_outputs():
    assert distinct_n(["春風", "春雨"], 1) == pytest.approx(3 / 4)
    assert distinct_n(["春風", "春雨"], 2) == 1.0
    assert distinct_n(["春風", "春風"], 2) == 0.5
    assert distinct_n(["", "春"], 2) == 0.0


def test_traditional_share_counts_only_script_specific_characters():
    assert traditional_share(COUPLET) == 1.0  # 壯 is the only character that differs: Traditional
    assert traditional_share("秦川雄帝宅，函谷壮皇居。") == 0.0  # 壮 is Simplified
    assert traditional_share("壯壮") == 0.5
    assert traditional_share("山水") == 1.0  # nothing differs between the scripts
    assert traditional_share("皇后") == 1.0  # in context 后 is the same in both
    assert traditional_share("后") == 0.0  # alone OpenCC reads it as Simplified 後
    assert traditional_share("hello, world") == 0.0


def test_traditional_share_falls_back_to_single_characters_when_lengths_change(monkeypatch):
    class LengthChanging:
        def convert(self, text: str) -> str:
            return {"壮": "壯"}.get(text, text) if len(text) == 1 else text + "!"

    monkeypatch.setattr(poem, "_converter", lambda config: LengthChanging())
    assert traditional_share("壮山") == 0.0  # 壮 changes under "s2t" alone: Simplified


def test_strip_echo_drops_a_repeated_first_couplet_only():
    assert strip_echo(COUPLET, COUPLET + "\n" + CONTINUATION) == CONTINUATION
    assert strip_echo(COUPLET, "秦川雄帝宅 函谷壯皇居 綺殿千尋起") == "綺殿千尋起"
    assert strip_echo(COUPLET, "秦川雄帝宅，綺殿千尋起。") == "秦川雄帝宅，綺殿千尋起。"
    assert strip_echo(COUPLET, CONTINUATION) == CONTINUATION


def test_score_poem_scores_the_continuation_after_an_echo():
    reference = "綺殿千尋起\t離宮百雉餘\t連甍遙接漢\t飛觀迥凌虛\t雲日隱層闕\t風煙出綺疎"
    expected = {"form": 1.0, "char_f1": 1.0, "chrf": 1.0, "repetition": 0.0, "traditional_share": 1.0}
    assert score_poem(COUPLET, COUPLET + CONTINUATION, reference) == pytest.approx(expected)


def test_score_poems_averages_items_and_adds_distinct_n():
    predictions = ["綺殿千尋起，離宮百雉餘。", ""]
    items, summary = score_poems([COUPLET, COUPLET], predictions, ["綺殿千尋起離宮百雉餘"] * 2)
    assert [item["form"] for item in items] == [1.0, 0.0]
    assert summary["form"] == 0.5
    assert summary["char_f1"] == 0.5
    assert summary["distinct_1"] == 1.0
    assert summary["distinct_2"] == 1.0


def test_score_poems_rejects_mismatched_lengths():
    with pytest.raises(HwError, match="got 2 couplets, 2 predictions and 1 references"):
        score_poems([COUPLET, COUPLET], ["", ""], [""])
    with pytest.raises(HwError, match="got no predictions"):
        score_poems([], [], [])


def test_every_real_training_output_scores_full_form_given_its_input():
    records = json.loads((_tang_data() / "Tang_training_data.json").read_text(encoding="utf-8"))
    assert len(records) == 5001
    assert all(form_score(record["input"], record["output"]) == 1.0 for record in records)
    # four inputs hold a single 7-character clause (the couplet split mid-way, e.g. 二月六夜春水生。),
    # with three clauses in the output: 4 in all, still full form
    single = [record for record in records if len(split_clauses(record["input"])) == 1]
    assert [len(split_clauses(record["output"])) for record in single] == [3, 7, 3, 7]


def test_real_ground_truth_lines_parse_and_score_full_form_but_one_pailu():
    directory = _tang_data()
    tests = json.loads((directory / "Tang_testing_data.json").read_text(encoding="utf-8"))
    lines = (directory / "Tang_testing_gt.txt").read_text(encoding="utf-8").splitlines()
    assert len(tests) == len(lines) == 15  # the last line has no newline: `wc -l` says 14
    assert all("\t" in line and "，" not in line for line in lines)
    scores = [form_score(test["input"], line) for test, line in zip(tests, lines, strict=True)]
    # item 7 (慨然撫長劒，濟世豈邀名。) is a 10-clause pailü: clause count wrong, lengths right
    assert scores == [1.0] * 7 + [0.5] + [1.0] * 7
    assert len(split_clauses(lines[7])) == 8


def test_real_poems_are_traditional_and_their_simplified_conversion_is_not():
    records = json.loads((_tang_data() / "Tang_training_data.json").read_text(encoding="utf-8"))[:500]
    outputs = [record["output"] for record in records]
    simplified = [poem._converter("t2s").convert(output) for output in outputs]
    assert sum(map(traditional_share, outputs)) / len(outputs) > 0.97
    # a conversion scores 0 unless nothing changed: a poem written in characters common to both scripts
    for output, converted in zip(outputs, simplified, strict=True):
        assert traditional_share(converted) == (1.0 if converted == output else 0.0)
