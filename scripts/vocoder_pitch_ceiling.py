"""Is the vocoder's pitch head what keeps control clips from keeping their median F0? -> reports/vocoder_pitch/.

    .venv/bin/python scripts/vocoder_pitch_ceiling.py --vocoder src/aqaa/assets/default/vocoder \
        --tokens runs/lm-shipped/tokens/tokens.jsonl --data data/spokenqa

Resynthesizes the held-out control renderings of `bench_vocoder.py` four ways: the F0 head's own F0 and voicing (what
ships), the source's Praat F0 and voicing driving the harmonic source (an oracle pitch head), and each half of the
oracle. If the oracle passes no more clips than the head, the failures are in the filter and excitation, not in the
pitch the tokens carry. Two more modes widen the head's voiced runs by one frame (`head_dilated`: both edges,
`head_late`: after each run): the output loses source-voiced frames at the edges of voiced runs, so would voicing
them more keep the medians?
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench_vocoder import criteria_kept, load_bench, prosody_kept, summarize_prosody

from aqaa.audio.measure import F0_REF, f0_contour, f0_track
from aqaa.tokenizer.interleave import GROUP_SAMPLES
from aqaa.vocoder.model import FRAMES_PER_GROUP, TokenVocoder

MODES = ("head", "oracle", "oracle_voicing", "oracle_f0", "head_dilated", "head_late")


@torch.inference_mode()
def resynthesize(voc: TokenVocoder, tokens: dict, src: np.ndarray, mode: str) -> np.ndarray:
    lin, sem = torch.tensor(tokens["linguistic"])[None], torch.tensor(tokens["semantic"])[None]
    g = lin.shape[1] // 2
    f0 = None
    if mode.startswith("head_"):
        log_f0, logit = voc.pitch(voc.hidden(lin, sem)[0])
        voiced = (logit > 0).float()
        after = torch.nn.functional.pad(voiced[:, :-1], (1, 0))  # frame t voiced if t - 1 is
        before = torch.nn.functional.pad(voiced[:, 1:], (0, 1))
        voiced = torch.maximum(voiced, after if mode == "head_late" else torch.maximum(after, before))
        f0 = (torch.exp(F0_REF + 0.5 * log_f0), voiced)
    elif mode != "head":
        x = np.pad(src, (0, max(0, g * GROUP_SAMPLES - len(src))))[: g * GROUP_SAMPLES]
        log_f0, voiced = (torch.tensor(a)[None] for a in f0_track(x, g * FRAMES_PER_GROUP))
        head_log_f0, logit = voc.pitch(voc.hidden(lin, sem)[0])
        if mode == "oracle_voicing":
            log_f0 = head_log_f0
        if mode == "oracle_f0":
            voiced = (logit > 0).float()
        f0 = (torch.exp(F0_REF + 0.5 * log_f0), voiced)
    return voc(lin, sem, f0=f0)[0].numpy()[: int(round(tokens["duration_s"] * voc.cfg.sample_rate))]


def voicing_lost(src: np.ndarray, out: np.ndarray) -> dict[str, int]:
    """Source-voiced frames the output leaves unvoiced (Praat), at a voiced run's first or last two frames or
    inside it, and frames the output voices where the source does not: where the voicing mismatch sits."""
    fs, fo = f0_contour(src, 16_000), f0_contour(out, 16_000)
    n = min(len(fs), len(fo))
    vs, vo = fs[:n] > 0, fo[:n] > 0
    padded = np.pad(vs, 2)
    near_edge = ~(padded[:-4] & padded[1:-3] & padded[3:-1] & padded[4:])  # an unvoiced frame within 2 either side
    lost = vs & ~vo
    return {"lost_at_edges": int((lost & near_edge).sum()), "lost_inside": int((lost & ~near_edge).sum()),
            "added": int((vo & ~vs).sum())}


def main() -> None:
    args, data, tokens, voc, _, control = load_bench("reports/vocoder_pitch/ceiling", 1)
    results = {}
    for mode in MODES:
        pros, lost = [], {}
        for row in control:
            src = sf.read(data / row["audio"], dtype="float32")[0]
            out = resynthesize(voc, tokens[row["audio"]], src, mode)
            pros.append(prosody_kept(row, src, out))
            for k, v in voicing_lost(src, out).items():
                lost[k] = lost.get(k, 0) + v
        results[mode] = {**summarize_prosody(pros), **lost,
                         "failing": [p["audio"] for p in pros if not all(criteria_kept(p))]}
        print(mode, {k: results[mode][k] for k in ("f0_within_1st", "all_three", "voiced_kept_median", *lost)},
              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"vocoder": args.vocoder, "clips": len(control), **results},
                                                   indent=1))
    rows = [f"| {m} | {r['f0_within_1st'] * r['items']:.0f} / {r['items']} | {r['all_three']} / {r['items']} | "
            f"{r['voiced_kept_median']} | {r['lost_at_edges']} / {r['lost_inside']} | {r['added']} |"
            for m, r in results.items()]
    out.with_suffix(".md").write_text("\n".join([
        f"# Pitch-head ceiling of `{args.vocoder}` ({len(control)} held-out control renderings)", "",
        "What drives the harmonic source: `head` = the F0 head's F0 and voicing (shipped); `oracle` = the source's "
        "Praat F0 and voicing; `oracle_voicing` = Praat voicing with the head's F0; `oracle_f0` = Praat F0 with the "
        "head's voicing; `head_dilated` / `head_late` = the head's F0 and voicing, each voiced run one frame longer at "
        "both ends / at its end.", "",
        "| pitch | median F0 within 1 st | all three | source voiced frames kept (median) | source voiced frames "
        "lost: at run edges / inside (all clips) | frames voiced only in the output |", "|---|---|---|---|---|---|",
        *rows, ""]))


if __name__ == "__main__":
    main()
