"""Speech-control items of `aqaa eval` runs taken apart: is the reference neutral, is the answer styled, is it heard.

`aqaa eval` judges a controlled answer against the same engine's answer to a plain "Say <phrase>." (its *neutral*
rendering), so a model that says plain requests in some style makes that judgement noisy. Per run this prints and
writes (JSON) the control items':
  - direction_ok: the eval's own judgement (vs the engine's neutral rendering);
  - neutral_ok: the engine's neutral rendering is neutral (within 3 dB and 2 semitones of the data's neutral one);
  - styled_ok: the controlled answer moved the asked way against the *data's* neutral rendering of the phrase
    (the eval judge's rule), which does not depend on the engine's neutral;
  - content_ok: the phrase was said (the eval's answer check);
plus the run's overall accuracy and per-category counts.

    python scripts/control_breakdown.py --data data/spokenqa --out reports/x.json runs/eval-a runs/eval-b
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

from aqaa.audio.measure import SpeechMeasure
from aqaa.eval.judge import control_effect, direction_ok


def _measure(d: dict) -> SpeechMeasure:
    """A stored measure back (to_dict writes nan as None)."""
    return SpeechMeasure(**{k: math.nan if v is None else v for k, v in d.items()})


def styled(axis: str, direction: str, got: dict, neutral: dict) -> bool:
    """The eval judge's own rule, against the data's neutral rendering instead of the engine's."""
    return direction_ok(axis, direction, control_effect(axis, _measure(got), _measure(neutral)))


def looks_neutral(got: dict, neutral: dict) -> bool:
    if not (got["f0_hz"] > 0 and neutral["f0_hz"] > 0):
        return False
    return abs(got["rms_db"] - neutral["rms_db"]) < 3 and abs(12 * math.log2(got["f0_hz"] / neutral["f0_hz"])) < 2


def breakdown(run: Path, items: dict[str, dict]) -> dict:
    records = [json.loads(p.read_text()) for p in sorted((run / "items").glob("*.json"))]
    counts, per_axis, per_category = Counter(), Counter(), Counter()
    for r in records:
        per_category[(r["category"], bool(r.get("correct")))] += 1
        c = r.get("control")
        if not c:
            continue
        data_neutral = items[r["id"]]["turns"][-1]["neutral"]["measure"]
        counts["n"] += 1
        counts["direction_ok"] += bool(c["direction_ok"])
        counts["neutral_ok"] += looks_neutral(c["neutral"], data_neutral)
        counts["styled_ok"] += styled(c["axis"], c["direction"], c["measure"], data_neutral)
        counts["content_ok"] += bool(r["answer_correct"])
        counts["correct"] += bool(r["correct"])
        per_axis[(c["axis"], "n")] += 1
        per_axis[(c["axis"], "direction_ok")] += bool(c["direction_ok"])
    categories = sorted({k for k, _ in per_category})
    return {"run": str(run), "items": len(records),
            "overall": round(sum(bool(r.get("correct")) for r in records) / max(1, len(records)), 4),
            "categories": {k: f"{per_category[(k, True)]}/{per_category[(k, True)] + per_category[(k, False)]}"
                           for k in categories},
            "control": dict(counts),
            "direction_by_axis": {a: f"{per_axis[(a, 'direction_ok')]}/{per_axis[(a, 'n')]}"
                                  for a in ("rate", "volume", "pitch") if per_axis[(a, "n")]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="`aqaa eval --out` folders")
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    items = {}
    for split in ("train", "valid", "test"):
        path = Path(args.data) / f"{split}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            item = json.loads(line)
            items[item["id"]] = item
    rows = [breakdown(Path(r), items) for r in args.runs]
    for row in rows:
        c = row["control"]
        print(f"{row['run']}: overall {row['overall']:.3f} | control n={c.get('n', 0)}"
              f" direction {c.get('direction_ok', 0)} neutral {c.get('neutral_ok', 0)} styled {c.get('styled_ok', 0)} content {c.get('content_ok', 0)}"
              f" correct {c.get('correct', 0)} | {row['direction_by_axis']} | {row['categories']}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
