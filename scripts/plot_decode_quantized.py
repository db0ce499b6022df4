"""Plot of reports/decode_quantized/: smollm2's decode speed per step dtype beside its text answers -> PNG.

    .venv/bin/python scripts/plot_decode_quantized.py reports/decode_quantized reports/decode_quantized/smollm2.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TOKENS_PER_AUDIO_S = 45.8  # 5 audio tokens per 120 ms group + 2 text tokens per 4 groups


def main() -> None:
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    steps = ["float16", "int8", "int4"]
    speed = {s: json.loads((folder / f"lm_speed_smollm2_{s}.json").read_text()) for s in steps}
    probe = {s: json.loads((folder / f"text_probe_{s}.json").read_text())
             for s in steps}
    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(steps))
    for k, (threads, color) in enumerate([("threads_1", "#8fb3d9"), ("threads_2", "#2f6db3")]):
        vals = [speed[s][threads]["tokens_per_s_median"] for s in steps]
        ax.bar([i + (k - 0.5) * 0.38 for i in x], vals, 0.38, color=color, label=f"{threads[-1]} torch thread(s)")
    ax.axhline(TOKENS_PER_AUDIO_S / 0.3, color="crimson", ls="--", lw=1, label="LM alone at RTF 0.3")
    ax.axhline(TOKENS_PER_AUDIO_S, color="gray", ls=":", lw=1, label="real time (RTF 1)")
    ax.set_xticks(list(x), [f"{s}\ntext answers {100 * probe[s]['correct']:.1f} %" for s in steps])
    ax.set_ylabel("decode tokens / s (2-core CPU)")
    ax.set_title("SmolLM2-135M backbone: one-token steps by weight dtype")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
