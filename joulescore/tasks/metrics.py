"""Quality metrics, named by task specs.  Each takes the finished responses, returns a Quality."""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Callable, Sequence

from joulescore.tasks.media_metrics import top_k_accuracy, word_error_rate
from joulescore.tasks.scores import Quality, Response
from joulescore.units import percentile


def length_stats(responses: Sequence[Response]) -> Quality:
    """Chat has no correct answer: report how much the model wrote."""
    tokens = [r.output_tokens for r in responses]
    if not tokens:
        return Quality("output_tokens_mean", None, 0, None, note="no responses")
    return Quality(
        metric="output_tokens_mean",
        value=statistics.fmean(tokens),
        n=len(tokens),
        higher_is_better=None,
        details={
            "median": float(statistics.median(tokens)),
            "p90": percentile(tokens, 90),
            "max": float(max(tokens)),
            "chars_mean": statistics.fmean(len(r.text) for r in responses),
        },
        note="no correctness score for chat; output length only",
    )


# --- answer parsers: generative models answer in prose, so pull out the expected form ---------

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_LABEL = re.compile(r"\b(positive|negative)\b", re.IGNORECASE)
#: how a generative model says a SQuAD v2 question has no answer in the context (the prompt asks
#: for "unanswerable"; "no answer" is accepted too)
UNANSWERABLE = ("unanswerable", "no answer")
_PUNCT = frozenset(string.punctuation)


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def last_number(text: str) -> float | None:
    """GSM8K: the final answer is the last number the model wrote ("$1,080." -> 1080)."""
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s+(?=[^\d\s])")


def first_number(text: str) -> float | None:
    """STS: the score is the first number (a model may go on to explain it); "1. The..." is a list marker."""
    found = _NUMBER.findall(_LIST_MARKER.sub("", text, count=1))
    return _to_float(found[0]) if found else None


def first_label(text: str) -> str | None:
    """Sentiment: the first of the words positive/negative, case-insensitive."""
    match = _LABEL.search(text)
    return match.group(1).lower() if match else None


# --- SQuAD v2 official normalisation (evaluate-v2.0.py) ---------------------------------------

def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_prediction(text: str) -> str:
    """A generative answer as a SQuAD prediction: its first line, "" when it says unanswerable."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*answer\s*:\s*", "", line, flags=re.IGNORECASE)
    norm = normalize_answer(line)
    if any(norm.startswith(u) for u in UNANSWERABLE):
        return ""
    return line.strip()


def squad_exact(prediction: str, gold: Sequence[str]) -> float:
    """Best exact match over the gold answers; no gold answers means the right answer is ""."""
    golds = [g for g in gold if normalize_answer(g)] or [""]
    return float(max(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def squad_f1(prediction: str, gold: Sequence[str]) -> float:
    """Best token-overlap F1 over the gold answers, as the official v2 script computes it."""
    golds = [g for g in gold if normalize_answer(g)] or [""]
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for g in golds:
        gold_tokens = normalize_answer(g).split()
        if not gold_tokens or not pred_tokens:
            best = max(best, float(gold_tokens == pred_tokens))
            continue
        common = Counter(pred_tokens) & Counter(gold_tokens)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(pred_tokens), same / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


# --- metrics ---------------------------------------------------------------------------------

def final_number_match(responses: Sequence[Response]) -> Quality:
    """GSM8K: the last number in the answer equals the reference's final number."""
    if not responses:
        return Quality("exact_match", None, 0, True, note="no responses")
    preds = [last_number(r.text) for r in responses]
    golds = [_to_float(str(r.reference)) for r in responses]
    hits = [p is not None and g is not None and abs(p - g) < 1e-6 for p, g in zip(preds, golds)]
    # A reasoning response that never closed its thinking reaches here as an empty answer: wrong.
    empty = sum(1 for r in responses if not r.text.strip())
    return Quality("exact_match", sum(hits) / len(hits), len(hits), True,
                   details={"no_number": float(sum(p is None for p in preds)), "correct": float(sum(hits)),
                            "empty_answers": float(empty)},
                   note="last number in the answer vs the GSM8K final answer")


def rouge_l(responses: Sequence[Response]) -> Quality:
    """ROUGE-L F1 (stemmed), the best over every reference summary given (SciTLDR is multi-target)."""
    from rouge_score import rouge_scorer

    if not responses:
        return Quality("rougeL_f1", None, 0, True, note="no responses")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = []
    for r in responses:
        refs = r.reference if isinstance(r.reference, list) else [r.reference]
        refs = [str(x) for x in refs if x] or [""]
        scores.append(max(scorer.score(ref, r.text)["rougeL"].fmeasure for ref in refs))
    return Quality("rougeL_f1", statistics.fmean(scores), len(scores), True,
                   note="ROUGE-L F1, best over all reference TLDRs")


def squad_v2(responses: Sequence[Response]) -> Quality:
    """SQuAD v2 exact match (the value) and F1, unanswerable questions included."""
    if not responses:
        return Quality("squad_v2_exact", None, 0, True, note="no responses")
    exact, f1, has_ans = [], [], []
    for r in responses:
        gold = list(r.reference or [])
        pred = squad_prediction(r.text)
        exact.append(squad_exact(pred, gold))
        f1.append(squad_f1(pred, gold))
        has_ans.append(bool([g for g in gold if normalize_answer(g)]))
    noans = [e for e, h in zip(exact, has_ans) if not h]
    details = {"f1": statistics.fmean(f1), "unanswerable": float(len(noans))}
    if noans:
        details["noans_exact"] = statistics.fmean(noans)
    return Quality("squad_v2_exact", statistics.fmean(exact), len(exact), True, details=details,
                   note='SQuAD v2 normalisation; "unanswerable" (or "no answer") = no answer')


def label_accuracy(responses: Sequence[Response]) -> Quality:
    """Sentiment: the first positive/negative word in the output equals the gold label."""
    if not responses:
        return Quality("accuracy", None, 0, True, note="no responses")
    preds = [first_label(r.text) for r in responses]
    hits = [p is not None and p == str(r.reference).lower() for p, r in zip(preds, responses)]
    return Quality("accuracy", sum(hits) / len(hits), len(hits), True,
                   details={"unparsed": float(sum(p is None for p in preds))},
                   note="first positive/negative word vs the gold label")


def spearman(responses: Sequence[Response]) -> Quality:
    """STS: Spearman rank correlation of the predicted scores with the gold 0-5 scores."""
    from scipy.stats import spearmanr

    pairs = [(first_number(r.text), float(r.reference)) for r in responses]
    parsed = [(p, g) for p, g in pairs if p is not None]
    note = f"Spearman over {len(parsed)} of {len(pairs)} answers that held a number"
    if len(parsed) < 2:
        return Quality("spearman", None, len(pairs), True, note=note + "; too few to rank")
    preds, golds = [p for p, _ in parsed], [g for _, g in parsed]
    rho = math.nan if len(set(preds)) < 2 or len(set(golds)) < 2 else spearmanr(preds, golds).statistic
    if math.isnan(rho):
        return Quality("spearman", None, len(pairs), True, note=note + "; constant predictions")
    return Quality("spearman", float(rho), len(pairs), True,
                   details={"parsed": float(len(parsed))}, note=note)


def wer(responses: Sequence[Response]) -> Quality:
    """ASR: word error rate (joulescore/tasks/media_metrics.py)."""
    return word_error_rate(responses)


def top_k(responses: Sequence[Response]) -> Quality:
    """Image classification: top-1 and top-5 accuracy (joulescore/tasks/media_metrics.py)."""
    return top_k_accuracy(responses)


METRICS: dict[str, Callable[[Sequence[Response]], Quality]] = {
    "length": length_stats,
    "final_number": final_number_match,
    "rouge_l": rouge_l,
    "squad_v2": squad_v2,
    "label_accuracy": label_accuracy,
    "spearman": spearman,
    "wer": wer,
    "top_k": top_k,
}


def score(metric: str, responses: Sequence[Response]) -> Quality:
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return METRICS[metric](responses)
