"""Semantic-codec settings vs codebook usage, short runs on the same data -> reports/semantic_usage.json.

    .venv/bin/python scripts/exp_semantic_usage.py --data data/spokenqa [--files 1200] [--steps 400] [--only NAME ...]
        [--linguistic runs/tok.work/linguistic.safetensors  (only for settings with the rate head)]

Each setting trains a fresh codec for `steps` on the same training files and is then measured on held-out speech
(valid split): distinct codes used, usage perplexity, dead codes, and the reconstruction L1 of the log-mel.
Why: quantizer choices and usage losses have knobs whose effect on dead codes must be measured, not guessed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from aqaa.tokenizer.health import codebook_health
from aqaa.tokenizer.model import PRESETS, DualTokenizer, TokenizerConfig
from aqaa.train.common import Metrics, apply_overrides
from aqaa.train.tokenizer import TokenizerTrainConfig, semantic_data, train_semantic, training_wavs

SETTINGS = {
    "no_entropy": ["entropy_weight=0"],
    "mean_only_t0.05": ["entropy_weight=0.1", "entropy_temperature=0.05", "entropy_token_term=false"],
    "mean_only_t0.25_w0.02": ["entropy_weight=0.02", "entropy_temperature=0.25", "entropy_token_term=false"],
    "symmetric": ["semantic.preserve_symmetry=true"],
    "symmetric_noise0.5": ["semantic.preserve_symmetry=true", "semantic.noise_dropout=0.5"],
    "vq_cosine_d8": ["semantic.quantizer=vq"],
    "vq_euclid_d8": ["semantic.quantizer=vq", "semantic.cosine=false"],
    "vq_cosine_d8_batch32": ["semantic.quantizer=vq", "batch=32"],
    "vq_cosine_d16": ["semantic.quantizer=vq", "semantic.codebook_dim=16"],
}


def main() -> None:
    from dataclasses import asdict

    from accelerate import Accelerator

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--linguistic", default=None, help="a fitted linguistic.safetensors (for the rate target)")
    ap.add_argument("--files", type=int, default=1200)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default="reports/semantic_usage.json")
    args = ap.parse_args()
    data_dir = Path(args.data)
    rng = np.random.default_rng(0)
    train_wavs = list(rng.permutation(training_wavs(data_dir))[: args.files])
    held_wavs = training_wavs(data_dir, ("valid",))
    tok = DualTokenizer(TokenizerConfig.from_dict(asdict(PRESETS["default"])))
    if args.linguistic:
        tok.linguistic.load_state_dict(load_file(args.linguistic))
    train, held = semantic_data(tok, train_wavs), semantic_data(tok, held_wavs)
    acc = Accelerator(cpu=True)
    results = {}
    for name, over in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        import copy

        torch.manual_seed(0)
        sem_cfg = apply_overrides(copy.deepcopy(PRESETS["default"].semantic),
                                  [o.removeprefix("semantic.") for o in over if o.startswith("semantic.")])
        tok.semantic = type(tok.semantic)(sem_cfg)
        cfg = apply_overrides(TokenizerTrainConfig(steps=args.steps, ckpt_every=10**9, log_every=50),
                              [o for o in over if not o.startswith("semantic.")])
        with tempfile.TemporaryDirectory() as work:
            train_semantic(tok, train, cfg, Path(work), Metrics(Path(work) / "m.jsonl"), acc)
        codec = tok.semantic.eval()
        codes, l1 = [], []
        with torch.no_grad():
            for mel, *_ in held:
                out, idx = codec(mel[None])
                codes.append(idx[0].numpy())
                l1.append(float((out[0, :80] - (mel - codec.mel_mean) / codec.mel_std).abs().mean()))
        results[name] = {"settings": over, **codebook_health(codes, tok.cfg.semantic.codes),
                         "mel_l1": round(float(np.mean(l1)), 4)}
        print(name, results[name], flush=True)
    out = Path(args.out)
    old = json.loads(out.read_text())["results"] if out.exists() else {}
    out.write_text(json.dumps({"files": args.files, "steps": args.steps, "results": {**old, **results}}, indent=1))


if __name__ == "__main__":
    main()
