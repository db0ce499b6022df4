"""What a fine-tune without audio in its batches does to the audio rows of a tied-embedding LM.

    .venv/bin/python scripts/exp_text_only_drift.py --data data/spokenqa --tokens runs/recipe/tokens/tokens.jsonl \
        --out runs/drift --steps 100 [--base src/aqaa/assets/default/lm] [--arms typed_wd typed_nowd mixed_wd]

Session 20 fine-tuned a model on typed questions alone (`mix={"typed":1.0}`) and its spoken answers collapsed
(text-audio WER 0.15 -> 2.0). Two suspects: AdamW's weight decay shrinking the audio rows no batch uses, or the
tied output head, whose audio rows still get a gradient at every text position (push those logits down) that Adam
turns into full-size steps however small it is. Each arm continues SFT from `--base` for `--steps` steps; the
report compares every row group (text / linguistic / semantic rows of the tied embedding) with the base: relative
change of the rows (||W - W0|| / ||W0||), mean row norm ratio, and mean cosine of each row to its old self.
Assemble a model from an arm's `sft/model` to hear what it does (`aqaa eval`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aqaa.lm.model import AudioLM
from aqaa.train.lm import stage_config, train_stage

ARMS = {
    "typed_wd": ['mix={"typed":1.0}', "weight_decay=0.1"],
    "typed_nowd": ['mix={"typed":1.0}', "weight_decay=0.0"],
    "mixed_wd": ['mix={"dialogue":0.5,"typed":0.5}', "weight_decay=0.1"],
    "sft_wd": ["weight_decay=0.1"],  # the control: more of SFT's own mixture, same schedule
}


def row_groups(lm: AudioLM) -> dict[str, slice]:
    v = lm.vocab
    (l_lo, l_hi), (s_lo, s_hi) = v.l_range, v.s_range
    return {"text": slice(0, l_lo), "linguistic": slice(l_lo, l_hi), "semantic": slice(s_lo, s_hi)}


def drift(base: torch.Tensor, new: torch.Tensor) -> dict[str, float]:
    cos = torch.nn.functional.cosine_similarity(base, new, dim=1)
    return {"relative_change": round(float((new - base).norm() / base.norm()), 4),
            "row_norm_ratio": round(float((new.norm(dim=1) / base.norm(dim=1)).mean()), 4),
            "row_cosine": round(float(cos.mean()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=str(Path(__file__).resolve().parents[1] / "src/aqaa/assets/default/lm"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = ap.parse_args()
    out = Path(args.out)
    base = AudioLM.load(args.base)
    w0 = base.model.get_input_embeddings().weight.detach().clone()
    groups = row_groups(base)
    report = {"base": args.base, "steps": args.steps, "arms": {}}
    for arm in args.arms:
        folder = out / arm
        start = folder / "stage3" / "model"  # SFT starts from its previous stage's model: the base, linked
        start.parent.mkdir(parents=True, exist_ok=True)
        if not start.exists():
            start.symlink_to(Path(args.base).resolve())
        cfg = stage_config("sft", base.cfg.name, [f"steps={args.steps}", "ckpt_every=50", *ARMS[arm]])
        model_dir = train_stage(cfg, args.data, args.tokens, folder)
        w = AudioLM.load(model_dir).model.get_input_embeddings().weight.detach()
        report["arms"][arm] = {"overrides": ARMS[arm], "model": str(model_dir),
                               **{g: drift(w0[s], w[s]) for g, s in groups.items()}}
        print(arm, json.dumps(report["arms"][arm]))
        (out / "drift.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
