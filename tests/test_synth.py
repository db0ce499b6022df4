"""`aqaa data synth` on a tiny size: manifests per SPEC, held-out voices, resume, determinism."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from aqaa.data.synth import TEST_VOICES, TRAIN_VOICES, _query_render, plan_items, render_item, synth
from aqaa.data.voices import VOICES

N = 12


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("spokenqa")
    return out, synth(out, N, seed=3, sentences=4, text_lines=30, workers=2, progress=False)


def _records(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_manifests_follow_spec(tiny):
    out, summary = tiny
    assert summary["train"] + summary["valid"] + summary["test"] == N and summary["test"] >= 1
    for split in ("train", "valid", "test"):
        for rec in _records(out, split):
            assert {"id", "category", "audio", "answer", "control", "context"} <= rec.keys()
            assert (out / rec["audio"]).is_file() and (out / rec["answer_audio"]).is_file()
            assert isinstance(rec["answer"], list) and rec["split"] == split
            for turn in rec["turns"]:
                m = turn["answer"]["measure"]
                assert m["speech_s"] > 0 and m["rms_db"] < 0 and m["f0_hz"] > 50
            for ctx in rec["context"]:
                assert (out / ctx["audio"]).is_file() and ctx["answer_text"]
    sentences = [json.loads(x) for x in (out / "pretrain" / "sentences.jsonl").read_text().splitlines()]
    assert len(sentences) == 4 and all((out / s["audio"]).is_file() and s["text"] for s in sentences)
    assert len((out / "pretrain" / "text.txt").read_text().splitlines()) == 30


def test_test_split_speaks_only_held_out_voices(tiny):
    out, _ = tiny
    assert not set(TRAIN_VOICES) & set(TEST_VOICES)
    for split, pool in (("train", TRAIN_VOICES), ("test", TEST_VOICES)):
        for rec in _records(out, split):
            assert {t["query"]["voice"] for t in rec["turns"]} <= set(pool)
            assert all(t["answer"]["voice"] == "joe" for t in rec["turns"])


def test_rerun_resumes_and_is_deterministic(tiny):
    out, _ = tiny
    victim = out / "items" / "sqa-000004.json"
    before = (out / "audio" / "sqa-000004" / "q0.wav").read_bytes()
    victim.unlink()
    summary = synth(out, N, seed=3, sentences=4, text_lines=30, workers=1, progress=False)
    assert summary["rendered_now"] == 1 and victim.exists()
    assert (out / "audio" / "sqa-000004" / "q0.wav").read_bytes() == before  # same seed, same audio


def test_voice_understanding_pitch_picks_high_and_low_voices():
    rng = random.Random(0)
    for split in ("train", "test"):
        for value in ("high", "low"):
            for _ in range(20):
                r = _query_render(rng, split, {"axis": "pitch", "value": value})
                assert (VOICES[r.voice].base_f0 >= 170) == (value == "high")
                assert (r.style.pitch > 0) == (value == "high")


def test_control_items_render_neutral_and_opposite(tmp_path):
    plan = next(p for p in plan_items(60, seed=1) if p.dialogue.category == "speech_control")
    rec = render_item(plan, tmp_path)
    turn = rec["turns"][-1]
    for key in ("answer", "neutral", "opposite", "plain_query"):
        assert (tmp_path / turn[key]["audio"]).is_file()
    assert rec["control"] == turn["control"] and rec["control"]["axis"] in ("rate", "volume", "pitch")
    plain, query = turn["plain_query"], turn["query"]
    assert plain["voice"] == query["voice"] and plain["style"] == query["style"]  # only the words differ
    assert plain["text"].lower().startswith(("say", "please", "can", "could", "i would", "repeat", "would"))
    assert len(plain["text"]) < len(query["text"]) and rec["answer"][0] in plain["text"]


def test_rerun_adds_plain_requests_to_version1_items(tmp_path):
    """A folder made before plain requests existed gets them on a re-run; nothing else is rendered again."""
    from aqaa.data.synth import SYNTH_VERSION

    n = 2  # seed 5: both are speech-control items
    plans = plan_items(n, seed=5)
    control = next(p for p in plans if p.dialogue.category == "speech_control")
    synth(tmp_path, n, seed=5, sentences=0, text_lines=5, workers=1, progress=False)
    item = tmp_path / "items" / f"{control.id}.json"
    old = json.loads(item.read_text())
    for turn in old["turns"]:
        turn.pop("plain_query", None)
    item.write_text(json.dumps(old))
    answer = (tmp_path / old["turns"][0]["answer"]["audio"]).read_bytes()
    summary = synth(tmp_path, n, seed=5, sentences=0, text_lines=5, workers=1, progress=False)
    assert summary["rendered_now"] == 1 and summary["version"] == SYNTH_VERSION
    new = json.loads(item.read_text())
    assert (tmp_path / new["turns"][0]["plain_query"]["audio"]).is_file()
    assert (tmp_path / new["turns"][0]["answer"]["audio"]).read_bytes() == answer


def test_hearing_sentences_put_entities_in_new_contexts_in_query_voices():
    from aqaa.data.lexicon import COUNTRIES
    from aqaa.data.sentences import fact_sentences, plural
    from aqaa.data.synth import plan_hearing

    plans = plan_hearing(400, seed=3)
    assert plans == plan_hearing(400, seed=3) and plans[0].id == "hear-000000"
    assert {p.render.voice for p in plans} <= set(TRAIN_VOICES) - {"joe"}
    texts = [p.text for p in plans]
    assert len(set(texts)) > 390 and not set(texts) & set(fact_sentences())
    named = {c for c, cap, _ in COUNTRIES for t in texts if c in t or cap in t}
    assert len(named) > 50  # most countries, each in a sentence of its own kind
    assert [plural(w) for w in ("library", "goldfish", "bus", "day")] == ["libraries", "goldfish", "buses", "days"]


def test_word_lists_use_only_training_phrasing_words_and_entities():
    import re

    from aqaa.data.sentences import word_list_vocabulary
    from aqaa.data.spokenqa import QUESTION_TYPES, phrasing_range
    from aqaa.data.synth import plan_hearing

    def words(split: str) -> set[str]:
        return {w.lower() for t in QUESTION_TYPES.values() for i in phrasing_range(split, len(t.phrasings))
                for w in re.findall(r"[A-Za-z']+", re.sub(r"\{\w+\}", "", t.phrasings[i]))}

    vocab = {w.lower() for w in word_list_vocabulary()}
    assert {"capital", "accra", "seventy four", "monday"} <= vocab
    only_held_out = words("test") - words("train")
    assert {"product", "whose"} <= only_held_out and not only_held_out & vocab
    plans = plan_hearing(50, seed=3, kind="words")
    assert plans[0].id == "words-000000" and plans == plan_hearing(50, seed=3, kind="words")
    assert all(len(p.text.split()) >= 4 for p in plans) and {p.render.voice for p in plans} <= set(TRAIN_VOICES)


def test_answer_renderings_cover_every_typed_question_in_the_neutral_assistant_voice():
    from aqaa.data.spokenqa import typed_pairs
    from aqaa.data.synth import plan_answers
    from aqaa.data.voices import ASSISTANT_VOICE, Style

    plans = plan_answers()
    texts = [p.text for p in plans]
    assert len(texts) == len(set(texts)) > 4000 and plans[0].id == "answer-000000"
    assert set(texts) == {answer for _, answer, _ in typed_pairs(("knowledge", "reasoning"))}
    assert "Forty five plus thirty two is seventy seven." in texts  # new sums, not only the dialogues' answers
    assert {(p.render.voice, p.render.style, p.render.snr_db, p.split) for p in plans} == {
        (ASSISTANT_VOICE, Style(), None, "train")}
