"""Bar chart of candidate LMs side by side: validation and test overall, and the test split's voice understanding
and multi-turn recall (means over the sampling seeds kept as eval reports, `plot_soup.figures`).

    python scripts/plot_candidates.py reports/default_model/session25/candidates.png \
        reports/default_model/session24 reports/default_model/session25 \
        m70="session 24 soup" rr="two rounds averaged" ...
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from plot_soup import figures  # noqa: E402

BARS = (("valid", "overall_accuracy", "valid overall"), ("test", "overall_accuracy", "test overall"),
        ("test", "voice_understanding", "test voice understanding"), ("test", "multi_turn", "test multi-turn"))


def mean_of(folders: list[Path], name: str, split: str, measure: str) -> float | None:
    runs = [r for f in folders for r in figures(f, name, split)]
    if not runs:
        return None
    return 100 * statistics.mean(r[measure] if measure == "overall_accuracy" else r["per_category"][measure]["accuracy"]
                                 for r in runs)


def main(out: Path, folders: list[Path], runs: dict[str, str]) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(BARS)
    for i, (split, measure, label) in enumerate(BARS):
        xs, ys = [], []
        for j, name in enumerate(runs):
            y = mean_of(folders, name, split, measure)
            if y is not None:
                xs.append(j + (i - (len(BARS) - 1) / 2) * width)
                ys.append(y)
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks(range(len(runs)), list(runs.values()), fontsize=8, rotation=15)
    ax.set_ylabel("% of 200 items (mean over seeds)")
    ax.set_ylim(0, 115)
    ax.legend(fontsize=8, ncol=len(BARS), loc="upper center")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    paths = [a for a in sys.argv[2:] if "=" not in a]
    named = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
    main(Path(sys.argv[1]), [Path(p) for p in paths], named)
