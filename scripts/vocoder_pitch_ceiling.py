"""Is the vocoder's pitch head what keeps control clips from keeping their median F0? -> reports/vocoder_pitch/.

    .venv/bin/python scripts/vocoder_pitch_ceiling.py --vocoder src/aqaa/assets/default/vocoder \
        --tokens runs/lm-shipped/tokens/tokens.jsonl --data data/spokenqa

Resynthesizes the held-out control renderings of `bench_vocoder.py` four ways: the F0 head's own F0 and voicing (what
ships), the source's Praat F0 and voicing driving the harmonic source (an oracle pitch head), and each half of the
oracle. If the oracle passes no more clips than the head, the failures are in the filter and excitation, not in the
pitch the tokens carry.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench_vocoder import load_bench, prosody_kept, summarize_prosody

from aqaa.audio.measure import F0_REF, f0_track
from aqaa.tokenizer.interleave import GROUP_SAMPLES
from aqaa.vocoder.model import FRAMES_PER_GROUP, TokenVocoder

MODES = ("head", "oracle", "oracle_voicing", "oracle_f0")


@torch.inference_mode()
def resynthesize(voc: TokenVocoder, tokens: dict, src: np.ndarray, mode: str) -> np.ndarray:
    lin, sem = torch.tensor(tokens["linguistic"])[None], torch.tensor(tokens["semantic"])[None]
    g = lin.shape[1] // 2
    f0 = None
    if mode != "head":
        x = np.pad(src, (0, max(0, g * GROUP_SAMPLES - len(src))))[: g * GROUP_SAMPLES]
        log_f0, voiced = (torch.tensor(a)[None] for a in f0_track(x, g * FRAMES_PER_GROUP))
        head_log_f0, logit = voc.pitch(voc.hidden(lin, sem)[0])
        if mode == "oracle_voicing":
            log_f0 = head_log_f0
        if mode == "oracle_f0":
            voiced = (logit > 0).float()
        f0 = (torch.exp(F0_REF + 0.5 * log_f0), voiced)
    return voc(lin, sem, f0=f0)[0].numpy()[: int(round(tokens["duration_s"] * voc.cfg.sample_rate))]


def main() -> None:
    args, data, tokens, voc, _, control = load_bench("reports/vocoder_pitch/ceiling", 1)
    results = {}
    for mode in MODES:
        pros = [prosody_kept(row, src, resynthesize(voc, tokens[row["audio"]], src, mode))
                for row in control for src in [sf.read(data / row["audio"], dtype="float32")[0]]]
        results[mode] = {**summarize_prosody(pros), "failing": [p["audio"] for p in pros
                                                               if abs(p["f0_st_diff"]) > 1 or abs(p["rms_db_diff"]) > 2
                                                               or abs(p["duration_ratio"] - 1) > 0.1]}
        print(mode, {k: results[mode][k] for k in ("f0_within_1st", "all_three", "voiced_kept_median")}, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"vocoder": args.vocoder, "clips": len(control), **results},
                                                   indent=1))
    rows = [f"| {m} | {r['f0_within_1st'] * r['items']:.0f} / {r['items']} | {r['all_three']} / {r['items']} | "
            f"{r['voiced_kept_median']} |" for m, r in results.items()]
    out.with_suffix(".md").write_text("\n".join([
        f"# Pitch-head ceiling of `{args.vocoder}` ({len(control)} held-out control renderings)", "",
        "What drives the harmonic source: `head` = the F0 head's F0 and voicing (shipped); `oracle` = the source's "
        "Praat F0 and voicing; `oracle_voicing` = Praat voicing with the head's F0; `oracle_f0` = Praat F0 with the "
        "head's voicing.", "",
        "| pitch | median F0 within 1 st | all three | source voiced frames kept (median) |", "|---|---|---|---|",
        *rows, ""]))


if __name__ == "__main__":
    main()
