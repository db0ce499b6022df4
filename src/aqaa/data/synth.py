"""`aqaa data synth`: render SpokenQA dialogues and the pre-training corpora to audio + JSONL manifests.

The plan (what to say, in which voice and style) is a pure function of (seed, sizes); rendering is spread over
worker processes, each item is written atomically as `items/<id>.json` once all its audio exists, and a re-run
skips items already done. Manifests are assembled from the item records at the end (SPEC manifest format).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from aqaa.data.spokenqa import Dialogue, make_dialogue, typed_pairs
from aqaa.data.sentences import (arithmetic_sentence, fact_sentences, grammar_sentence, hearing_sentence, text_corpus,
                                 word_list, word_list_vocabulary)
from aqaa.data.voices import ASSISTANT_VOICE, VOICES, Style

# Query voices; the test split speaks only in voices the training data never uses.
TRAIN_VOICES = ["joe", "espeak-us", "espeak-us-m1", "espeak-us-f3", "espeak-gb-m3", "kal", "slt"]
TEST_VOICES = ["ked", "espeak-rp", "espeak-us-f2"]

# How the assistant renders a controlled answer (SPEC speech control), and the opposite used as a "wrong" sample.
ANSWER_STYLES: dict[tuple[str, str], Style] = {
    ("rate", "slow"): Style(rate=0.72),
    ("rate", "fast"): Style(rate=1.4),
    ("volume", "loud"): Style(level_db=-16.0),
    ("volume", "soft"): Style(level_db=-36.0),
    ("pitch", "high"): Style(pitch=4.5),
    ("pitch", "low"): Style(pitch=-4.5),
}
OPPOSITE = {"slow": "fast", "fast": "slow", "loud": "soft", "soft": "loud", "high": "low", "low": "high"}
NOISE_PROB = 0.3
# 2: every speech-control turn also carries its plain request (`plain_query`, q{t}_plain.wav: the same voice and
# style without the control words), answered by the neutral rendering; a re-run adds it to version-1 folders.
SYNTH_VERSION = 2


@dataclass
class QueryRender:
    voice: str
    style: Style
    snr_db: float | None = None  # None: clean


@dataclass
class ItemPlan:
    id: str
    split: str
    dialogue: Dialogue
    queries: list[QueryRender] = field(default_factory=list)


@dataclass
class SentencePlan:
    id: str
    split: str
    text: str
    render: QueryRender


def _split_of(i: int) -> str:
    return {8: "valid", 9: "test"}.get(i % 10, "train")


def _query_render(rng: random.Random, split: str, prop: dict | None) -> QueryRender:
    """Pick a voice and a speaking style; a voice-understanding query is said in the property it asks about."""
    pool = TEST_VOICES if split == "test" else TRAIN_VOICES
    style = Style(rate=rng.uniform(0.9, 1.1), pitch=rng.uniform(-1.0, 1.0), level_db=rng.uniform(-32.0, -22.0))
    if prop is not None:
        axis, value = prop["axis"], prop["value"]
        if axis == "rate":
            style = Style(rate=rng.uniform(1.35, 1.45) if value == "fast" else rng.uniform(0.65, 0.72),
                          pitch=style.pitch, level_db=style.level_db)
        elif axis == "volume":
            style = Style(rate=style.rate, pitch=style.pitch,
                          level_db=rng.uniform(-16.0, -13.0) if value == "loud" else rng.uniform(-46.0, -42.0))
        else:  # pitch: absolute, so "high" is a high voice raised further and "low" a low voice lowered
            pool = [v for v in pool if (VOICES[v].base_f0 >= 170) == (value == "high")]
            style = Style(rate=style.rate, pitch=rng.uniform(2.0, 3.5) * (1 if value == "high" else -1),
                          level_db=style.level_db)
    snr = rng.uniform(15.0, 30.0) if rng.random() < NOISE_PROB else None
    return QueryRender(rng.choice(pool), style, snr)


def plan_items(n: int, seed: int) -> list[ItemPlan]:
    plans = []
    for i in range(n):
        rng = random.Random(f"{seed}-sqa-{i}")
        split = _split_of(i)
        dialogue = make_dialogue(rng, split)
        queries = [_query_render(rng, split, t.query_property) for t in dialogue.turns]
        plans.append(ItemPlan(f"sqa-{i:06d}", split, dialogue, queries))
    return plans


def plan_sentences(n: int, seed: int) -> list[SentencePlan]:
    """Spoken sentences: half in the assistant voice (TTS pairs), half in training query voices (ASR pairs)."""
    facts = fact_sentences()
    plans = []
    for i in range(n):
        rng = random.Random(f"{seed}-sent-{i}")
        r = rng.random()
        text = rng.choice(facts) if r < 0.2 else arithmetic_sentence(rng) if r < 0.3 else grammar_sentence(rng)
        voice = ASSISTANT_VOICE if rng.random() < 0.5 else rng.choice(TRAIN_VOICES)
        style = Style(rate=rng.uniform(0.9, 1.1)) if voice == ASSISTANT_VOICE else \
            Style(rate=rng.uniform(0.9, 1.1), pitch=rng.uniform(-1, 1), level_db=rng.uniform(-32, -22))
        plans.append(SentencePlan(f"sent-{i:06d}", "valid" if i % 20 == 19 else "train", text, QueryRender(voice, style)))
    return plans


def plan_hearing(n: int, seed: int, kind: str = "hear") -> list[SentencePlan]:
    """Entity-rich sentences (`hearing_sentence`; kind "words": `word_list`s) said only by training query voices,
    in query styles and noise: ASR pairs that teach stage 1 to hear countries, numbers and days in any context
    (ids `hear-*` / `words-*`)."""
    plans = []
    voices = [v for v in TRAIN_VOICES if v != ASSISTANT_VOICE]
    vocabulary = word_list_vocabulary() if kind == "words" else []
    for i in range(n):
        rng = random.Random(f"{seed}-{kind}-{i}")
        text = word_list(rng, vocabulary) if kind == "words" else hearing_sentence(rng)
        style = Style(rate=rng.uniform(0.85, 1.15), pitch=rng.uniform(-1.5, 1.5), level_db=rng.uniform(-34, -20))
        snr = rng.uniform(15.0, 30.0) if rng.random() < NOISE_PROB else None
        plans.append(SentencePlan(f"{kind}-{i:06d}", "valid" if i % 20 == 19 else "train", text,
                                  QueryRender(rng.choice(voices), style, snr)))
    return plans


def plan_answers() -> list[SentencePlan]:
    """Every distinct knowledge and reasoning answer of the typed questions (`typed_pairs`, ~4,700 sentences) in the
    neutral assistant voice (ids `answer-*`). Why: a typed question is answered only by a rendering the data has,
    and the dialogues render ~350 of these answers, so no training example said a new sum or a new capital: the
    shipped LM recalled training answers and composed none (reports/default_model/session27)."""
    answers = dict.fromkeys(answer for _, answer, _ in typed_pairs(("knowledge", "reasoning")))
    return [SentencePlan(f"answer-{i:06d}", "train", text, QueryRender(ASSISTANT_VOICE, Style()))
            for i, text in enumerate(answers)]


# ---------------------------------------------------------------- rendering (runs in worker processes)
def _render(out_dir: Path, rel: str, text: str, render: QueryRender, seed_key: str) -> dict:
    import numpy as np

    from aqaa.audio.io import save_wav
    from aqaa.audio.measure import measure
    from aqaa.data.voices import add_noise, synthesize

    samples, rate = synthesize(render.voice, text, render.style)
    measured = measure(samples, rate, text).to_dict()  # measured on the clean rendering
    if render.snr_db is not None:
        samples = add_noise(samples, render.snr_db, np.random.default_rng(zlib.crc32(seed_key.encode())))
    save_wav(out_dir / rel, samples, rate)
    return {"audio": rel, "text": text, "voice": render.voice, "style": asdict(render.style),
            "snr_db": render.snr_db, "duration_s": round(len(samples) / rate, 3), "measure": measured}


def _answer(out_dir: Path, rel: str, text: str, style: Style) -> dict:
    return _render(out_dir, rel, text, QueryRender(ASSISTANT_VOICE, style), rel)


def _plain_query(out_dir: Path, plan: ItemPlan, t: int) -> dict:
    return _render(out_dir, f"audio/{plan.id}/q{t}_plain.wav", plan.dialogue.turns[t].plain, plan.queries[t],
                   f"{plan.id}-{t}-plain")


def _lacks_plain(record: dict) -> bool:
    return any(turn.get("control") and "plain_query" not in turn for turn in record["turns"])


def add_plain_queries(plan: ItemPlan, out_dir: Path) -> dict:
    """Upgrade a version-1 item record: render the plain request of each control turn it lacks."""
    record = json.loads((out_dir / "items" / f"{plan.id}.json").read_text())
    for t, turn in enumerate(record["turns"]):
        if turn.get("control") and "plain_query" not in turn:
            turn["plain_query"] = _plain_query(out_dir, plan, t)
    return record


def render_item(plan: ItemPlan, out_dir: Path) -> dict:
    """Render every turn of one dialogue; returns its manifest record (SPEC fields first)."""
    turns = []
    for t, (turn, q) in enumerate(zip(plan.dialogue.turns, plan.queries)):
        base = f"audio/{plan.id}"
        query = _render(out_dir, f"{base}/q{t}.wav", turn.query, q, f"{plan.id}-{t}")
        style = ANSWER_STYLES[(turn.control["axis"], turn.control["direction"])] if turn.control else Style()
        answer = _answer(out_dir, f"{base}/a{t}.wav", turn.answer, style)
        entry = {"query": query, "answer": answer, "accepted": turn.accepted,
                 "control": turn.control, "query_property": turn.query_property}
        if turn.control:
            entry["neutral"] = _answer(out_dir, f"{base}/a{t}_neutral.wav", turn.answer, Style())
            other = (turn.control["axis"], OPPOSITE[turn.control["direction"]])
            entry["opposite"] = _answer(out_dir, f"{base}/a{t}_opposite.wav", turn.answer, ANSWER_STYLES[other])
            entry["plain_query"] = _plain_query(out_dir, plan, t)
        turns.append(entry)
    last = turns[-1]
    record = {
        "id": plan.id,
        "category": plan.dialogue.category,
        "audio": last["query"]["audio"],
        "answer": last["accepted"],
        "control": last["control"],
        "context": [{"audio": e["query"]["audio"], "text": e["query"]["text"], "answer_text": e["answer"]["text"],
                     "answer_audio": e["answer"]["audio"]} for e in turns[:-1]],
        "split": plan.split,
        "qtype": plan.dialogue.qtype,
        "phrasing": plan.dialogue.phrasing,
        "text": last["query"]["text"],
        "answer_text": last["answer"]["text"],
        "answer_audio": last["answer"]["audio"],
        "query_property": last["query_property"],
        "turns": turns,
    }
    return record


def render_sentence(plan: SentencePlan, out_dir: Path) -> dict:
    rendered = _render(out_dir, f"pretrain/audio/{plan.id}.wav", plan.text, plan.render, plan.id)
    return {"id": plan.id, "split": plan.split, **rendered}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False))
    os.replace(tmp, path)


def _job(args: tuple[str, object, str]) -> tuple[str, float]:
    kind, plan, out = args
    out_dir = Path(out)
    if kind == "item":
        record, folder = render_item(plan, out_dir), out_dir / "items"
    elif kind == "plain":
        record, folder = add_plain_queries(plan, out_dir), out_dir / "items"
    else:
        record, folder = render_sentence(plan, out_dir), out_dir / "pretrain" / "items"
    _write_json(folder / f"{plan.id}.json", record)
    if kind == "sent":
        return plan.id, record["duration_s"]
    parts = ("plain_query",) if kind == "plain" else ("query", "answer")
    return plan.id, sum(t[k]["duration_s"] for t in record["turns"] for k in parts if k in t)


def _worker_init() -> None:
    import torch

    os.environ.setdefault("AQAA_TTS_THREADS", "1")
    torch.set_num_threads(1)


def _write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def synth(out_dir: str | Path, n: int, seed: int = 0, *, sentences: int | None = None, text_lines: int | None = None,
          hearing: int = 0, word_lists: int = 0, answers: bool = False, workers: int | None = None,
          progress: bool = True) -> dict:
    """Render `n` SpokenQA dialogues plus the pre-training corpora into `out_dir` (with `answers`, also every typed
    question's answer, `plan_answers`); resumable. Returns a summary."""
    out = Path(out_dir)
    sentences = n if sentences is None else sentences
    text_lines = 10 * n if text_lines is None else text_lines
    for sub in ("items", "audio", "pretrain/items", "pretrain/audio"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sents = plan_sentences(sentences, seed) + plan_hearing(hearing, seed) + plan_hearing(word_lists, seed, "words")
    sents += plan_answers() if answers else []
    items = plan_items(n, seed)
    done = {p.id: out / "items" / f"{p.id}.json" for p in items}
    jobs = [("item", p, str(out)) for p in items if not done[p.id].exists()]
    jobs += [("plain", p, str(out)) for p in items
             if done[p.id].exists() and _lacks_plain(json.loads(done[p.id].read_text()))]
    jobs += [("sent", p, str(out)) for p in sents if not (out / "pretrain" / "items" / f"{p.id}.json").exists()]
    workers = workers or min(os.cpu_count() or 1, 2)
    audio_s = 0.0
    if jobs:
        ctx = mp.get_context("spawn")  # fresh interpreters: no inherited onnxruntime / OpenMP thread pools
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            bar = tqdm(total=len(jobs), desc="synth", unit="item", disable=not progress)
            for _, seconds in pool.imap_unordered(_job, jobs, chunksize=1):
                audio_s += seconds
                bar.update()
            bar.close()
    summary = write_manifests(out, [p.id for p in items], [p.id for p in sents])
    _write_lines(out / "pretrain" / "text.txt", text_corpus(random.Random(f"{seed}-text"), text_lines))
    summary.update(rendered_now=len(jobs), audio_seconds_now=round(audio_s, 1), text_lines=text_lines,
                   seed=seed, n=n, hearing=hearing, word_lists=word_lists, answers=answers, version=SYNTH_VERSION)
    _write_json(out / "synth.json", summary)
    return summary


def write_manifests(out: Path, item_ids: list[str], sentence_ids: list[str]) -> dict:
    """Assemble `{train,valid,test}.jsonl` and `pretrain/sentences.jsonl` from the per-item records."""
    by_split: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for iid in item_ids:
        rec = json.loads((out / "items" / f"{iid}.json").read_text())
        by_split[rec["split"]].append(json.dumps(rec, ensure_ascii=False))
    for split, lines in by_split.items():
        _write_lines(out / f"{split}.jsonl", lines)
    sent_lines = [(out / "pretrain" / "items" / f"{sid}.json").read_text() for sid in sentence_ids]
    _write_lines(out / "pretrain" / "sentences.jsonl", sent_lines)
    return {split: len(lines) for split, lines in by_split.items()} | {"sentences": len(sent_lines)}
