"""How many control clips can *any* resynthesis keep within issue 6's prosody bounds? -> reports/vocoder_pitch/.

    .venv/bin/python scripts/vocoder_copy_ceiling.py --vocoder src/aqaa/assets/default/vocoder \
        --tokens runs/recipe/tokens/tokens.jsonl --data data/spokenqa

Copy synthesis: the held-out control renderings of `bench_vocoder.py` rebuilt by Griffin-Lim (64 iterations) from
their *own* STFT magnitude at the token vocoder's framing, no tokens in the way; beside it the token vocoder from the
clip's tokens, and Griffin-Lim on that vocoder's own magnitudes (which isolates its excitation path). Whatever a full-information resynthesis fails is a limit of the measure (e.g. Praat's voicing on a
two-register phrase moving its median F0), not of what the tokens carry. (The pretrained HiFi-GAN of OFFLINE.md was
tried as a second copy synthesis: from librosa log-mels of 8 common settings its output pitch was 5-22 st off on a
test clip, so its expected mel is not one of them; left out.)
"""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from bench_vocoder import criteria_kept, griffin_lim, load_bench, prosody_kept, summarize_prosody

MODES = ("token_vocoder", "griffin_lim_tokens", "griffin_lim_copy")


def griffin_lim_copy(src: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    mag = np.abs(librosa.stft(src, n_fft=n_fft, hop_length=hop, win_length=n_fft))
    y = librosa.griffinlim(mag, n_iter=64, hop_length=hop, win_length=n_fft, n_fft=n_fft, random_state=0)
    return np.pad(y, (0, max(0, len(src) - len(y))))[: len(src)].astype(np.float32)


@torch.inference_mode()
def main() -> None:
    args, data, tokens, voc, _, control = load_bench("reports/vocoder_pitch/copy_ceiling", 2)
    per_mode: dict[str, list[dict]] = {m: [] for m in MODES}
    for i, row in enumerate(control):
        src = sf.read(data / row["audio"], dtype="float32")[0]
        t = tokens[row["audio"]]
        outs = {
            "token_vocoder": voc.synthesize(t["linguistic"], t["semantic"], t["duration_s"]),
            "griffin_lim_tokens": griffin_lim(voc, t["linguistic"], t["semantic"], t["duration_s"]),
            "griffin_lim_copy": griffin_lim_copy(src, voc.cfg.n_fft, voc.cfg.hop),
        }
        for m, y in outs.items():
            per_mode[m].append(prosody_kept(row, src, y))
        print(f"{i + 1}/{len(control)}", end="\r", flush=True)

    shown = ("f0_st_diff", "f0_paired_st", "voiced_kept", "rms_db_diff", "duration_ratio")
    results = {m: {**summarize_prosody(pros), "failing": {p["audio"]: {k: round(p[k], 2) for k in shown}
                                                           for p in pros if not all(criteria_kept(p))}}
               for m, pros in per_mode.items()}
    failing = {m: set(r["failing"]) for m, r in results.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"vocoder": args.vocoder, "clips": len(control), **results},
                                                   indent=1))
    n = len(control)
    rows = [f"| {m} | {r['duration_within_10pct'] * n:.0f} | {r['rms_within_2db'] * n:.0f} | "
            f"{r['f0_within_1st'] * n:.0f} | **{r['all_three']}** / {n} | {r['f0_paired_within_1st'] * n:.0f} | "
            f"{r['voiced_kept_median']} |" for m, r in results.items()]
    shared = failing["token_vocoder"] & failing["griffin_lim_copy"]
    out.with_suffix(".md").write_text("\n".join([
        f"# Copy-synthesis ceiling of issue 6's prosody criteria ({n} held-out control renderings)", "",
        "Each clip resynthesized three ways and measured as `scripts/bench_vocoder.py` does: `token_vocoder` = "
        f"`{args.vocoder}` from the clip's tokens; `griffin_lim_tokens` = the benchmark's Griffin-Lim baseline: the "
        "same vocoder's magnitudes from the tokens, phase by 32 Griffin-Lim iterations (no harmonic source in the "
        "output); `griffin_lim_copy` = 64 Griffin-Lim iterations on the source's own "
        "STFT magnitude (no tokens).", "",
        "| resynthesis | duration within 10 % | RMS within 2 dB | median F0 within 1 st | all three | "
        "frame-paired F0 within 1 st | source voiced frames kept (median) |", "|---|---|---|---|---|---|---|",
        *rows, "",
        f"Clips the token vocoder fails that the copy synthesis fails too: {len(shared)} of "
        f"{len(failing['token_vocoder'])} ({', '.join(sorted(shared)) or 'none'}).", ""]))
    print(json.dumps({m: {k: r[k] for k in ("all_three", "f0_within_1st", "rms_within_2db")}
                      for m, r in results.items()}))


if __name__ == "__main__":
    main()
