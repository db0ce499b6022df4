"""Does the semantic stream keep absolute level? The codec's own decoder on held-out control answers -> JSON.

    .venv/bin/python scripts/exp_semantic_level.py --tokenizer runs/tok [runs/tok2 ...] --data data/spokenqa \
        [--out reports/semantic_level.json]

Why: the vocoder reads only tokens, so a level the codec's decoder cannot rebuild from them is a level no vocoder
gets back (the VQ-token vocoder missed loud/soft clips, reports/vocoder_context.md). Per held-out control
answer (slow/fast/loud/soft/high/low, valid + test): the speech level in dB of the source log-mel and of the
mel decoded from the semantic codes, each the mean frame power over the frames within 40 dB of the source's
loudest. Reported per axis: decoded within 2 dB of the source, median error, and over all clips the slope of
decoded on source level (1: level kept; 0: every clip decoded at one level). Beside it, the codebook usage on all
held-out renderings (dead codes, perplexity), since the quantizer choice trades one against the other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from aqaa.tokenizer.features import log_mel
from aqaa.tokenizer.health import codebook_health
from aqaa.tokenizer.interleave import pad_to_groups
from aqaa.tokenizer.model import DualTokenizer


def control_answers(data: Path) -> list[dict]:
    rows = []
    for split in ("valid", "test"):
        for line in (data / f"{split}.jsonl").read_text().splitlines():
            for turn in json.loads(line)["turns"]:
                if turn.get("control"):
                    rows += [{"audio": turn[k]["audio"], "axis": turn["control"]["axis"]} for k in ("answer", "opposite")]
    return rows


def usage(tok: DualTokenizer, data: Path) -> dict:
    """Dead codes and usage perplexity of the semantic stream over every valid + test rendering."""
    from aqaa.train.tokenizer import training_wavs

    codes = [tok.encode_semantic(pad_to_groups(sf.read(p, dtype="float32")[0]))
             for p in training_wavs(data, ("valid", "test"))]
    return {"held_out": codebook_health(codes, tok.cfg.semantic.codes)}


def frame_power(log_mel_frames: torch.Tensor) -> torch.Tensor:
    """Power per frame of a natural-log magnitude mel [80, T] -> [T]."""
    return torch.exp(2 * log_mel_frames).sum(0)


@torch.no_grad()
def measure(tok: DualTokenizer, data: Path, rows: list[dict]) -> dict:
    codec = tok.semantic.eval()
    src, dec, axes = [], [], []
    for r in rows:
        x, _ = sf.read(data / r["audio"], dtype="float32")
        mel = log_mel(pad_to_groups(x))
        out = codec.decode(codec.encode(mel[None]))[0, :80] * codec.mel_std + codec.mel_mean
        src_power = frame_power(mel)
        keep = 10 * torch.log10(src_power) > 10 * torch.log10(src_power.max()) - 40
        src.append(float(10 * torch.log10(src_power[keep].mean())))
        dec.append(float(10 * torch.log10(frame_power(out)[keep].mean())))
        axes.append(r["axis"])
    src, dec = np.array(src), np.array(dec)
    err = dec - src
    res = {"clips": len(rows), "slope_decoded_on_source": round(float(np.polyfit(src, dec, 1)[0]), 3)}
    for axis in sorted(set(axes)):
        e = err[np.array(axes) == axis]
        res[axis] = {"n": int(len(e)), "within_2_db": round(float((np.abs(e) <= 2).mean()), 3),
                     "median_error_db": round(float(np.median(e)), 2)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", nargs="+", required=True)
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--out", default="reports/semantic_level.json")
    args = ap.parse_args()
    data = Path(args.data)
    rows = control_answers(data)
    report = {}
    for folder in args.tokenizer:
        tok = DualTokenizer.load(folder)
        s = tok.cfg.semantic
        report[folder] = {"quantizer": s.quantizer + ("" if s.quantizer == "fsq" else f" cosine={s.cosine}"),
                          **measure(tok, data, rows), **usage(tok, data)}
        print(folder, report[folder], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
