import math
import re

import numpy as np
import pytest

from hw.errors import HwError
from hw.tasks.qa.postprocess import postprocess_qa_predictions

CONTEXT = "Marie Curie was born in Warsaw in 1867"
# Character offsets of the words: Marie Curie was born in Warsaw in 1867.
WORDS = [(0, 5), (6, 11), (12, 15), (16, 20), (21, 23), (24, 30), (31, 33), (34, 38)]
EXAMPLES = [{"id": "curie", "context": CONTEXT}]
# Every feature is [CLS] question question [SEP] context words [SEP]: word k of a window is token 4 + k.
WHOLE_CONTEXT = {"example_id": "curie", "offset_mapping": [None] * 4 + WORDS + [None]}  # 13 tokens
FIRST_HALF = {"example_id": "curie", "offset_mapping": [None] * 4 + WORDS[:5] + [None]}  # Marie … in
SECOND_HALF = {"example_id": "curie", "offset_mapping": [None] * 4 + WORDS[3:] + [None]}  # born … 1867


def _logits(length: int, peaks: dict[int, float]) -> np.ndarray:
    """Zero logits of `length` tokens, except at the token indices given in `peaks`."""
    logits = np.zeros(length, dtype=np.float32)
    logits[list(peaks)] = list(peaks.values())
    return logits


def _answer(features, start_peaks, end_peaks, **options) -> str:
    lengths = [len(feature["offset_mapping"]) for feature in features]
    starts = [_logits(length, peaks) for length, peaks in zip(lengths, start_peaks, strict=True)]
    ends = [_logits(length, peaks) for length, peaks in zip(lengths, end_peaks, strict=True)]
    return postprocess_qa_predictions(EXAMPLES, features, starts, ends, **options).predictions["curie"]


def test_best_span_is_cut_from_the_context_by_offsets():
    assert _answer([WHOLE_CONTEXT], [{9: 5.0}], [{9: 4.0}]) == "Warsaw"
    assert _answer([WHOLE_CONTEXT], [{10: 5.0}], [{11: 4.0}]) == "in 1867"


def test_answer_found_only_in_the_second_window():
    # The first window's best span ("Curie", 1 + 1) loses to "Warsaw" (3 + 3), token 6 of the second window.
    assert _answer([FIRST_HALF, SECOND_HALF], [{5: 1.0}, {6: 3.0}], [{5: 1.0}, {6: 3.0}]) == "Warsaw"


def test_over_long_span_loses_to_a_shorter_lower_scoring_one():
    starts, ends = [{4: 6.0, 8: 2.0}], [{9: 6.0}]
    # Marie … Warsaw (tokens 4-9) scores 12 but has 6 tokens; "in Warsaw" (tokens 8-9) scores 8.
    assert _answer([WHOLE_CONTEXT], starts, ends, max_answer_length=2) == "in Warsaw"
    assert _answer([WHOLE_CONTEXT], starts, ends) == "Marie Curie was born in Warsaw"


def test_reversed_span_is_skipped():
    # Start on Warsaw (token 9) and end on Curie (token 5) would score 10; Warsaw … 1867 scores 5 + 1.
    assert _answer([WHOLE_CONTEXT], [{9: 5.0}], [{5: 5.0, 11: 1.0}]) == "Warsaw in 1867"


def test_spans_touching_the_question_or_special_tokens_are_skipped():
    starts = [{0: 20.0, 2: 10.0, 5: 1.0}]  # [CLS] and the second question token lead the start logits
    ends = [{0: 20.0, 5: 10.0, 12: 15.0}]  # [CLS] and the last [SEP] lead the end logits
    assert _answer([WHOLE_CONTEXT], starts, ends) == "Curie"


def test_n_best_list_holds_softmax_probabilities_of_the_kept_candidates():
    example = {"id": "born", "context": "Warsaw 1867"}
    feature = {"example_id": "born", "offset_mapping": [None, (0, 6), (7, 11), None]}
    starts, ends = np.array([[-9.0, 1.0, 0.0, -9.0]]), np.array([[-9.0, 0.0, 1.0, -9.0]])
    # Valid spans: "Warsaw 1867" 1 + 1, "Warsaw" 1 + 0, "1867" 0 + 1; softmax e² : e : e = e : 1 : 1.
    result = postprocess_qa_predictions([example], [feature], starts, ends, n_best_size=3)
    assert result.predictions == {"born": "Warsaw 1867"}
    nbest = result.nbest["born"]
    spans = [(entry["text"], entry["start_logit"], entry["end_logit"]) for entry in nbest]
    assert spans == [("Warsaw 1867", 1.0, 1.0), ("Warsaw", 1.0, 0.0), ("1867", 0.0, 1.0)]
    e = math.e
    assert [entry["probability"] for entry in nbest] == pytest.approx([e / (e + 2), 1 / (e + 2), 1 / (e + 2)])
    two_best = postprocess_qa_predictions([example], [feature], starts, ends, n_best_size=2).nbest["born"]
    assert [entry["probability"] for entry in two_best] == pytest.approx([e / (e + 1), 1 / (e + 1)])


def test_padded_logits_equal_ragged_logits_and_padding_is_never_picked():
    features = [FIRST_HALF, {"example_id": "curie", "offset_mapping": [None] * 4 + WORDS[6:] + [None]}]
    ragged_starts = [_logits(10, {5: 1.0}), _logits(7, {4: 2.0})]
    ragged_ends = [_logits(10, {5: 1.0}), _logits(7, {5: 2.0})]
    # Padding to 10 tokens with a logit higher than any real one: the second feature has only 7 tokens.
    padded_starts, padded_ends = np.full((2, 10), 100.0), np.full((2, 10), 100.0)
    padded_starts[0], padded_ends[0] = ragged_starts[0], ragged_ends[0]
    padded_starts[1, :7], padded_ends[1, :7] = ragged_starts[1], ragged_ends[1]
    ragged = postprocess_qa_predictions(EXAMPLES, features, ragged_starts, ragged_ends)
    padded = postprocess_qa_predictions(EXAMPLES, features, padded_starts, padded_ends)
    assert ragged.predictions == padded.predictions == {"curie": "in 1867"}
    assert ragged.nbest == padded.nbest


def test_squad_v2_predicts_empty_when_the_null_score_wins():
    # Null scores: first window [CLS] 4 + 4 = 8, second 3 + 2 = 5; the lower, 5, counts. Best span Warsaw 3.
    starts, ends = [{0: 4.0, 5: 1.0}, {0: 3.0, 6: 1.5}], [{0: 4.0, 5: 1.0}, {0: 2.0, 6: 1.5}]
    windows = [FIRST_HALF, SECOND_HALF]
    assert _answer(windows, starts, ends) == "Warsaw"
    assert _answer(windows, starts, ends, squad_v2=True) == ""
    # The null score must beat the best span by more than the threshold: 5 - 3 > 1.9, but not > 2.
    assert _answer(windows, starts, ends, squad_v2=True, null_score_threshold=1.9) == ""
    assert _answer(windows, starts, ends, squad_v2=True, null_score_threshold=2.0) == "Warsaw"


def test_squad_v2_null_answer_joins_the_n_best_list():
    starts, ends = [_logits(10, {0: 3.0, 6: 1.5})], [_logits(10, {0: 2.0, 6: 1.5})]
    result = postprocess_qa_predictions(EXAMPLES, [SECOND_HALF], starts, ends, n_best_size=1, squad_v2=True)
    # n_best_size 1 keeps the null answer (5) alone; had a span outscored it, null would still be appended.
    assert result.nbest["curie"] == [{"text": "", "probability": 1.0, "start_logit": 3.0, "end_logit": 2.0}]
    logits = [_logits(10, {6: 9.0})]
    high = postprocess_qa_predictions(EXAMPLES, [SECOND_HALF], logits, logits, n_best_size=1, squad_v2=True)
    assert [entry["text"] for entry in high.nbest["curie"]] == ["Warsaw", ""]
    assert high.predictions == {"curie": "Warsaw"}


def test_example_without_features_gets_an_empty_answer():
    examples = [*EXAMPLES, {"id": "no features", "context": "x"}]
    logits = [_logits(13, {9: 1.0})]
    result = postprocess_qa_predictions(examples, [WHOLE_CONTEXT], logits, logits)
    assert result.predictions == {"curie": "Warsaw", "no features": ""}
    assert result.nbest["no features"] == []


def test_mismatched_inputs_are_rejected():
    logits = [_logits(13, {})]
    message = (
        "got 2 features but 1 rows of start logits and 1 of end logits; pass one row of each per feature"
    )
    with pytest.raises(HwError, match=f"^{message}, in feature order$"):
        postprocess_qa_predictions(EXAMPLES, [WHOLE_CONTEXT, WHOLE_CONTEXT], logits, logits)
    message = "feature 0 has 13 tokens but only 12 logits; pass logits computed on these features"
    with pytest.raises(HwError, match=f"^{message}$"):
        postprocess_qa_predictions(EXAMPLES, [WHOLE_CONTEXT], [_logits(12, {})], [_logits(12, {})])
    stranger = {"example_id": "stranger", "offset_mapping": WHOLE_CONTEXT["offset_mapping"]}
    message = "1 example ids of the features are not among the 1 examples, e.g. 'stranger'; pass the examples"
    with pytest.raises(HwError, match=f"^{re.escape(message)} the features were made from$"):
        postprocess_qa_predictions(EXAMPLES, [stranger], logits, logits)
