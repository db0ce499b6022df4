"""Paired comparison of two models' eval runs on the same items: each item's share of correct answers over the
sampling seeds, model A minus model B, with a bootstrap 95 % interval over items. Why paired: the two models answer
the same 200 items, so item difficulty cancels and a 3-point difference can be told from noise.

    python scripts/paired_eval.py runs/eval-rr-test-s0,runs/eval-rr-test-s1,runs/eval-rr-test-s2 \
        runs/eval-m70-test-s0,runs/eval-m70-test-s1,runs/eval-m70-test-s2
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path


def item_scores(runs: list[Path]) -> dict[str, float]:
    """Item id -> share of the runs (seeds) that answered it correctly (`aqaa eval`'s items/*.json)."""
    hits: dict[str, list[bool]] = {}
    for run in runs:
        for f in (run / "items").glob("*.json"):
            record = json.loads(f.read_text())
            hits.setdefault(record["id"], []).append(bool(record.get("correct")))
    return {k: sum(v) / len(v) for k, v in hits.items()}


def paired(a: dict[str, float], b: dict[str, float], resamples: int = 2000, seed: int = 0) -> dict:
    ids = sorted(a.keys() & b.keys())
    diffs = [a[i] - b[i] for i in ids]
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(resamples))
    return {"items": len(ids), "diff_points": 100 * sum(diffs) / len(diffs),
            "ci95_points": [100 * means[int(0.025 * resamples)], 100 * means[int(0.975 * resamples)]],
            "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs)}


if __name__ == "__main__":
    a, b = ([Path(p) for p in arg.split(",")] for arg in sys.argv[1:3])
    print(json.dumps(paired(item_scores(a), item_scores(b)), indent=1))
