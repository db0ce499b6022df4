"""`aqaa eval` runs side by side, one line each: overall and per-category accuracy, text-audio WER, first audio, and
how many knowledge items' entity the model's reading of the query names (models with `lm.heard_reading`).

    .venv/bin/python scripts/compare_evals.py --manifest data/spokenqa/test.jsonl runs/eval-a runs/eval-b

Reads each run's `items/*.json` (so a run still in progress shows what it has so far).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from probe_asr import entity_heard

CATEGORIES = ("knowledge", "reasoning", "speech_control", "voice_understanding", "multi_turn")


def summarize(run: Path, items: dict[str, dict]) -> dict | None:
    records = [json.loads(p.read_text()) for p in sorted((run / "items").glob("*.json"))]
    records = [r for r in records if "error" not in r]
    if not records:
        return None
    named = [entity_heard(items[r["id"]], r["heard"])
             for r in records if r["category"] == "knowledge" and r.get("heard") and r["id"] in items]
    named = [n for n in named if n is not None]  # a knowledge question naming no entity ("the colour of milk")
    return {"run": run.name, "n": len(records), "overall": statistics.mean(r["correct"] for r in records),
            "by_category": {c: statistics.mean(v) for c in CATEGORIES
                            if (v := [r["correct"] for r in records if r["category"] == c])},
            "text_audio_wer": statistics.mean(r["text_audio_wer"] for r in records
                                              if r.get("text_audio_wer") is not None),
            "first_audio_p50": statistics.median(r["first_audio_ms"] for r in records),
            "reading_names": f"{sum(named)}/{len(named)}" if named else "-"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--manifest", type=Path, default=Path("data/spokenqa/test.jsonl"))
    args = ap.parse_args()
    items = {json.loads(x)["id"]: json.loads(x) for x in args.manifest.read_text().splitlines() if x.strip()}
    print("run | n | overall | " + " / ".join(CATEGORIES) + " | text-audio WER | first audio p50 | reading names")
    for run in args.runs:
        s = summarize(run, items)
        if s:
            cats = " / ".join(f"{100 * v:.1f}" for v in s["by_category"].values())
            print(f"{s['run']} | {s['n']} | {100 * s['overall']:.1f} % | {cats} | {s['text_audio_wer']:.3f} | "
                  f"{s['first_audio_p50']:.0f} ms | {s['reading_names']}")


if __name__ == "__main__":
    main()
