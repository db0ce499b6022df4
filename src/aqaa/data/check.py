"""`aqaa data check`: is the synthesized data what it claims to be?

Whisper tiny.en transcribes every query and answer rendering (WER per voice), and every speech-control answer
is measured against its opposite rendering (slow vs fast duration, loud vs soft level, high vs low pitch).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from aqaa.audio.measure import SpeechMeasure, measure
from aqaa.eval.judge import control_effect

# Acceptance thresholds for control renderings (issue: Foundation).
MIN_RATE_RATIO = 1.25
MIN_LEVEL_DB = 6.0
MIN_SEMITONES = 2.0


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    from aqaa.eval.text import normalize

    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps) if normalize(r)]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([p[0] for p in pairs], [p[1] or "<empty>" for p in pairs]))


def control_margin(axis: str, direction: str, this: SpeechMeasure, other: SpeechMeasure) -> float:
    """How far the rendering `this` (asked: direction) is from `other` (the opposite), in the axis' unit:
    slow / fast duration ratio, loud - soft dB, high - low semitones (the eval judge's `control_effect`)."""
    first, second = (this, other) if direction in ("slow", "loud", "high") else (other, this)
    return control_effect(axis, first, second)


THRESHOLD = {"rate": MIN_RATE_RATIO, "volume": MIN_LEVEL_DB, "pitch": MIN_SEMITONES}


def check(data_dir: str | Path, splits: tuple[str, ...] = ("train", "valid", "test"), progress: bool = True) -> dict:
    from aqaa.eval.asr import transcribe

    root = Path(data_dir)
    records = [json.loads(line) for s in splits for line in (root / f"{s}.jsonl").read_text().splitlines() if line]
    renders: list[tuple[str, dict]] = []  # (role, rendering)
    controls = []
    for rec in records:
        for turn in rec["turns"]:
            renders.append(("query", turn["query"]))
            renders.append(("answer", turn["answer"]))
            if turn.get("control"):
                renders += [("answer", turn["neutral"]), ("answer", turn["opposite"])]
                if "plain_query" in turn:  # data version 2
                    renders.append(("query", turn["plain_query"]))
                controls.append((rec["id"], turn))

    by_voice: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    worst: list[tuple[float, str, str, str]] = []
    for role, r in tqdm(renders, desc="whisper", disable=not progress):
        samples, rate = sf.read(root / r["audio"], dtype="float32")
        hyp = transcribe(samples, rate)
        refs, hyps = by_voice[(role, r["voice"])]
        refs.append(r["text"])
        hyps.append(hyp)
        worst.append((corpus_wer([r["text"]], [hyp]), r["audio"], r["text"], hyp))

    wer_table = {f"{role}:{voice}": {"n": len(refs), "wer": round(corpus_wer(refs, hyps), 4)}
                 for (role, voice), (refs, hyps) in sorted(by_voice.items())}
    all_q = [(r, h) for (role, _), (rs, hs) in by_voice.items() if role == "query" for r, h in zip(rs, hs)]
    all_a = [(r, h) for (role, _), (rs, hs) in by_voice.items() if role == "answer" for r, h in zip(rs, hs)]

    ctl_rows = []
    for item_id, turn in controls:
        axis, direction = turn["control"]["axis"], turn["control"]["direction"]
        this = _measure_file(root, turn["answer"])
        other = _measure_file(root, turn["opposite"])
        margin = control_margin(axis, direction, this, other)
        ok = not math.isnan(margin) and margin >= THRESHOLD[axis]
        ctl_rows.append({"id": item_id, "axis": axis, "direction": direction, "margin": round(margin, 3), "ok": ok})
    per_axis = {}
    for axis in THRESHOLD:
        rows = [r for r in ctl_rows if r["axis"] == axis]
        if rows:
            per_axis[axis] = {"n": len(rows), "ok_rate": round(sum(r["ok"] for r in rows) / len(rows), 4),
                              "min_margin": min(r["margin"] for r in rows), "threshold": THRESHOLD[axis]}
    return {
        "records": len(records),
        "query_wer_all_voices": round(corpus_wer(*zip(*all_q)), 4) if all_q else None,
        "answer_wer": round(corpus_wer(*zip(*all_a)), 4) if all_a else None,
        "wer_by_voice": wer_table,
        "control": {"n": len(ctl_rows), "ok_rate": round(sum(r["ok"] for r in ctl_rows) / max(len(ctl_rows), 1), 4),
                    "per_axis": per_axis, "failures": [r for r in ctl_rows if not r["ok"]]},
        "worst_transcripts": [{"wer": round(w, 3), "audio": a, "text": t, "heard": h}
                              for w, a, t, h in sorted(worst, reverse=True)[:15]],
    }


def _measure_file(root: Path, rendering: dict) -> SpeechMeasure:
    samples, rate = sf.read(root / rendering["audio"], dtype="float32")
    return measure(samples, rate, rendering["text"])


def markdown(report: dict) -> str:
    lines = ["# SpokenQA data check", "", f"Records: {report['records']}", "",
             f"- query WER over all voices: **{report['query_wer_all_voices']:.3f}**",
             f"- assistant-voice answer WER: **{report['answer_wer']:.3f}**",
             f"- control renderings as asked: **{100 * report['control']['ok_rate']:.1f}%** of {report['control']['n']}",
             "", "| role:voice | renderings | Whisper tiny.en WER |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['wer']:.3f} |" for k, v in report["wer_by_voice"].items()]
    lines += ["", "| control axis | n | as asked | smallest margin | threshold |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {v['n']} | {100 * v['ok_rate']:.1f}% | {v['min_margin']} | {v['threshold']} |"
              for a, v in report["control"]["per_axis"].items()]
    lines += ["", "Worst transcripts:", ""]
    lines += [f"- {w['wer']:.2f} `{w['audio']}`: \"{w['text']}\" heard as \"{w['heard']}\"" for w in report["worst_transcripts"]]
    return "\n".join(lines) + "\n"
