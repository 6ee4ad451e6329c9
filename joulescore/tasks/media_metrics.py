"""Quality of the media tasks: word error rate (asr) and top-1/top-5 accuracy (image-classification)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from joulescore.tasks.scores import Quality, Response

#: apostrophes kept inside words ("don't"); every other character that is not a letter or digit is a space
_NOT_WORD = re.compile(r"[^\w']+|(?<!\w)'|'(?!\w)")
WER_NORMALISATION = ("lower case; every character other than a letter, digit or an apostrophe inside a word "
                     "becomes a space (so hyphens split words and punctuation goes); whitespace collapsed. "
                     "No number or spelling normalisation")


def normalise_words(text: str) -> str:
    """The text WER compares: see ``WER_NORMALISATION``."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def word_error_rate(responses: Sequence[Response]) -> Quality:
    """Corpus WER (jiwer): substitutions + deletions + insertions over the reference words, all clips pooled."""
    import jiwer

    pairs = [(normalise_words(str(r.reference or "")), normalise_words(r.text)) for r in responses]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref]
    if not pairs:
        return Quality("wer", None, 0, False, note="no responses with a reference transcript")
    out = jiwer.process_words([ref for ref, _ in pairs], [hyp for _, hyp in pairs])
    words = sum(len(ref.split()) for ref, _ in pairs)
    exact = sum(1 for ref, hyp in pairs if ref == hyp)
    return Quality("wer", float(out.wer), len(pairs), False,
                   details={"reference_words": float(words), "substitutions": float(out.substitutions),
                            "deletions": float(out.deletions), "insertions": float(out.insertions),
                            "exact_clips": float(exact)},
                   note="corpus word error rate (jiwer); normalised: " + WER_NORMALISATION)


def _labels(text: str) -> list[int]:
    return [int(x) for x in text.split() if x.lstrip("-").isdigit()]


def top_k_accuracy(responses: Sequence[Response]) -> Quality:
    """Top-1 (the value) and top-5 accuracy: the reference class index among the model's first 1 or 5 answers."""
    if not responses:
        return Quality("top1_accuracy", None, 0, True, note="no responses")
    top1 = top5 = 0
    for r in responses:
        try:
            gold = int(r.reference)
        except (TypeError, ValueError):
            continue  # a reference that is not a class index never matches
        answers = _labels(r.text)
        top1 += answers[:1] == [gold]
        top5 += gold in answers[:5]
    n = len(responses)
    return Quality("top1_accuracy", top1 / n, n, True, details={"top5_accuracy": top5 / n},
                   note="ImageNet-1k class index of the reference vs the model's top 1 and top 5")
