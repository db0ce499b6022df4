"""`aqaa eval`: run an engine on every item of a manifest and judge its spoken answers.

Each item's result is written atomically to `OUT/items/<id>.json` (a killed run resumes; a failing item is
recorded as an error and the run goes on); answers are kept as wavs; `report.py` aggregates.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from aqaa.audio.io import load_audio, save_wav
from aqaa.audio.measure import measure
from aqaa.eval.judge import control_effect, direction_ok, judge_answer
from aqaa.eval.text import contains_answer

NEUTRAL_QUERY_VOICE = "kal"


def read_manifest(path: str | Path) -> tuple[Path, list[dict]]:
    path = Path(path)
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for item in items:
        missing = {"id", "category", "audio"} - item.keys()
        if missing:
            raise ValueError(f"{path}: item {item.get('id', '?')} lacks {sorted(missing)}")
    return path.parent, items


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == 16_000:
        return samples
    import soxr

    return soxr.resample(samples, rate, 16_000).astype(np.float32)


def _neutral_rendering(session, phrase: str) -> np.ndarray:
    """The engine's answer to a plain "Say <phrase>." (same engine, no control) at 16 kHz."""
    from aqaa.data.voices import synthesize

    query, rate = synthesize(NEUTRAL_QUERY_VOICE, f"Say {phrase}.")
    session.reset()
    result = session.answer(query, rate)
    return _to_16k(result.samples, result.sample_rate)


def evaluate_item(item: dict, root: Path, session, out: Path) -> dict:
    from aqaa.eval.asr import transcribe

    session.reset()
    # the engine's own answers to the earlier turns: a multi-turn miss is then told apart as heard wrong in the
    # first turn (its answer names another thing) or recalled wrong (the first answer was right)
    context_answers = [session.answer(load_audio(root / turn["audio"]).samples).text
                       for turn in item.get("context") or []]
    query = load_audio(root / item["audio"])
    result = session.answer(query.samples, query.sample_rate)
    save_wav(out / "answers" / f"{item['id']}.wav", result.samples, result.sample_rate)
    answer16 = _to_16k(result.samples, result.sample_rate)
    transcript = transcribe(answer16) if len(answer16) else ""
    record = {"id": item["id"], "category": item["category"], "qtype": item.get("qtype"),
              **judge_answer(item, transcript, result.text),
              "first_audio_ms": result.first_audio_ms, "rtf": result.rtf, "audio_s": round(result.audio_s, 3),
              "timeline": result.timeline, "heard": getattr(result, "query_text", "")}
    if context_answers:
        record["context_answers"] = context_answers
        record["context_named"] = context_named(item, context_answers)
    control = item.get("control")
    if control and len(answer16):
        phrase = (item.get("answer") or [""])[0]
        neutral = measure(_neutral_rendering(session, phrase), 16_000, phrase)
        controlled = measure(answer16, 16_000, phrase)
        effect = control_effect(control["axis"], controlled, neutral)
        record["control"] = {**control, "effect": None if np.isnan(effect) else round(float(effect), 3),
                             "direction_ok": direction_ok(control["axis"], control["direction"], effect),
                             "measure": controlled.to_dict(), "neutral": neutral.to_dict()}
    record["correct"] = _correct(record)
    return record


def context_named(item: dict, context_answers: list[str]) -> bool:
    """Whether any of the engine's answers to the earlier turns names an accepted answer of the item."""
    return any(contains_answer(text, item.get("answer") or []) for text in context_answers)


def _correct(record: dict) -> bool:
    """The content is right, and for a control item the asked change was measured."""
    return bool(record["answer_correct"]) and ("control" not in record or record["control"]["direction_ok"])


def with_items(records: list[dict], items: list[dict]) -> list[dict]:
    """Records judged again by the current judge from their stored transcript (so runs made at different times
    compare under the same rules), with the question type of their manifest item (older records lack it)."""
    by_id = {it["id"]: it for it in items}
    out = []
    for r in records:
        item = by_id.get(r["id"])
        if item is None or "error" in r:
            out.append(r)
            continue
        r = {**r, "qtype": item.get("qtype"), **judge_answer(item, r["transcript"], r["text"])}
        if "context_answers" in r:
            r["context_named"] = context_named(item, r["context_answers"])
        out.append({**r, "correct": _correct(r)})
    return out


def run_eval(manifest: str | Path, out_dir: str | Path, session_factory: Callable[[], object],
             engine: str, limit: int | None = None) -> list[dict]:
    """Evaluate (resumably) and return every item's record."""
    root, items = read_manifest(manifest)
    return run_items(items[:limit] if limit else items, root, out_dir, session_factory, engine)


def run_items(items: list[dict], root: Path, out_dir: str | Path, session_factory: Callable[[], object], engine: str,
              before_item: Callable[[object, dict], None] | None = None) -> list[dict]:
    """`run_eval` on given manifest items; `before_item(session, item)` runs before each is evaluated (a probe
    that changes what the session is given, e.g. scripts/probe_oracle_reading.py)."""
    out = Path(out_dir)
    (out / "items").mkdir(parents=True, exist_ok=True)
    todo = [it for it in items if not (out / "items" / f"{it['id']}.json").exists()]
    session = session_factory() if todo else None
    engine = getattr(session, "name", engine)
    for item in tqdm(todo, desc=f"eval {engine}"):
        try:
            if before_item:
                before_item(session, item)
            record = evaluate_item(item, root, session, out)
        except Exception as err:  # one bad item must not end the run: record it and go on
            record = {"id": item["id"], "category": item["category"], "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc(limit=3)}
        record["engine"] = engine
        path = out / "items" / f"{item['id']}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    return with_items([json.loads((out / "items" / f"{it['id']}.json").read_text()) for it in items], items)
