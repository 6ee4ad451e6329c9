"""Each task metric on hand-made answers whose right score is known."""

from __future__ import annotations

import pytest

from joulescore.tasks import load_spec, task_names
from joulescore.tasks.metrics import (
    METRICS,
    Response,
    final_number_match,
    first_label,
    first_number,
    label_accuracy,
    last_number,
    normalize_answer,
    rouge_l,
    spearman,
    squad_f1,
    squad_prediction,
    squad_v2,
)


def test_every_shipped_task_names_a_known_metric_and_its_reference_field() -> None:
    assert set(task_names()) >= {"chat", "reasoning", "summarization", "extractive-qa", "sentiment",
                                 "sentence-similarity"}
    for name in task_names():
        spec = load_spec(name)
        assert spec.metric in METRICS
        assert (spec.reference_field is None) == (name == "chat")


@pytest.mark.parametrize(("text", "number"), [
    ("She makes 9 * 2 = $18 every day.\n18", 18.0), ("The answer is $1,080.", 1080.0),
    ("-3 degrees", -3.0), ("about 0.5 of it, so 2.25", 2.25), ("no digits here", None),
])
def test_last_number(text: str, number: float | None) -> None:
    assert last_number(text) == number


def test_final_number_exact_match() -> None:
    q = final_number_match([Response("so the total is 18", 10, "18"), Response("It is 1,080.", 10, "1080"),
                            Response("I think 17", 10, "18"), Response("no idea", 10, "5")])
    assert q.value == 0.5 and q.n == 4 and q.details["no_number"] == 1


def test_first_number_skips_a_list_marker() -> None:
    assert first_number("3.8") == 3.8
    assert first_number("1. Both sentences say 4") == 4
    assert first_number("Score: 2 out of 5") == 2
    assert first_number("similar") is None


def test_sentiment_accuracy_takes_the_first_label_word() -> None:
    assert first_label("Negative, not positive") == "negative"
    q = label_accuracy([Response("Positive.", 2, "positive"), Response("It is NEGATIVE", 2, "negative"),
                        Response("positive", 1, "negative"), Response("neutral", 1, "positive")])
    assert q.value == 0.5 and q.details["unparsed"] == 1


def test_spearman_is_rank_based_and_reports_unparsed() -> None:
    perfect = [Response(str(s * 10), 1, g) for s, g in ((0.1, 0.5), (0.2, 1.0), (0.3, 4.0), (0.9, 5.0))]
    assert spearman(perfect).value == pytest.approx(1.0)
    reverse = [Response(str(5 - g), 1, g) for g in (0.0, 1.0, 2.0, 3.0)]
    assert spearman(reverse).value == pytest.approx(-1.0)
    q = spearman([Response("2", 1, 1.0), Response("hmm", 1, 2.0), Response("4", 1, 3.0)])
    assert q.value == pytest.approx(1.0) and q.details["parsed"] == 2
    assert spearman([Response("3", 1, 1.0), Response("3", 1, 2.0)]).value is None  # constant
    assert spearman([Response("x", 1, 1.0)]).value is None


def test_squad_normalisation_and_scores() -> None:
    assert normalize_answer("The  Normans!") == "normans"
    assert squad_f1("in France", ["France"]) == pytest.approx(2 / 3)
    assert squad_prediction("Answer: Unanswerable.") == ""
    assert squad_prediction("No answer in the text") == ""
    assert squad_prediction("Rollo\nmore text") == "Rollo"
    q = squad_v2([
        Response("France", 1, ["France", "in France"]),           # exact
        Response("the country of France", 1, ["France"]),         # partial F1 = 2*(1/3*1)/(4/3) = 0.5
        Response("unanswerable", 1, []),                          # right: no answer
        Response("Paris", 1, []),                                 # wrong: should abstain
        Response("unanswerable", 1, ["Rollo"]),                   # wrong: abstained
    ])
    assert q.value == pytest.approx(2 / 5)
    assert q.details["f1"] == pytest.approx((1 + 0.5 + 1 + 0 + 0) / 5)
    assert q.details["unanswerable"] == 2 and q.details["noans_exact"] == 0.5


def test_rouge_l_takes_the_best_reference() -> None:
    same = rouge_l([Response("we propose a new memory model", 5, ["we propose a new memory model"])])
    assert same.value == pytest.approx(1.0)
    best = rouge_l([Response("a memory model", 3, ["totally unrelated words", "a memory model"])])
    assert best.value == pytest.approx(1.0)
    none = rouge_l([Response("cats", 1, ["dogs bark"])])
    assert none.value == 0.0
    half = rouge_l([Response("a b", 2, "a b c d")])  # LCS 2: P=1, R=0.5, F=2/3
    assert half.value == pytest.approx(2 / 3)
