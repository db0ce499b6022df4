"""Aggregate judged items into report.json, report.md and plots (one or several engines side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CATEGORY_ORDER = ["knowledge", "reasoning", "speech_control", "voice_understanding", "multi_turn"]


def bootstrap_ci(values: list[float], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    arr = np.asarray(values, dtype=float)
    means = arr[rng.integers(0, len(arr), (n, len(arr)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(records: list[dict]) -> dict:
    ok = [r for r in records if "error" not in r]
    cats = sorted({r["category"] for r in records}, key=lambda c: (CATEGORY_ORDER + [c]).index(c))
    per_cat = {}
    for cat in cats:
        vals = [float(r["correct"]) for r in ok if r["category"] == cat]
        lo, hi = bootstrap_ci(vals)
        per_cat[cat] = {"n": len(vals), "errors": sum(1 for r in records if r["category"] == cat and "error" in r),
                        "accuracy": round(float(np.mean(vals)), 4) if vals else None,
                        "ci95": [round(lo, 4), round(hi, 4)]}
    lat = [r["first_audio_ms"] for r in ok if r.get("first_audio_ms") == r.get("first_audio_ms")]
    rtf = [r["rtf"] for r in ok if "rtf" in r]
    wers = [r["text_audio_wer"] for r in ok if r.get("text_audio_wer") is not None]
    controls = [r["control"] for r in ok if "control" in r]
    per_axis = {}
    for axis in ("rate", "volume", "pitch"):
        rows = [c for c in controls if c["axis"] == axis]
        if rows:
            per_axis[axis] = {"n": len(rows), "direction_ok": round(float(np.mean([c["direction_ok"] for c in rows])), 4)}
    overall = [float(r["correct"]) for r in ok]
    chained = [r for r in ok if "context_named" in r]
    named = [r for r in chained if r["context_named"]]
    return {
        "items": len(records), "errors": len(records) - len(ok),
        "overall_accuracy": round(float(np.mean(overall)), 4) if overall else None,
        "overall_ci95": [round(x, 4) for x in bootstrap_ci(overall)],
        "per_category": per_cat,
        "first_audio_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1)}
        if lat else None,
        "rtf_p50": round(float(np.median(rtf)), 4) if rtf else None,
        "text_audio_wer_mean": round(float(np.mean(wers)), 4) if wers else None,
        "text_audio_wer_ci95": [round(x, 4) for x in bootstrap_ci(wers)] if wers else None,
        "control_direction": per_axis,
        # multi-turn items split by the engine's own earlier answer: did it name the thing to recall (heard the
        # first turn), and of those, was the last answer right (recalled it)
        "multi_turn_chain": {"n": len(chained), "first_turn_named": round(len(named) / len(chained), 4),
                             "recalled_when_named": round(float(np.mean([r["correct"] for r in named])), 4)
                             if named else None} if chained else None,
    }


def write_report(out_dir: str | Path, runs: dict[str, list[dict]], title: str = "aqaa eval") -> dict:
    """`runs`: engine name -> item records. Writes report.json, report.md and PNG plots into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {engine: summarize(recs) for engine, recs in runs.items()}
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plots(out, runs, summary)
    engines = list(summary)
    cats = [c for c in CATEGORY_ORDER if any(c in s["per_category"] for s in summary.values())]
    lines = [f"# {title}", "", "| category | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for cat in cats:
        cells = []
        for e in engines:
            c = summary[e]["per_category"].get(cat)
            cells.append(f"{100 * c['accuracy']:.1f}% [{100 * c['ci95'][0]:.0f}-{100 * c['ci95'][1]:.0f}] (n={c['n']})"
                         if c and c["accuracy"] is not None else "-")
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(summary[e]) for e in engines) + " |")
    row("overall", lambda s: f"{100 * s['overall_accuracy']:.1f}%" if s["overall_accuracy"] is not None else "-")
    row("first audio p50 / p95", lambda s: f"{s['first_audio_ms']['p50']:.0f} / {s['first_audio_ms']['p95']:.0f} ms"
        if s["first_audio_ms"] else "-")
    row("RTF p50", lambda s: f"{s['rtf_p50']:.3f}" if s["rtf_p50"] is not None else "-")
    row("text-audio WER", lambda s: f"{s['text_audio_wer_mean']:.3f}" if s["text_audio_wer_mean"] is not None else "-")
    for axis in ("rate", "volume", "pitch"):
        row(f"control direction: {axis}", lambda s: f"{100 * s['control_direction'][axis]['direction_ok']:.0f}% "
            f"(n={s['control_direction'][axis]['n']})" if axis in s["control_direction"] else "-")
    row("multi-turn: earlier answer named it", lambda s: f"{100 * s['multi_turn_chain']['first_turn_named']:.0f}% "
        f"(n={s['multi_turn_chain']['n']})" if s.get("multi_turn_chain") else "-")
    row("multi-turn: recalled when named", lambda s: f"{100 * s['multi_turn_chain']['recalled_when_named']:.0f}%"
        if s.get("multi_turn_chain") and s["multi_turn_chain"]["recalled_when_named"] is not None else "-")
    row("errors", lambda s: str(s["errors"]))
    lines += ["", "Accuracy: the Whisper tiny.en transcript of the spoken answer contains an accepted answer (numbers "
              "normalized) and, for reasoning and knowledge, names no other number, date, place or thing; speech "
              "control also needs the measured change vs the engine's neutral rendering "
              "(rate x1.1, level 3 dB, pitch 1 semitone). Brackets: bootstrap 95% CI.", "",
              "![per category](categories.png)", "", "![latency](latency.png)", "", "![control](control.png)"]
    lines += _question_type_table(runs)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return summary


def _question_type_table(runs: dict[str, list[dict]]) -> list[str]:
    """Correct / judged per question type (the manifest's `qtype`): which kinds of question the score comes from,
    e.g. a frequent answer template that happens to fit many items of one type."""
    counts: dict[tuple[str, str], dict[str, list[int]]] = {}
    for engine, recs in runs.items():
        for r in recs:
            if "error" not in r and r.get("qtype"):
                counts.setdefault((r["category"], r["qtype"]), {}).setdefault(engine, []).append(int(r["correct"]))
    if not counts:
        return []
    order = sorted(counts, key=lambda k: ((CATEGORY_ORDER + [k[0]]).index(k[0]), k[1]))
    lines = ["", "By question type (correct / judged):", "", "| category | question type | " + " | ".join(runs) + " |",
             "|---|---|" + "---|" * len(runs)]
    for cat, qtype in order:
        cells = [f"{sum(v)} / {len(v)}" if (v := counts[cat, qtype].get(e)) else "-" for e in runs]
        lines.append(f"| {cat} | {qtype} | " + " | ".join(cells) + " |")
    return lines


def _plots(out: Path, runs: dict[str, list[dict]], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(summary)
    cats = [c for c in CATEGORY_ORDER if any(c in s["per_category"] for s in summary.values())]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(engines), 1)
    for i, e in enumerate(engines):
        acc = [summary[e]["per_category"].get(c, {}).get("accuracy") or 0 for c in cats]
        ci = [summary[e]["per_category"].get(c, {}).get("ci95", [0, 0]) for c in cats]
        err = np.array([[a - lo, hi - a] for a, (lo, hi) in zip(acc, ci)]).T
        ax.bar(np.arange(len(cats)) + i * width, acc, width, yerr=np.nan_to_num(err), label=e, capsize=3)
    ax.set_xticks(np.arange(len(cats)) + width * (len(engines) - 1) / 2, [c.replace("_", "\n") for c in cats])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "categories.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for e, recs in runs.items():
        lat = [r["first_audio_ms"] for r in recs if "first_audio_ms" in r]
        if lat:
            ax.hist(lat, bins=30, alpha=0.6, label=e)
    ax.set_xlabel("first audio after end of query (ms)")
    ax.set_ylabel("items")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    units = {"rate": "duration ratio vs neutral", "volume": "dB vs neutral", "pitch": "semitones vs neutral"}
    for ax, axis in zip(axes, ("rate", "volume", "pitch")):
        for e, recs in runs.items():
            pts = [(r["control"]["direction"], r["control"]["effect"]) for r in recs
                   if "control" in r and r["control"]["axis"] == axis and r["control"]["effect"] is not None]
            if pts:
                ax.scatter([d for d, _ in pts], [v for _, v in pts], alpha=0.6, label=e)
        ax.set_title(axis)
        ax.set_ylabel(units[axis])
        ax.axhline(1.0 if axis == "rate" else 0.0, color="gray", lw=0.8)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "control.png", dpi=100)
    plt.close(fig)
