"""Vocoder benchmark -> reports/vocoder.{json,md}.

    .venv/bin/python scripts/bench_vocoder.py --vocoder runs/voc46/model --tokens runs/tokens46/tokens.jsonl \
        --data data/spokenqa [--n 60] [--splits train]

- intelligibility: Whisper tiny.en WER of resynthesized held-out (valid + test) assistant answers, beside the WER
  of the original Piper audio and of a Griffin-Lim baseline on the same tokens (the vocoder's magnitudes, phase
  by 32 Griffin-Lim iterations);
- prosody kept on control renderings (slow/fast/loud/soft/high/low answers): duration within 10 %, RMS within 2 dB,
  median F0 within 1 semitone of the source, with the F0 criterion split by how stable the source's own median is
  (`median_f0_swing`: a two-register phrase's median moves by semitones for 40 ms of voicing);
- `--splits train` measures the training split's clips instead (what the vocoder was fitted on), to tell a failure
  to generalize from one the vocoder makes on its own training data;
- speed: streaming one 120 ms group per step on this CPU: x real time, step latency p50/p95, first chunk (after
  one untimed warm-up step, as `AqaaSession` warms up at load; the cold first step is reported beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from aqaa.audio.measure import f0_contour, measure, median_f0_swing, paired_f0, semitones
from aqaa.data.tokens import read_tokens
from aqaa.eval.asr import transcribe
from aqaa.eval.text import wer
from aqaa.vocoder.model import TokenVocoder


def held_out(data: Path, tokens: dict, splits: tuple[str, ...] = ("valid", "test")) -> tuple[list[dict], list[dict]]:
    """(plain answers with text, control-styled answers with their style axis) of `splits` (held out: valid + test),
    joe voice."""
    plain, control = [], []
    for split in splits:
        for line in (data / f"{split}.jsonl").read_text().splitlines():
            for turn in json.loads(line)["turns"]:
                a = turn["answer"]
                if a["voice"] != "joe" or a["audio"] not in tokens:
                    continue
                row = {"audio": a["audio"], "text": a["text"]}
                (control if turn.get("control") else plain).append({**row, "control": turn.get("control")})
    return plain, control


def griffin_lim(voc: TokenVocoder, lin, sem, duration_s: float) -> np.ndarray:
    import librosa

    with torch.no_grad():
        spec = voc.spectra(torch.as_tensor(lin)[None].long(), torch.as_tensor(sem)[None].long())[0]
    mag = spec.abs()[0].numpy()
    y = librosa.griffinlim(mag, n_iter=32, hop_length=voc.cfg.hop, win_length=voc.cfg.n_fft, n_fft=voc.cfg.n_fft,
                           center=False, random_state=0)
    y = y[voc.cfg.n_fft - voc.cfg.hop:]
    return y[: int(duration_s * 16_000)].astype(np.float32)


def prosody_kept(row: dict, src: np.ndarray, out: np.ndarray) -> dict:
    """One control clip's resynthesis vs its source: duration ratio, RMS and median-F0 differences, and the
    frame-paired diagnostics (pitch error on frames voiced in both, share of the source's voiced frames kept), and
    how far the source's own median F0 swings for 40 ms of voicing (`median_f0_swing`)."""
    ms, mo = measure(src, 16_000), measure(out, 16_000)
    shift, kept = paired_f0(src, out, 16_000)
    return {"audio": row["audio"], "axis": row["control"]["axis"], "f0_src_hz": ms.f0_hz, "f0_out_hz": mo.f0_hz,
            "duration_ratio": mo.speech_s / max(ms.speech_s, 1e-3), "rms_db_diff": mo.rms_db - ms.rms_db,
            "f0_st_diff": semitones(mo.f0_hz, ms.f0_hz) if ms.f0_hz == ms.f0_hz and mo.f0_hz == mo.f0_hz
            else float("nan"),
            "f0_paired_st": shift, "voiced_kept": kept, "f0_src_swing_st": median_f0_swing(f0_contour(src, 16_000))}


def criteria_kept(p: dict) -> tuple[bool, bool, bool]:
    """One clip's three criteria of the issue: duration within 10 %, RMS within 2 dB, median F0 within 1 st (an
    unvoiced output or source, F0 nan, fails)."""
    return abs(p["duration_ratio"] - 1) <= 0.10, abs(p["rms_db_diff"]) <= 2.0, abs(p["f0_st_diff"]) <= 1.0


def summarize_prosody(pros: list[dict]) -> dict:
    """Pass rates of the issue's three criteria (`criteria_kept`) and the diagnostics beside them."""
    ok_dur, ok_rms, ok_f0 = (list(c) for c in zip(*map(criteria_kept, pros)))
    stable = [p.get("f0_src_swing_st", 0.0) <= 1.0 for p in pros]  # nan (unvoiced source) counts as unstable
    return {
        "items": len(pros),
        "duration_within_10pct": round(float(np.mean(ok_dur)), 3),
        "rms_within_2db": round(float(np.mean(ok_rms)), 3),
        "f0_within_1st": round(float(np.mean(ok_f0)), 3),
        "duration_ratio_median": round(statistics.median(p["duration_ratio"] for p in pros), 3),
        "rms_db_diff_median": round(statistics.median(p["rms_db_diff"] for p in pros), 2),
        "f0_st_diff_median": round(float(np.nanmedian([p["f0_st_diff"] for p in pros])), 2),
        "f0_paired_within_1st": round(float(np.mean([abs(p["f0_paired_st"]) <= 1.0 for p in pros])), 3),
        "f0_paired_st_median": round(float(np.nanmedian([p["f0_paired_st"] for p in pros])), 2),
        "voiced_kept_median": round(float(np.median([p["voiced_kept"] for p in pros])), 3),
        "all_three": int(sum(d and r and f for d, r, f in zip(ok_dur, ok_rms, ok_f0))),
        "f0_stable_clips": int(sum(stable)),
        "f0_within_1st_stable": int(sum(f for f, st in zip(ok_f0, stable) if st)),
        "f0_within_1st_unstable": int(sum(f for f, st in zip(ok_f0, stable) if not st)),
    }


def load_bench(out: str, threads: int, **extra_args) -> tuple:
    """(args, data folder, token cache, vocoder, plain answers, control renderings) from the command line's
    --vocoder / --tokens / --data / --out (`extra_args`: name -> argparse keywords)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocoder", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--out", default=out)
    ap.add_argument("--splits", default="valid,test", help="whose clips: held out (valid,test) or train")
    for name, kw in extra_args.items():
        ap.add_argument(name, **kw)
    args = ap.parse_args()
    torch.set_num_threads(threads)
    data, tokens = Path(args.data), read_tokens(Path(args.tokens))
    return args, data, tokens, TokenVocoder.load(args.vocoder), *held_out(data, tokens, tuple(args.splits.split(",")))


def main() -> None:
    args, data, tokens, voc, plain, control = load_bench(
        "reports/vocoder", 2, **{"--n": {"type": int, "default": 60, "help": "plain answers for the WER"}})
    plain = plain[: args.n]

    # streaming speed, one group per step; first, before Whisper's threads exist (measured: after transcribing,
    # the same stepping ran 3-4x slower in this process)
    steps, total_audio, total_time, first = [], 0.0, 0.0, []
    t0 = time.perf_counter()  # the process's first step pays one-off allocations; a server pays them at load
    warm = tokens[plain[0]["audio"]]
    voc.start().step(warm["linguistic"][:2], warm["semantic"][:3])
    cold_ms = 1000 * (time.perf_counter() - t0)
    for row in plain[:30]:
        t = tokens[row["audio"]]
        s = voc.start()
        lin, sem = t["linguistic"], t["semantic"]
        for g in range(len(lin) // 2):
            t0 = time.perf_counter()
            s.step(lin[2 * g: 2 * g + 2], sem[3 * g: 3 * g + 3])
            dt = time.perf_counter() - t0
            steps.append(dt)
            total_time += dt
            if g == 0:
                first.append(dt)
        t0 = time.perf_counter()
        s.flush()
        total_time += time.perf_counter() - t0
        total_audio += len(lin) // 2 * 0.12
    speed = {"x_real_time_streaming": round(total_audio / total_time, 1),
             "step_ms_p50": round(1000 * float(np.percentile(steps, 50)), 2),
             "step_ms_p95": round(1000 * float(np.percentile(steps, 95)), 2),
             "first_chunk_ms_p50": round(1000 * float(np.median(first)), 2),
             "first_chunk_ms_max": round(1000 * float(np.max(first)), 2),
             "cold_first_step_ms": round(cold_ms, 2)}

    refs, hyp = [], {"piper": [], "vocoder": [], "griffin_lim": []}
    for row in plain:
        t = tokens[row["audio"]]
        src = sf.read(data / row["audio"], dtype="float32")[0]
        refs.append(row["text"])
        hyp["piper"].append(transcribe(src))
        hyp["vocoder"].append(transcribe(voc.synthesize(t["linguistic"], t["semantic"], t["duration_s"])))
        hyp["griffin_lim"].append(transcribe(griffin_lim(voc, t["linguistic"], t["semantic"], t["duration_s"])))
    wers = {k: round(float(np.mean([wer(r, h) for r, h in zip(refs, v)])), 4) for k, v in hyp.items()}

    pros = []
    for row in control:
        t = tokens[row["audio"]]
        src = sf.read(data / row["audio"], dtype="float32")[0]
        pros.append(prosody_kept(row, src, voc.synthesize(t["linguistic"], t["semantic"], t["duration_s"])))
    prosody = summarize_prosody(pros)

    report = {"vocoder": args.vocoder, "config": json.loads((Path(args.vocoder) / "vocoder.json").read_text()),
              "params_m": round(sum(p.numel() for p in voc.parameters()) / 1e6, 2), "wer_items": len(plain),
              "wer": wers, "prosody": prosody, "speed_2_cores": speed, "prosody_clips": pros,
              "examples": [{"ref": r, **{k: v[i] for k, v in hyp.items()}} for i, r in enumerate(refs[:8])]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = [f"# Vocoder benchmark (`{args.vocoder}`, {report['params_m']} M params, 2-core CPU)", "",
          f"Whisper tiny.en WER on {len(plain)} assistant answers ({args.splits}):", "",
          "| audio | WER |", "|---|---|"]
    md += [f"| {k} | {v:.3f} |" for k, v in wers.items()]
    md += ["", f"Prosody kept on {len(pros)} control renderings ({args.splits}; resynthesis vs source):", "",
           "| criterion | pass rate | median |", "|---|---|---|",
           f"| duration within 10 % | {prosody['duration_within_10pct']:.3f} | ratio {prosody['duration_ratio_median']} |",
           f"| RMS within 2 dB | {prosody['rms_within_2db']:.3f} | {prosody['rms_db_diff_median']} dB |",
           f"| median F0 within 1 st | {prosody['f0_within_1st']:.3f} | {prosody['f0_st_diff_median']} st |",
           f"| all three | {prosody['all_three']} / {len(pros)} | |", "",
           "Diagnostics: the median over frames voiced in both of the per-frame pitch difference (a pitch error), "
           "and the share of the source's voiced frames the resynthesis voices too (a voicing error, which moves "
           "the median F0 of a phrase spoken in two registers):", "",
           "| diagnostic | pass rate | median |", "|---|---|---|",
           f"| frame-paired F0 within 1 st | {prosody['f0_paired_within_1st']:.3f} | "
           f"{prosody['f0_paired_st_median']} st |",
           f"| source voiced frames kept | | {prosody['voiced_kept_median']} |",
           f"| median F0 within 1 st, clips whose source median is stable | "
           f"{prosody['f0_within_1st_stable']} / {prosody['f0_stable_clips']} | |",
           f"| median F0 within 1 st, the other clips | {prosody['f0_within_1st_unstable']} / "
           f"{len(pros) - prosody['f0_stable_clips']} | |",
           "",
           "(Stable: the source's own median F0 moves by at most 1 st when 4 voiced frames, 40 ms, are added or "
           "dropped. A phrase spoken in two registers has its median in the gap between them, and a few frames of "
           "voicing more or less swing it by semitones though every frame's pitch is kept.)",
           "",
           "Failing clips:", "", "| clip | axis | F0 src -> out (Hz) | st | paired st | voiced kept | source median "
           "swing, 40 ms (st) | dB | duration |",
           "|---|---|---|---|---|---|---|---|---|",
           *[f"| {p['audio']} | {p['axis']} | {p['f0_src_hz']:.0f} -> {p['f0_out_hz']:.0f} | {p['f0_st_diff']:+.2f} | "
             f"{p['f0_paired_st']:+.2f} | {p['voiced_kept']:.2f} | {p['f0_src_swing_st']:.2f} | "
             f"{p['rms_db_diff']:+.1f} | "
             f"{p['duration_ratio']:.2f} |"
             for p in pros if not all(criteria_kept(p))],
           "", "Streaming speed (one 120 ms group per step):", "", "| measure | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in speed.items()]
    md += ["", "Examples (reference / piper / vocoder / griffin-lim):", ""]
    md += [f"- {e['ref']} / {e['piper']} / {e['vocoder']} / {e['griffin_lim']}" for e in report["examples"]]
    md += ["", f"![prosody]({out.with_suffix('.png').name})"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    plot_prosody(pros, out.with_suffix(".png"))
    print("\n".join(md))


def plot_prosody(pros: list[dict], path: Path) -> None:
    """Median F0 of resynthesis vs source per control clip (the 1-semitone band shaded), and the RMS differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    src = np.array([p["f0_src_hz"] for p in pros], float)
    res = np.array([p["f0_out_hz"] for p in pros], float)
    lo, hi = np.nanmin(src) * 0.8, np.nanmax(src) * 1.25
    grid = np.linspace(lo, hi, 50)
    a.fill_between(grid, grid * 2 ** (-1 / 12), grid * 2 ** (1 / 12), alpha=0.25, label="within 1 semitone")
    for axis, marker in (("pitch", "o"), ("volume", "s"), ("rate", "^")):
        m = np.array([p["axis"] == axis for p in pros])
        a.scatter(src[m], res[m], marker=marker, label=axis)
    a.set(xlabel="source median F0 (Hz)", ylabel="resynthesis median F0 (Hz)", xlim=(lo, hi), ylim=(lo, hi * 1.3))
    a.legend()
    b.hist([p["rms_db_diff"] for p in pros], bins=15)
    b.axvspan(-2, 2, alpha=0.2)
    b.set(xlabel="RMS difference, resynthesis - source (dB)", ylabel="clips")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
