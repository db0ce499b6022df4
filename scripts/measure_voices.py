"""Measure each query voice on neutral renderings: median F0 (for voices.VOICES base_f0) and Whisper tiny.en WER.

    .venv/bin/python scripts/measure_voices.py [--n 40]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from aqaa.audio.measure import median_f0
from aqaa.data.check import corpus_wer
from aqaa.data.spokenqa import make_dialogue
from aqaa.data.voices import VOICES, Style, synthesize
from aqaa.eval.asr import transcribe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    rng = random.Random(5)
    texts = [t.query for _ in range(args.n) for t in make_dialogue(rng, "train").turns][: args.n]
    rows = {}
    for name in VOICES:
        renders = [synthesize(name, t, Style()) for t in texts]
        f0 = statistics.median(median_f0(x, sr) for x, sr in renders[:10])
        wer = corpus_wer(texts, [transcribe(x, sr) for x, sr in renders])
        rows[name] = {"base_f0_hz": round(f0, 1), "table_f0_hz": VOICES[name].base_f0, "wer": round(wer, 3)}
        print(name, rows[name], flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
