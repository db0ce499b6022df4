"""Text normalization for judging answers: case, punctuation and numbers (digits and words are the same)."""

from __future__ import annotations

import re

from num2words import num2words

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PUNCT = re.compile(r"[^A-Za-z0-9' ]+")


def number_words(n: int) -> str:
    return num2words(n).replace("-", " ").replace(",", "")


def normalize(text: str, lower: bool = True) -> str:
    """'Seven plus 5 is Twelve!' -> 'seven plus five is twelve' (`lower=False`: 'Seven plus five is Twelve')."""
    text = (text.lower() if lower else text).replace("-", " ")
    text = _NUMBER.sub(lambda m: " " + num2words(float(m.group()) if "." in m.group() else int(m.group())) + " ", text)
    text = text.replace("-", " ").replace(",", " ")
    text = _PUNCT.sub(" ", text).replace("'", "")
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))


def contains_answer(transcript: str, accepted: list[str]) -> bool:
    """True when any accepted answer appears as whole words in the normalized transcript."""
    hyp = f" {normalize(transcript)} "
    return any(f" {normalize(a)} " in hyp for a in accepted if normalize(a))
