"""Plot of the session-24 soup choice: overall and voice understanding vs the interpolation weight t, from the
eval reports kept in reports/default_model/session24 (t = 0: the previous LM, t = 1: the SFT round alone).

    python scripts/plot_soup.py reports/default_model/session24
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = {0.0: "old", 0.3: "m30", 0.5: "m50", 0.7: "m70", 1.0: "sr500"}  # t -> eval run name


def figures(folder: Path, name: str, split: str) -> list[dict]:
    """Every seed's report of one run on one split (others/NAME-SPLIT-sK.json or NAME-SPLIT-sK/report.json)."""
    found = [*folder.glob(f"others/{name}-{split}-s*.json"), *folder.glob(f"{name}-{split}-s*/report.json")]
    return [next(iter(json.loads(p.read_text()).values())) for p in sorted(found)]


def main(folder: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for split, measure, style in (("valid", "overall_accuracy", "o-"), ("test", "overall_accuracy", "s-"),
                                  ("test", "voice_understanding", "^--")):
        ts, ys = [], []
        for t, name in RUNS.items():
            runs = figures(folder, name, split)
            if runs:
                ts.append(t)
                ys.append(100 * statistics.mean(r[measure] if measure == "overall_accuracy" else
                                                r["per_category"][measure]["accuracy"] for r in runs))
        ax.plot(ts, ys, style, label=f"{split}: {measure.replace('_accuracy', '').replace('_', ' ')}")
    ax.axvline(0.7, color="grey", lw=0.8)
    ax.set_xlabel("t (0: first SFT model, 1: the recall round)")
    ax.set_ylabel("% of 200 items (mean over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "soup.png", dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
