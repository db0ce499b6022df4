"""Control metrics are measured as asked: a slowed / louder / higher rendering is measured as such."""

from __future__ import annotations

import pytest

from aqaa.audio.measure import measure, semitones
from aqaa.data.voices import Style, synthesize

TEXT = "Good morning, have a nice day."


def _m(style: Style):
    samples, rate = synthesize("joe", TEXT, style)
    return measure(samples, rate, TEXT)


def test_neutral_measure_is_plausible():
    m = _m(Style())
    assert 1.0 < m.speech_s < 4.0
    assert abs(m.rms_db - (-26.0)) < 0.5  # set_level targets -26 dBFS of speech
    assert 60 < m.f0_hz < 200  # an adult male voice


def test_slow_fast_loud_soft_high_low_are_measured_as_such():
    neutral = _m(Style())
    assert _m(Style(rate=0.7)).speech_s / neutral.speech_s > 1.25
    assert neutral.speech_s / _m(Style(rate=1.4)).speech_s > 1.2
    assert _m(Style(level_db=-16)).rms_db - neutral.rms_db > 8
    assert neutral.rms_db - _m(Style(level_db=-36)).rms_db > 8
    assert semitones(_m(Style(pitch=4)).f0_hz, neutral.f0_hz) > 3
    assert semitones(neutral.f0_hz, _m(Style(pitch=-4)).f0_hz) > 3


def test_text_normalization_treats_digits_and_words_alike():
    from aqaa.eval.text import contains_answer, normalize, wer

    assert normalize("Seven plus 5 is Twelve!") == "seven plus five is twelve"
    assert wer("What is seventy-two minus 3?", "what is 72 minus three") == 0.0
    assert contains_answer("The answer is 12.", ["twelve"])
    assert not contains_answer("The answer is 120.", ["twelve"])


def test_an_answer_must_not_name_foreign_numbers_or_places():
    """The answer said by accident inside a wrong sentence is not an answer; the question's own words may be said."""
    from aqaa.eval.judge import judge_answer

    item = {"category": "reasoning", "text": "What is the product of four and five?", "answer": ["twenty"]}
    ok = lambda said: judge_answer(item, said, said)["answer_correct"]  # noqa: E731
    assert ok("Four times five is twenty.") and ok("The product of 4 and 5 is 20.") and ok("Twenty.")
    assert not ok("Forty five plus twenty is sixty eight.") and not ok("Twenty nine is bigger.")
    day = {"category": "reasoning", "text": "What day comes after Wednesday?", "answer": ["Thursday"]}
    assert judge_answer(day, "Thursday comes after Wednesday.", "")["answer_correct"]
    assert not judge_answer(day, "Thursday comes before Friday.", "")["answer_correct"]
    knowledge = {"category": "knowledge", "text": "What is the capital of Japan?", "answer": ["Tokyo"]}
    assert judge_answer(knowledge, "Tokyo has thirty million people.", "")["answer_correct"]  # numbers: reasoning only
    assert not judge_answer(knowledge, "Tokyo is the capital of China.", "")["answer_correct"]
    continent = {"category": "knowledge", "text": "Do you know what continent Portugal is on?", "answer": ["Europe"]}
    assert judge_answer(continent, "Portugal is in Europe.", "")["answer_correct"]
    assert not judge_answer(continent, "Greece is in Europe.", "")["answer_correct"]
    colour = {"category": "knowledge", "text": "Do you know what color a strawberry is?", "answer": ["red"]}
    assert judge_answer(colour, "A strawberry is red.", "")["answer_correct"]
    assert not judge_answer(colour, "A ripe cherry is red.", "")["answer_correct"]


def test_paired_f0_tells_a_voicing_loss_from_a_pitch_shift():
    """A rendering that loses its low-pitched half keeps every frame's pitch (paired shift ~0) but only part of the
    voiced frames, while its median F0 jumps: what `paired_f0` is there to show."""
    import numpy as np

    from aqaa.audio.measure import median_f0, paired_f0

    low, _ = synthesize("joe", TEXT, Style(pitch=-6))
    high, _ = synthesize("joe", TEXT, Style(pitch=4))
    n = min(len(low), len(high))
    both = np.concatenate([high[:n], low[:n]])
    lost = np.concatenate([high[:n], np.zeros(n, np.float32)])
    shift, kept = paired_f0(both, lost, 16_000)
    assert abs(shift) < 0.2 and 0.3 < kept < 0.7
    assert semitones(median_f0(lost, 16_000), median_f0(both, 16_000)) > 2


def test_median_f0_swing_is_small_in_one_register_and_large_between_two():
    """Twenty frames at 100 Hz and twenty at 150: the median sits in the gap and a few frames of voicing move it by
    the gap (7 st); one register with a little jitter barely moves."""
    import numpy as np

    from aqaa.audio.measure import median_f0_swing

    two = np.array([0.0] * 5 + [100.0] * 20 + [150.0] * 21 + [0.0] * 5)
    assert median_f0_swing(two, frames=4) > 6
    one = np.linspace(118, 122, 41)
    assert median_f0_swing(np.concatenate([[0.0], one]), frames=4) < 0.1
    assert median_f0_swing(np.concatenate([[0.0], one]), frames=40) == pytest.approx(semitones(120, 118), abs=1e-6)
    assert np.isnan(median_f0_swing(np.zeros(10)))
