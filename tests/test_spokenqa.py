"""SpokenQA at the text level: enough phrasings and entities, held-out phrasings, consistent answers."""

from __future__ import annotations

import random

from aqaa.data.lexicon import COUNTRIES, NAMES, PHRASES
from aqaa.data.spokenqa import CATEGORIES, HELD_OUT, QUESTION_TYPES, make_dialogue, phrasing_range
from aqaa.eval.text import contains_answer


def test_every_category_has_question_types_with_enough_phrasings():
    for category in CATEGORIES:
        types = [t for t in QUESTION_TYPES.values() if t.category == category]
        assert types, category
        for t in types:
            assert len(t.phrasings) - HELD_OUT >= 5, t.name
            assert len(set(t.phrasings)) == len(t.phrasings)


def test_entities_are_many():
    assert len(COUNTRIES) >= 50 and len({c[1] for c in COUNTRIES}) == len(COUNTRIES)
    assert len(NAMES) >= 30 and len(PHRASES) >= 30


def test_test_split_uses_only_held_out_phrasings():
    rng = random.Random(0)
    for _ in range(300):
        d = make_dialogue(rng, "test")
        n = len(QUESTION_TYPES[d.qtype].phrasings)
        assert d.phrasing in phrasing_range("test", n) and d.phrasing >= n - HELD_OUT
        d = make_dialogue(rng, "train")
        assert d.phrasing < len(QUESTION_TYPES[d.qtype].phrasings) - HELD_OUT


def test_answers_contain_their_accepted_strings_and_controls_are_set():
    rng = random.Random(1)
    seen = set()
    for _ in range(500):
        d = make_dialogue(rng, "train")
        seen.add(d.category)
        for turn in d.turns:
            assert contains_answer(turn.answer, turn.accepted), (turn.answer, turn.accepted)
        last = d.turns[-1]
        assert (last.control is not None) == (d.category == "speech_control")
        assert (last.query_property is not None) == (d.category == "voice_understanding")
        if d.category == "multi_turn":
            assert len(d.turns) >= 2 and contains_answer(d.turns[0].query, last.accepted)
    assert seen == set(CATEGORIES)


def test_reasoning_answers_are_right():
    rng = random.Random(2)
    for _ in range(200):
        _, turn = QUESTION_TYPES["add"].make(rng, "What is {a} plus {b}?")
        words = turn.query.removeprefix("What is ").removesuffix("?").split(" plus ")
        assert turn.answer.lower().startswith(words[0].lower())


def test_dialogues_are_deterministic_for_a_seed():
    a = [make_dialogue(random.Random(f"7-{i}"), "train").to_dict() for i in range(50)]
    b = [make_dialogue(random.Random(f"7-{i}"), "train").to_dict() for i in range(50)]
    assert a == b
