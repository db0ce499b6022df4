"""Plain sentences for pre-training stage 1 (text-only, and spoken as ASR/TTS pairs).

Breadth matters more than size here (SPEC, feasibility notes): a small grammar over a few hundred words gives
many thousands of distinct, phonetically varied sentences, and every SpokenQA fact is also stated in prose so
that the text channel can learn it before any audio is involved.
"""

from __future__ import annotations

import random

from aqaa.data.lexicon import COLOUR_NAMES, COLOURS, COUNTRIES, DAYS, MONTHS, NAMES, PETS
from aqaa.eval.text import number_words

_ADJ = ("small big old young quiet busy happy tired bright dark warm cold gentle clever brave careful famous "
        "friendly heavy light strange simple lovely narrow wide early late empty full green red blue yellow").split()
_NOUN = ("dog cat bird horse teacher doctor farmer child student driver baker singer painter pilot neighbor "
         "friend sister brother mother father river garden kitchen window bridge village forest mountain market "
         "station library museum letter basket bottle candle picture blanket ladder pencil bicycle engine boat "
         "island valley castle office school hospital bakery orchard meadow harbor theater").split()
_PLACE = ("the garden,the kitchen,the station,the market,the library,the museum,the river,the forest,the village,"
          "the harbor,the office,the school,the park,the beach,the city,the farm,the bakery,the hospital").split(",")
_VERB_T = ("saw found carried painted opened cleaned visited watched followed pushed lifted fixed bought sold "
           "borrowed dropped packed noticed remembered described").split()
_VERB_I = ("laughed smiled waited slept worked danced sang walked rested listened arrived left stayed "
           "whispered shouted").split()
_ADV = "slowly quickly quietly happily carefully early late softly again together".split()
_TIME = ["in the morning", "at night", "after lunch", "before dinner", "on the weekend", "every day", "last week",
         "yesterday", "today", "this evening"] + [f"on {d}" for d in DAYS] + [f"in {m}" for m in MONTHS]


def _np(rng: random.Random) -> str:
    det = rng.choice(["the", "a", "my", "our", "that", "this", "every"])
    adj = rng.choice(_ADJ) + " " if rng.random() < 0.6 else ""
    phrase = f"{det} {adj}{rng.choice(_NOUN)}"
    return phrase.replace("a a", "an a").replace("a o", "an o").replace("a e", "an e").replace("a i", "an i")


def grammar_sentence(rng: random.Random) -> str:
    kind = rng.random()
    who = rng.choice(NAMES) if rng.random() < 0.4 else _np(rng)
    if kind < 0.35:
        s = f"{who} {rng.choice(_VERB_T)} {_np(rng)} {rng.choice(_TIME)}"
    elif kind < 0.6:
        s = f"{who} {rng.choice(_VERB_I)} {rng.choice(_ADV)} near {rng.choice(_PLACE)}"
    elif kind < 0.75:
        n = rng.randint(2, 99)
        s = f"there are {number_words(n)} {rng.choice(_NOUN)}s in {rng.choice(_PLACE)}"
    elif kind < 0.9:
        s = f"{who} went to {rng.choice(_PLACE)} {rng.choice(_TIME)} and {rng.choice(_VERB_I)}"
    else:
        s = f"{_np(rng)} is {rng.choice(_ADJ)} and {rng.choice(_ADJ)}"
    return s[0].upper() + s[1:] + "."


_CONTINENTS = sorted({c[2] for c in COUNTRIES})
_TRAVEL = "flew to|drove to|moved to|sailed to|walked to|took a train to|sent a letter to|called a friend in".split("|")
_ASK = ["Is it true that", "Did you know that", "I heard that", "Somebody told me that", "Do you think that",
        "Please remember that", "It seems that", "Can you believe that"]
_QUANT = ["the sum of the bill was {n} dollars", "the product of the farm was {n} baskets", "{n} is a larger number "
          "than {m}", "{n} is greater than {m}", "{m} is lower than {n}", "{n} take away {m} is what is left",
          "the answer was {n}, not {m}", "we need {n} more {noun}", "the team won by {n} points",
          "the bus number is {n}", "room {n} is next to room {m}"]


def plural(noun: str) -> str:
    if noun in ("goldfish", "fish", "sheep"):
        return noun
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "es" if noun.endswith(("s", "sh", "ch", "x")) else noun + "s"


def _when(rng: random.Random) -> str:
    return rng.choice([f"on {rng.choice(DAYS)}", f"in {rng.choice(MONTHS)}"])


def _place(rng: random.Random) -> str:
    country, capital, continent = rng.choice(COUNTRIES)
    return rng.choice([country, capital, capital, continent, f"{capital} in {country}"])


def hearing_sentence(rng: random.Random) -> str:
    """A sentence that puts SpokenQA's entities (countries, capitals, continents, numbers, days, months, colours,
    pets, names) into contexts the question templates and facts never use, so that stage-1 ASR hears each entity
    in many surroundings and voices instead of memorising it as part of one sentence."""
    who = rng.choice(NAMES) if rng.random() < 0.6 else _np(rng)
    n, m = rng.randint(0, 100), rng.randint(0, 100)
    kind = rng.randrange(10)
    if kind == 0:
        s = f"{who} {rng.choice(_TRAVEL)} {_place(rng)} {rng.choice(_TIME)}"
    elif kind == 1:
        s = f"{who} {rng.choice(_VERB_T)} {number_words(n)} {plural(rng.choice(_NOUN))} in {_place(rng)}"
    elif kind == 2:
        pet = f"{rng.choice(COLOUR_NAMES)} {rng.choice(PETS)}"
        s = f"{who} has a {pet} and {number_words(n)} {plural(rng.choice(_NOUN))}"
    elif kind == 3:
        ask = rng.choice(_ASK)
        s = f"{ask} {who} {rng.choice(_VERB_I)} in {_place(rng)} on {rng.choice(DAYS)}"
        if ask.startswith(("Is", "Did", "Do", "Can")):
            return s[0].upper() + s[1:] + "?"
    elif kind == 4:
        s = f"the {rng.choice(_NOUN)} from {_place(rng)} is {rng.choice(COLOUR_NAMES)} and {rng.choice(_ADJ)}"
    elif kind == 5:
        q = rng.choice(_QUANT).format(n=number_words(n), m=number_words(m), noun=plural(rng.choice(_NOUN)))
        s = f"{_when(rng)} {q}"
    elif kind == 6:
        a, b = rng.sample(COUNTRIES, 2)
        route = f"from {a[rng.randrange(2)]} to {b[rng.randrange(2)]}"
        s = f"{who} went {route} and {rng.choice(_VERB_I)} {rng.choice(_ADV)}"
    elif kind == 7:
        s = rng.choice(["where did {who} go on {day}", "how many {nouns} did {who} see in {place}",
                        "which {noun} does {who} like in {place}", "when will {who} fly to {place}",
                        "who told {who} about {place}", "what did {who} buy in {place} in {month}",
                        "can you tell me why {who} left {place}", "do you know if {who} lives in {place}",
                        "is {place} far from {place2}", "what is the weather like in {place} in {month}"]).format(
            who=who, day=rng.choice(DAYS), noun=rng.choice(_NOUN), nouns=plural(rng.choice(_NOUN)),
            place=_place(rng), place2=_place(rng), month=rng.choice(MONTHS))
        return s[0].upper() + s[1:] + "?"
    elif kind == 8:
        thing = f"{rng.choice(COLOURS)[0]} {rng.choice(COLOUR_NAMES)}"
        s = f"{who} paints {thing} every {rng.choice(DAYS)} in {rng.choice(MONTHS)}"
    else:
        crowd = f"{number_words(n)} {plural(rng.choice(_NOUN))} and {number_words(m)} {plural(rng.choice(PETS))}"
        s = f"{crowd} live near {_place(rng)}"
    return s[0].upper() + s[1:] + "."


def word_list_vocabulary() -> list[str]:
    """The domain's words and entities for `word_list`: lexicon entities, numbers 0-100, and the words of the
    *training* question phrasings (held-out test phrasings contribute nothing)."""
    import re

    from aqaa.data.spokenqa import QUESTION_TYPES, phrasing_range

    words = {w.lower() for t in QUESTION_TYPES.values() for i in phrasing_range("train", len(t.phrasings))
             for w in re.findall(r"[A-Za-z']+", t.phrasings[i].format_map(_Blank()))}
    entities = [x for c in COUNTRIES for x in c] + DAYS + MONTHS + NAMES + COLOUR_NAMES + PETS
    words = {"I" if w == "i" else w for w in words}
    return sorted(words) + sorted(set(entities)) + [number_words(n) for n in range(101)]


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def word_list(rng: random.Random, vocabulary: list[str]) -> str:
    """Four to eight domain words in no order: ASR pairs whose words the context cannot predict, so only the audio
    tells them (the hearing corpus' sentences leave the LM's prior too much to guess)."""
    s = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(4, 8)))
    return s[0].upper() + s[1:] + "."


def fact_sentences() -> list[str]:
    """Every fact SpokenQA asks about, stated in prose."""
    out: list[str] = []
    for country, capital, continent in COUNTRIES:
        c = country[0].upper() + country[1:]
        out += [f"The capital of {country} is {capital}.", f"{capital} is the capital of {country}.",
                f"{c} is in {continent}."]
    for thing, colour in COLOURS:
        out.append(f"{thing[0].upper() + thing[1:]} is {colour}.")
    for i, d in enumerate(DAYS):
        out += [f"{DAYS[(i + 1) % 7]} comes after {d}.", f"{DAYS[i - 1]} comes before {d}."]
    for i, m in enumerate(MONTHS):
        out += [f"{MONTHS[(i + 1) % 12]} comes after {m}.", f"{MONTHS[i - 1]} comes before {m}."]
    for pet in PETS:
        out.append(f"A {pet} can be a good pet.")
    return out


def arithmetic_sentence(rng: random.Random) -> str:
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    op = rng.choice(["plus", "minus", "times", "bigger", "smaller"])
    w = number_words
    if op == "plus":
        return f"{w(a).capitalize()} plus {w(b)} is {w(a + b)}."
    if op == "minus":
        a, b = max(a, b), min(a, b)
        return f"{w(a).capitalize()} minus {w(b)} is {w(a - b)}."
    if op == "times":
        a, b = a % 11, b % 11
        return f"{w(a).capitalize()} times {w(b)} is {w(a * b)}."
    if a == b:
        b += 1
    pick = max(a, b) if op == "bigger" else min(a, b)
    return f"Between {w(a)} and {w(b)}, {w(pick)} is {op}."


def text_corpus(rng: random.Random, n: int) -> list[str]:
    """`n` lines of plain text: facts (all of them, repeated), arithmetic and grammar sentences."""
    facts = fact_sentences()
    rng.shuffle(facts)
    lines = [facts[i % len(facts)] for i in range(min(n, 3 * len(facts)))]
    while len(lines) < n:
        lines.append(arithmetic_sentence(rng) if rng.random() < 0.3 else grammar_sentence(rng))
    rng.shuffle(lines)
    return lines
