"""Can the pretrained backbone *compose* SpokenQA answers? Fine-tune SmolLM2-135M-Instruct on the dialogues' text.

    .venv/bin/python scripts/finetune_backbone_text.py --train data/spokenqa/train.jsonl --steps 150 \
        --out runs/bb-text-ft

The shipped from-scratch LM recalls training answers word for word and answers none of the test questions whose
answer no training dialogue has (`scripts/answer_forms.py`, session 27). This trains the `smollm2` preset's
backbone on the *same* dialogues as text only (earlier turns, question -> answer; loss on the answer), so
`scripts/probe_backbone_text.py --model OUT` then shows whether a pretrained backbone learns the task in a way that
reaches new answers, before any GPU time is spent on its audio stages. Plain loop (AdamW, cosine, batch of whole
dialogues); the checkpoint is written once at the end with `save_pretrained` (safetensors).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

from aqaa.eval.harness import read_manifest
from aqaa.lm.smollm2 import load_smollm2
from probe_backbone_text import CATEGORIES, chat_of  # the same chat the probe asks (scripts/ is on the path)


def example(tok, item: dict) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat and labels that keep only the final answer (-100 elsewhere)."""
    messages = chat_of(item)
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full = tok.apply_chat_template(messages + [{"role": "assistant", "content": item["answer_text"]}],
                                   tokenize=True, return_dict=True)["input_ids"]
    return full, [-100] * len(prompt) + full[len(prompt):]


def keep_layers(model, n: int) -> None:
    """Drop decoder layers in place, keeping the first n-1 and the last: a faster backbone for a 2-core decode."""
    layers = model.model.layers
    kept = [*list(layers)[: n - 1], layers[-1]]
    for i, layer in enumerate(kept):
        layer.self_attn.layer_idx = i
    model.model.layers = torch.nn.ModuleList(kept)
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="data/spokenqa/train.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-layers", type=int, default=0,
                    help="keep the first N-1 decoder layers and the last (0: all)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    model, tok = load_smollm2()
    if args.keep_layers:
        keep_layers(model, args.keep_layers)
    model.train()
    data = [example(tok, it) for it in read_manifest(args.train)[1] if it["category"] in CATEGORIES]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warm_cosine = lambda s: min(1.0, (s + 1) / 10) * 0.5 * (1 + math.cos(math.pi * s / args.steps))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warm_cosine)
    rng, log, t0 = random.Random(args.seed), [], time.time()
    for step in tqdm(range(args.steps), desc="fine-tune"):
        batch = rng.sample(data, args.batch)
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [tok.eos_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        log.append({"step": step + 1, "loss": round(loss.item(), 4), "s": round(time.time() - t0, 1)})
        if (step + 1) % 10 == 0:
            print(json.dumps(log[-1]), flush=True)
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "train_log.json").write_text(json.dumps({"args": vars(args), "examples": len(data), "log": log}, indent=0))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)


if __name__ == "__main__":
    main()
