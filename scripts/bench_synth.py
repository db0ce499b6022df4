"""Synthesis throughput of `aqaa data synth`: hours of audio rendered per hour of wall time.

    .venv/bin/python scripts/bench_synth.py --n 100 --workers 2 [--out reports/bench_synth.json]

Counts every rendered file (queries, answers, the neutral / opposite control renderings, spoken sentences);
measurement (Praat F0, RMS) is included, as it is part of synthesis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import soundfile as sf

from aqaa.data.synth import synth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--sentences", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synth(tmp, args.n, args.seed, sentences=args.sentences, text_lines=10, workers=args.workers)
        wall = time.perf_counter() - t0
        audio_s = sum(sf.info(str(p)).duration for p in Path(tmp).rglob("*.wav"))
        files = sum(1 for _ in Path(tmp).rglob("*.wav"))
    result = {
        "n_dialogues": args.n, "workers": args.workers, "wav_files": files, "audio_hours": round(audio_s / 3600, 4),
        "wall_s": round(wall, 1), "hours_of_audio_per_hour": round(audio_s / wall, 2),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
