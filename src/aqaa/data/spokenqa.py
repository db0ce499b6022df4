"""SpokenQA at the text level: question types, their phrasings and the answers (SPEC, section SpokenQA).

Each question type has at least seven phrasings; the last `HELD_OUT` of them are used only by the test split,
so a model is scored on wordings it never trained on. Rendering to audio lives in `synth.py`.
"""

from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass, field
from typing import Callable

from aqaa.data.lexicon import CITIES, COLOUR_NAMES, COLOURS, COUNTRIES, DAYS, MONTHS, NAMES, PETS, PHRASES
from aqaa.eval.text import number_words as words

HELD_OUT = 2  # phrasings per question type reserved for the test split
CATEGORIES = ["knowledge", "reasoning", "speech_control", "voice_understanding", "multi_turn"]


@dataclass
class Turn:
    """One user turn and the assistant's answer to it."""

    query: str
    answer: str
    accepted: list[str]
    control: dict | None = None  # the answer must be said this way: {"axis": rate|volume|pitch, "direction": ...}
    query_property: dict | None = None  # the query is said this way (voice understanding): {"axis", "value"}
    plain: str | None = None  # a control turn's request without its control words, answered in the neutral voice


@dataclass
class Dialogue:
    category: str
    qtype: str
    phrasing: int
    turns: list[Turn] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QuestionType:
    name: str
    category: str
    phrasings: list[str]
    make: Callable[[random.Random, str], tuple[dict, Turn]]  # (rng, template) -> (slots, turn)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _bare(name: str) -> str:
    return name.removeprefix("the ")


# ---------------------------------------------------------------- knowledge
def _capital(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    country, capital, _ = rng.choice(COUNTRIES)
    q = tpl.format(country=country)
    return {"country": country}, Turn(q, f"The capital of {country} is {capital}.", [capital])


def _capital_country(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    country, capital, _ = rng.choice(COUNTRIES)
    q = tpl.format(capital=capital)
    return {"capital": capital}, Turn(q, f"{capital} is the capital of {country}.", [_bare(country)])


def _continent(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    country, _, continent = rng.choice(COUNTRIES)
    q = tpl.format(country=country)
    return {"country": country}, Turn(q, f"{_cap(country)} is in {continent}.", [continent])


def _colour(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    thing, colour = rng.choice(COLOURS)
    q = tpl.format(thing=thing)
    return {"thing": thing}, Turn(q, f"{_cap(thing)} is {colour}.", [colour])


# ---------------------------------------------------------------- reasoning
def _add(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    a = rng.randint(0, 50)
    b = rng.randint(0, 100 - a)
    q = tpl.format(a=words(a), b=words(b))
    return {"a": a, "b": b}, Turn(q, f"{_cap(words(a))} plus {words(b)} is {words(a + b)}.", [words(a + b)])


def _subtract(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    a = rng.randint(1, 100)
    b = rng.randint(0, a)
    q = tpl.format(a=words(a), b=words(b))
    return {"a": a, "b": b}, Turn(q, f"{_cap(words(a))} minus {words(b)} is {words(a - b)}.", [words(a - b)])


def _multiply(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    a, b = rng.randint(0, 10), rng.randint(0, 10)
    q = tpl.format(a=words(a), b=words(b))
    return {"a": a, "b": b}, Turn(q, f"{_cap(words(a))} times {words(b)} is {words(a * b)}.", [words(a * b)])


def _compare(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    a, b = rng.sample(range(0, 101), 2)
    big = max(a, b)
    q = tpl.format(a=words(a), b=words(b))
    return {"a": a, "b": b}, Turn(q, f"{_cap(words(big))} is bigger.", [words(big)])


def _smaller(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
    a, b = rng.sample(range(0, 101), 2)
    small = min(a, b)
    q = tpl.format(a=words(a), b=words(b))
    return {"a": a, "b": b}, Turn(q, f"{_cap(words(small))} is smaller.", [words(small)])


def _next_in(seq: list[str], step: int, unit: str) -> Callable[[random.Random, str], tuple[dict, Turn]]:
    def make(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
        i = rng.randrange(len(seq))
        ans = seq[(i + step) % len(seq)]
        rel = "after" if step > 0 else "before"
        q = tpl.format(x=seq[i])
        return {unit: seq[i]}, Turn(q, f"{ans} comes {rel} {seq[i]}.", [ans])

    return make


# ---------------------------------------------------------------- speech control
CONTROL_WORDS = {
    ("rate", "slow"): ["slowly", "very slowly", "at a slow pace", "slowly, please", "nice and slow", "in a slow voice", "really slowly"],
    ("rate", "fast"): ["quickly", "very fast", "at a fast pace", "fast, please", "really quickly", "in a fast voice", "rapidly"],
    ("volume", "loud"): ["loudly", "very loudly", "in a loud voice", "loudly, please", "really loud", "at a high volume", "with a loud voice"],
    ("volume", "soft"): ["softly", "very quietly", "in a quiet voice", "softly, please", "really softly", "at a low volume", "in a whisper-soft voice"],
    ("pitch", "high"): ["in a high voice", "with a high pitch", "in a high-pitched voice", "in a high tone", "using a high voice", "with a high, bright voice", "at a higher pitch"],
    ("pitch", "low"): ["in a low voice", "with a low pitch", "in a deep voice", "in a low tone", "using a low voice", "with a deep, low voice", "at a lower pitch"],
}
_CONTROL_TEMPLATES = [
    "Say {phrase} {how}.",
    "Please say {phrase} {how}.",
    "Can you say {phrase} {how}?",
    "Could you say the words {phrase} {how}?",
    "I would like you to say {phrase} {how}.",
    "Repeat after me, {how}: {phrase}.",
    "Would you please say {phrase} {how}?",
]
# The same requests without the control words. Why: without them the model never learns that the words, not the
# phrase, choose the style (it said "Say open the window." as loudly as "... loudly"; reports/speech_control.md).
_PLAIN_TEMPLATES = [t.replace(", {how}:", ":").replace(" {how}", "") for t in _CONTROL_TEMPLATES]


def _control(axis: str, direction: str) -> Callable[[random.Random, str], tuple[dict, Turn]]:
    def make(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
        phrase = rng.choice(PHRASES)
        idx = _CONTROL_TEMPLATES.index(tpl)
        how = CONTROL_WORDS[(axis, direction)][idx]
        q = tpl.format(phrase=phrase, how=how)
        answer = _cap(phrase) + "."
        plain = _PLAIN_TEMPLATES[idx].format(phrase=phrase)
        return {"phrase": phrase}, Turn(q, answer, [phrase], control={"axis": axis, "direction": direction},
                                        plain=plain)

    return make


# ---------------------------------------------------------------- voice understanding
_VU = {
    "rate": (("fast", "slow"), [
        "Am I speaking fast or slow?", "Am I talking quickly or slowly?", "Is my speech fast or slow?",
        "Tell me, am I speaking quickly or slowly?", "How fast am I talking, fast or slow?",
        "Would you say I am talking fast or slow?", "Is my speaking rate fast or slow?",
    ], {"fast": "You are speaking fast.", "slow": "You are speaking slowly."}, {"fast": ["fast", "quickly"], "slow": ["slow", "slowly"]}),
    "pitch": (("high", "low"), [
        "Is my voice high or low?", "Do I have a high voice or a low voice?", "Is the pitch of my voice high or low?",
        "Tell me, is my voice high or low?", "Would you call my voice high or low?",
        "Does my voice sound high or low to you?", "Am I speaking with a high or a low voice?",
    ], {"high": "Your voice is high.", "low": "Your voice is low."}, {"high": ["high"], "low": ["low"]}),
    "volume": (("loud", "quiet"), [
        "Am I loud or quiet?", "Am I speaking loudly or quietly?", "Is my voice loud or quiet?",
        "Tell me, am I loud or quiet right now?", "How loud am I, loud or quiet?",
        "Would you say I am speaking loudly or quietly?", "Is my speech loud or quiet?",
    ], {"loud": "You are speaking loudly.", "quiet": "You are speaking quietly."}, {"loud": ["loud", "loudly"], "quiet": ["quiet", "quietly"]}),
}


def _voice_understanding(axis: str) -> Callable[[random.Random, str], tuple[dict, Turn]]:
    values, _, answers, accepted = _VU[axis]

    def make(rng: random.Random, tpl: str) -> tuple[dict, Turn]:
        value = rng.choice(values)
        turn = Turn(tpl, answers[value], accepted[value], query_property={"axis": axis, "value": value})
        return {"value": value}, turn

    return make


# ---------------------------------------------------------------- multi-turn
_FACTS = {
    "name": (NAMES, ["My name is {x}.", "Hi, I am {x}.", "Hello, my name is {x}.", "You can call me {x}.",
                     "I'm {x}, nice to meet you.", "Let me introduce myself, I am {x}.", "People call me {x}."],
             "Nice to meet you, {x}.",
             ["What is my name?", "Do you remember my name?", "What did I say my name was?", "Who am I?",
              "Can you tell me my name?", "What's my name again?", "Remind me, what is my name?"],
             "Your name is {x}."),
    "colour": (COLOUR_NAMES, ["My favorite color is {x}.", "I really like the color {x}.", "The color I love most is {x}.",
                              "{X} is my favorite color.", "I like {x} more than any other color.",
                              "My best-loved color is {x}.", "Of all colors, I prefer {x}."],
               "{X} is a lovely color.",
               ["What is my favorite color?", "Which color do I like best?", "Do you remember my favorite color?",
                "What color did I say I like?", "Can you tell me my favorite color?", "What's my favorite color again?",
                "Remind me, which color do I love?"],
               "Your favorite color is {x}."),
    "city": (CITIES, ["I live in {x}.", "My home is in {x}.", "I am from {x}.", "I grew up in {x}.", "My city is {x}.",
                      "These days I live in {x}.", "Home for me is {x}."],
             "{X} sounds like a nice place.",
             ["Where do I live?", "Which city do I live in?", "Do you remember where I live?", "What is my city?",
              "Can you tell me where my home is?", "Where is my home again?", "Remind me, which city am I from?"],
             "You live in {x}."),
    "pet": (PETS, ["I have a {x}.", "My pet is a {x}.", "At home I keep a {x}.", "I own a {x}.",
                   "My favorite animal is my {x}.", "I live with my pet {x}.", "There is a {x} in my house."],
            "A {x} is a great pet.",
            ["What pet do I have?", "Which animal do I keep?", "Do you remember my pet?", "What is my pet?",
             "Can you tell me what my pet is?", "What kind of pet do I own?", "Remind me, which animal lives with me?"],
            "You have a {x}."),
}


def _multi_turn(kind: str) -> Callable[[random.Random, str], tuple[dict, list[Turn]]]:
    values, statements, reply, questions, recall = _FACTS[kind]

    def make(rng: random.Random, tpl: str) -> tuple[dict, list[Turn]]:
        idx = questions.index(tpl)
        x = rng.choice(values)
        fmt = {"x": x, "X": _cap(x)}
        turns = [Turn(statements[idx].format(**fmt), reply.format(**fmt), [x])]
        if rng.random() < 0.35:  # a distractor turn in between makes recall more than "look one turn back"
            qt = rng.choice([t for t in QUESTION_TYPES.values() if t.category in ("knowledge", "reasoning")])
            turns.append(qt.make(rng, rng.choice(qt.phrasings[:-HELD_OUT] if idx < len(questions) - HELD_OUT
                                                  else qt.phrasings[-HELD_OUT:]))[1])
        turns.append(Turn(tpl, recall.format(**fmt), [x]))
        return {kind: x}, turns

    return make


def _qt(name: str, category: str, phrasings: list[str], make) -> QuestionType:
    assert len(phrasings) >= 5 + HELD_OUT, name
    return QuestionType(name, category, phrasings, make)


QUESTION_TYPES: dict[str, QuestionType] = {
    t.name: t
    for t in [
        _qt("capital", "knowledge", [
            "What is the capital of {country}?", "What's the capital city of {country}?",
            "Which city is the capital of {country}?", "Tell me the capital of {country}.",
            "Do you know the capital of {country}?", "Name the capital city of {country}.",
            "Can you tell me what the capital of {country} is?"], _capital),
        _qt("capital_country", "knowledge", [
            "{capital} is the capital of which country?", "Which country has {capital} as its capital?",
            "Of which country is {capital} the capital?", "Tell me which country's capital is {capital}.",
            "What country is {capital} the capital of?", "Do you know which country {capital} is the capital of?",
            "Name the country whose capital is {capital}."], _capital_country),
        _qt("continent", "knowledge", [
            "On which continent is {country}?", "What continent is {country} in?", "Which continent is {country} part of?",
            "Tell me the continent of {country}.", "Where is {country}, on which continent?",
            "Do you know what continent {country} is on?", "Name the continent where {country} lies."], _continent),
        _qt("colour", "knowledge", [
            "What color is {thing}?", "What is the color of {thing}?", "Which color is {thing}?",
            "Tell me the color of {thing}.", "What color do you see when you look at {thing}?",
            "Do you know what color {thing} is?", "Name the color of {thing}."], _colour),
        _qt("add", "reasoning", [
            "What is {a} plus {b}?", "What's {a} plus {b}?", "How much is {a} plus {b}?", "Add {a} and {b}.",
            "What do you get when you add {a} and {b}?", "Can you add {a} and {b} for me?",
            "What is the sum of {a} and {b}?"], _add),
        _qt("subtract", "reasoning", [
            "What is {a} minus {b}?", "What's {a} minus {b}?", "How much is {a} minus {b}?",
            "Subtract {b} from {a}.", "What do you get when you take {b} away from {a}?",
            "Can you subtract {b} from {a} for me?", "What is {a} take away {b}?"], _subtract),
        _qt("multiply", "reasoning", [
            "What is {a} times {b}?", "What's {a} times {b}?", "How much is {a} times {b}?",
            "Multiply {a} by {b}.", "What do you get when you multiply {a} by {b}?",
            "Can you multiply {a} and {b} for me?", "What is the product of {a} and {b}?"], _multiply),
        _qt("bigger", "reasoning", [
            "Which is bigger, {a} or {b}?", "Which number is larger, {a} or {b}?", "Is {a} or {b} bigger?",
            "Tell me which is bigger, {a} or {b}.", "Which one is greater, {a} or {b}?",
            "Out of {a} and {b}, which is bigger?", "Which is the larger number, {a} or {b}?"], _compare),
        _qt("smaller", "reasoning", [
            "Which is smaller, {a} or {b}?", "Which number is less, {a} or {b}?", "Is {a} or {b} smaller?",
            "Tell me which is smaller, {a} or {b}.", "Which one is lower, {a} or {b}?",
            "Out of {a} and {b}, which is smaller?", "Which is the smaller number, {a} or {b}?"], _smaller),
        _qt("next_day", "reasoning", [
            "What day comes after {x}?", "Which day follows {x}?", "What is the day after {x}?",
            "If today is {x}, what day is tomorrow?", "Tell me the day that comes after {x}.",
            "What's the next day after {x}?", "Which day of the week comes after {x}?"], _next_in(DAYS, 1, "day")),
        _qt("previous_day", "reasoning", [
            "What day comes before {x}?", "Which day is before {x}?", "What is the day before {x}?",
            "If today is {x}, what day was yesterday?", "Tell me the day that comes before {x}.",
            "What's the day just before {x}?", "Which day of the week comes before {x}?"], _next_in(DAYS, -1, "day")),
        _qt("next_month", "reasoning", [
            "What month comes after {x}?", "Which month follows {x}?", "What is the month after {x}?",
            "Tell me the month that comes after {x}.", "What's the next month after {x}?",
            "Which month of the year comes after {x}?", "If it is {x} now, what month is next?"], _next_in(MONTHS, 1, "month")),
        _qt("previous_month", "reasoning", [
            "What month comes before {x}?", "Which month is before {x}?", "What is the month before {x}?",
            "Tell me the month that comes before {x}.", "What's the month just before {x}?",
            "Which month of the year comes before {x}?", "If it is {x} now, what month was last?"], _next_in(MONTHS, -1, "month")),
        *[_qt(f"say_{d}", "speech_control", _CONTROL_TEMPLATES, _control(a, d)) for (a, d) in CONTROL_WORDS],
        *[_qt(f"my_{axis}", "voice_understanding", _VU[axis][1], _voice_understanding(axis)) for axis in _VU],
        *[_qt(f"remember_{k}", "multi_turn", _FACTS[k][3], _multi_turn(k)) for k in _FACTS],
    ]
}


def phrasing_range(split: str, n_phrasings: int) -> range:
    """Train and valid use the first phrasings; test only the held-out last ones."""
    return range(n_phrasings - HELD_OUT, n_phrasings) if split == "test" else range(n_phrasings - HELD_OUT)


def make_dialogue(rng: random.Random, split: str, category: str | None = None) -> Dialogue:
    """Draw one dialogue (category uniform, then question type uniform within it)."""
    category = category or rng.choice(CATEGORIES)
    qtype = rng.choice([t for t in QUESTION_TYPES.values() if t.category == category])
    phrasing = rng.choice(phrasing_range(split, len(qtype.phrasings)))
    _, made = qtype.make(rng, qtype.phrasings[phrasing])
    turns = made if isinstance(made, list) else [made]
    return Dialogue(category, qtype.name, phrasing, turns)


@functools.lru_cache(maxsize=4)
def typed_pairs(categories: tuple[str, ...] = ("knowledge", "reasoning"), draws: int = 3000, seed: int = 0
                ) -> tuple[tuple[str, str, str | None], ...]:
    """Distinct (question, answer, control direction or None) of the question types of `categories` in their train
    phrasings, `draws` random draws per type (a fixed order): the typed questions training pairs with spoken answers
    it already has. Cached: every build of the training parts asks for the same ~2 s of draws."""
    rng = random.Random(seed)
    pairs: dict[tuple[str, str, str | None], None] = {}
    for qtype in QUESTION_TYPES.values():
        if qtype.category in categories:
            for _ in range(draws):
                _, turn = qtype.make(rng, rng.choice(qtype.phrasings[:-HELD_OUT]))
                pairs[(turn.query, turn.answer, turn.control["direction"] if turn.control else None)] = None
    return tuple(pairs)
