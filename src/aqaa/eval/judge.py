"""Judging one spoken answer: what it says (Whisper transcript) and how it says it (measurements).

Speech control is judged against the same engine's *neutral* rendering of the same phrase, so a voice that is
always slow does not pass "say it slowly" for free.
"""

from __future__ import annotations

import math

from aqaa.audio.measure import SpeechMeasure, semitones
from aqaa.eval.text import contains_answer, normalize, wer

# Smallest change that counts as following a control instruction (direction and size).
MIN_RATE_RATIO = 1.1  # duration ratio controlled / neutral (slow) or neutral / controlled (fast)
MIN_LEVEL_DB = 3.0
MIN_SEMITONES = 1.0

OPPOSITE_WORDS = {
    "fast": ["slow", "slowly"], "slow": ["fast", "quickly", "quick"],
    "high": ["low"], "low": ["high"],
    "loud": ["quiet", "quietly", "soft", "softly"], "quiet": ["loud", "loudly"],
}


def control_effect(axis: str, controlled: SpeechMeasure, neutral: SpeechMeasure) -> float:
    """Size of the change in the axis' natural unit: rate -> duration ratio controlled / neutral, volume -> dB
    difference, pitch -> semitones."""
    if axis == "rate":
        return controlled.speech_s / max(neutral.speech_s, 1e-6)
    if axis == "volume":
        return controlled.rms_db - neutral.rms_db
    if math.isnan(controlled.f0_hz) or math.isnan(neutral.f0_hz):
        return float("nan")
    return semitones(controlled.f0_hz, neutral.f0_hz)


def direction_ok(axis: str, direction: str, effect: float) -> bool:
    if math.isnan(effect):
        return False
    if axis == "rate":
        return effect >= MIN_RATE_RATIO if direction == "slow" else effect <= 1 / MIN_RATE_RATIO
    if axis == "volume":
        return effect >= MIN_LEVEL_DB if direction == "loud" else effect <= -MIN_LEVEL_DB
    return effect >= MIN_SEMITONES if direction == "high" else effect <= -MIN_SEMITONES


_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_CALENDAR = set("monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
                "august september october november december".split())


def stated_values(text: str) -> set[str]:
    """The numbers, weekdays and months a sentence states: 'Forty five plus 20 is sixty eight.' -> {45, 20, 68}.
    A lone "one" is left out (more often "the larger one" than a number)."""
    words, values, i = normalize(text).split(), set(), 0
    while i < len(words):
        w = words[i]
        if w in _CALENDAR:
            values.add(w)
        elif w in _TENS or w in _UNITS:
            n = _TENS.get(w, _UNITS.get(w))
            if w in _TENS and i + 1 < len(words) and 0 < _UNITS.get(words[i + 1], 0) < 10:
                i, n = i + 1, n + _UNITS[words[i + 1]]
            if i + 1 < len(words) and words[i + 1] == "hundred":
                i, n = i + 1, n * 100
            if not (w == "one" and n == 1):
                values.add(str(n))
        i += 1
    return values


def _knowledge_names() -> list[str]:
    from aqaa.data.lexicon import COLOUR_NAMES, COLOURS, COUNTRIES

    things = [t.split(" ", 1)[1] if t.split(" ", 1)[0] in ("a", "an", "the") else t for t, _ in COLOURS]
    names = {n.removeprefix("the ") for row in COUNTRIES for n in row} | set(COLOUR_NAMES) | set(things)
    return sorted(normalize(n) for n in names)


KNOWLEDGE_NAMES = _knowledge_names()


def stated_names(text: str) -> set[str]:
    """The countries, capitals, continents, colours and coloured things of SpokenQA's knowledge questions that a
    sentence names (whole words)."""
    padded = f" {normalize(text)} "
    return {n for n in KNOWLEDGE_NAMES if f" {n} " in padded}


def stated_entities(category: str, text: str) -> set[str]:
    """What an answer of this category could get wrong by naming it: numbers and dates (reasoning), places,
    colours and things (knowledge); nothing for the other categories."""
    return stated_values(text) if category == "reasoning" else stated_names(text) if category == "knowledge" else set()


def judge_answer(item: dict, transcript: str, text_channel: str) -> dict:
    """Content judgement shared by every category."""
    accepted = item.get("answer") or []
    correct = contains_answer(transcript, accepted) if accepted else None
    prop = item.get("query_property")
    if correct and prop:  # voice understanding: naming both options is not an answer
        correct = not contains_answer(transcript, OPPOSITE_WORDS.get(prop["value"], []))
    category = item.get("category", "")
    if correct and category in ("reasoning", "knowledge"):
        # nor is an accident: "Forty five plus twenty is sixty eight." holds "twenty" but does not answer "four times
        # five", "Greece is in Europe." does not answer "Which continent is Portugal on?": every number, date, place,
        # colour or thing said must be the answer's or the question's
        said = lambda text: stated_entities(category, text)  # noqa: E731
        correct = said(transcript) <= said(item.get("text", "")).union(*(said(a) for a in accepted))
    return {
        "transcript": transcript,
        "text": text_channel,
        "answer_correct": correct,
        "text_audio_wer": round(wer(text_channel, transcript), 4) if normalize(text_channel) else None,
    }
