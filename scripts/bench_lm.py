"""Decode speed of the backbone with the KV cache and the answer grammar (issue: >= 125 tokens/s on 2 cores).

    .venv/bin/python scripts/bench_lm.py [--model runs/lm/sft/model] [--preset default] [--out reports/lm_speed.json]

`--step` picks how one-token steps run: through the modules, or packed float32 / float16 copies (float16 is the
engine's default, `aqaa/lm/decode.py`). Without --model a fresh model of the preset is timed (speed does not depend
on the weights; the grammar keeps the output well formed either way). Each run prefills a 2.4 s query (100 audio
tokens) and decodes 60 groups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from aqaa.lm.decode import decoder_for
from aqaa.lm.format import prompt
from aqaa.lm.generate import Generator, Sampling
from aqaa.lm.model import PRESETS, AudioLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--groups", type=int, default=60)
    ap.add_argument("--out", default="reports/lm_speed.json")
    ap.add_argument("--step", default="float16", choices=["modules", "float32", "float16", "int8", "int4"],
                    help="one-token steps through the modules, or packed copies of this dtype (as `aqaa chat`)")
    args = ap.parse_args()
    if args.model:
        lm = AudioLM.load(args.model)
    else:
        lines = [f"Sentence number {i} says something plain." for i in range(200)]
        lm = AudioLM.create(PRESETS[args.preset], lines)
    lm.model.eval()
    decoder = decoder_for(lm.model)
    if args.step != "modules":
        decoder.pack(getattr(torch, args.step))
    v = lm.vocab
    query = v.audio_group_ids([i % 1024 for i in range(40)], [i % 4096 for i in range(60)])
    ids = prompt(v, [], query)
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rates, prefill_ms, first_group_ms = [], [], []
        for run in range(args.runs + 1):
            gen = Generator(lm, Sampling(max_groups=args.groups, max_text_tokens=24, seed=run, text_temperature=0.8),
                            decoder=decoder)
            t0 = time.perf_counter()
            state = gen.feed(gen.new_state(), ids)
            t1 = time.perf_counter()
            n, first = 0, None
            for ev in gen.answer(state):
                n += len(ev.ids)
                if ev.kind == "group" and first is None:
                    first = time.perf_counter()
            t2 = time.perf_counter()
            if run == 0:
                continue  # warm-up
            rates.append(n / (t2 - t1))
            prefill_ms.append(1000 * (t1 - t0))
            first_group_ms.append(1000 * ((first or t2) - t1))
        results[f"threads_{threads}"] = {
            "tokens_per_s_median": round(statistics.median(rates), 1),
            "tokens_per_s_min": round(min(rates), 1),
            "prefill_ms_median": round(statistics.median(prefill_ms), 1),
            "first_group_ms_median": round(statistics.median(first_group_ms), 1),
        }
    report = {"preset": lm.cfg.name, "params_m": round(lm.n_params() / 1e6, 2), "model": args.model,
              "step": args.step, "prompt_tokens": len(ids), "runs": args.runs, "machine": "2-core CPU, torch "
              + torch.__version__, **results, "real_time_needs_tokens_per_s": 41.7}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
