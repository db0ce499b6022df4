"""The dual- vs single-codebook experiment -> reports/codebooks.{json,md,png}.

    .venv/bin/python scripts/exp_codebooks.py --tokens runs/tokens46/tokens.jsonl --data data/spokenqa [--steps 600]

Same data, same compute: three LMs of the same size are trained for the same number of steps and batch size on
the same SpokenQA queries, each reading the query through one representation of the audio:
  dual       L L S S S per 120 ms (41.7 tokens/s)
  linguistic L L per 120 ms (16.7 tokens/s)
  semantic   S S S per 120 ms (25 tokens/s)
Training mix: next-token prediction on the audio itself (queries and spoken sentences) and the task (audio query ->
the answer's text). Measured on the held-out test split:
  - bits per second of audio: the model's cross-entropy on the audio tokens of test queries, summed per second
    (token rates differ, so per-token losses are not comparable; per-second ones are);
  - answer accuracy of the text answer (greedy), overall and per category.
The seed (Step-Audio-AQAA) reports that the dual codebook beats either single one; this measures whether it holds
here, at this scale.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aqaa.data.tokens import read_tokens
from aqaa.eval.text import contains_answer
from aqaa.lm.format import Sequence
from aqaa.lm.model import AudioLM, LMConfig
from aqaa.train.lm import _items, collate, lr_at, StageConfig

RATES = {"dual": 1000 / 24, "linguistic": 1000 / 60, "semantic": 25.0}


def stream_ids(lm: AudioLM, row: dict, variant: str) -> list[int]:
    v, lin, sem = lm.vocab, row["linguistic"], row["semantic"]
    if variant == "dual":
        return v.audio_group_ids(lin, sem)
    if variant == "linguistic":
        return [v.l_id(c) for c in lin]
    return [v.s_id(c) for c in sem]


def examples(lm: AudioLM, data: Path, tokens: dict, variant: str, split: str):
    """(audio-only sequences, task sequences with their item) for one split."""
    v, c = lm.vocab, lm.vocab.ctrl
    audio_docs, tasks = [], []
    for item in _items(data, split):
        turn = item["turns"][-1]
        if item["category"] == "multi_turn" or turn["query"]["audio"] not in tokens:
            continue
        q = stream_ids(lm, tokens[turn["query"]["audio"]], variant)
        audio_docs.append(Sequence().add([c["bos"], c["audio_start"]], False).add(q + [c["audio_end"]], True))
        seq = Sequence().add([c["bos"], c["user"], c["audio_start"], *q, c["audio_end"], c["end_turn"],
                              c["assistant"]], False)
        seq.add(v.encode_text(turn["answer"]["text"]) + [c["end_turn"]], True)
        tasks.append((seq, item, len(q)))
    if split == "train":
        sentences = data / "pretrain" / "sentences.jsonl"
        for line in sentences.read_text().splitlines():
            s = json.loads(line)
            if s["split"] == "train" and s["audio"] in tokens:
                a = stream_ids(lm, tokens[s["audio"]], variant)
                audio_docs.append(Sequence().add([c["bos"], c["audio_start"]], False).add(a + [c["audio_end"]], True))
    return audio_docs, tasks


def run_variant(variant: str, args, text_lines: list[str]) -> dict:
    data, tokens = Path(args.data), read_tokens(Path(args.tokens))
    cfg = LMConfig("exp", hidden=args.hidden, layers=args.layers, heads=4, kv_heads=4, intermediate=args.hidden * 3,
                   max_positions=2048, text_vocab=1024)
    lm = AudioLM.create(cfg, text_lines, seed=0)
    train_audio, train_tasks = examples(lm, data, tokens, variant, "train")
    _, test_tasks = examples(lm, data, tokens, variant, "test")
    test_audio = [json.loads(x) for x in (data / "test.jsonl").read_text().splitlines()]
    opt = torch.optim.AdamW(lm.model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    sc = StageConfig(steps=args.steps, warmup=30)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(sc, s))
    pad = lm.vocab.ctrl["pad"]
    lm.model.train()
    t0 = time.perf_counter()
    n_tokens = 0
    for step in tqdm(range(args.steps), desc=variant):
        rng = random.Random(step)
        seqs = [rng.choice(train_audio) if rng.random() < 0.4 else rng.choice(train_tasks)[0]
                for _ in range(args.batch)]
        batch = collate(seqs, pad, 1024)
        n_tokens += int(batch["attention_mask"].sum())
        loss = lm.model(**batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.model.parameters(), 1.0)
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0
    lm.model.eval()
    # bits per second of held-out query audio
    nats, seconds = 0.0, 0.0
    with torch.no_grad():
        for seq, item, n_audio in test_tasks:
            ids = torch.tensor([seq.ids[: 3 + n_audio]])  # <bos> <user> <audio_start> audio
            logits = lm.model(ids).logits[0, 2:-1]
            target = ids[0, 3:]
            nats += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            seconds += n_audio / RATES[variant]
    # answer accuracy (greedy text)
    per_cat: dict[str, list[int]] = {}
    end = lm.vocab.ctrl["end_turn"]
    with torch.no_grad():
        for seq, item, _ in test_tasks:
            if not item["answer"]:
                continue
            prompt_len = len(seq.ids) - sum(seq.loss)
            out = lm.model.generate(torch.tensor([seq.ids[:prompt_len]]), max_new_tokens=24, do_sample=False,
                                    eos_token_id=end, pad_token_id=pad)
            text = lm.vocab.decode_text(out[0, prompt_len:].tolist())
            per_cat.setdefault(item["category"], []).append(int(contains_answer(text, item["answer"])))
    acc = {k: round(float(np.mean(v)), 3) for k, v in sorted(per_cat.items())}
    allv = [x for v in per_cat.values() for x in v]
    return {"variant": variant, "tokens_per_s": round(RATES[variant], 1), "steps": args.steps, "batch": args.batch,
            "train_tokens": n_tokens, "train_s": round(train_s, 1),
            "bits_per_second": round(nats / math.log(2) / seconds, 1),
            "bits_per_token": round(nats / math.log(2) / (seconds * RATES[variant]), 3),
            "answer_accuracy": round(float(np.mean(allv)), 3), "n_answers": len(allv), "by_category": acc}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--out", default="reports/codebooks")
    ap.add_argument("--variants", nargs="+", default=["dual", "linguistic", "semantic"])
    args = ap.parse_args()
    data = Path(args.data)
    text_lines = (data / "pretrain" / "text.txt").read_text().splitlines()
    for item in _items(data, "train"):
        text_lines += [t["answer"]["text"] for t in item["turns"]]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".json")
    results = json.loads(partial.read_text())["results"] if partial.exists() else []
    for variant in args.variants:
        if any(r["variant"] == variant and r["steps"] == args.steps for r in results):
            continue  # resumable per variant
        results.append(run_variant(variant, args, text_lines))
        partial.write_text(json.dumps({"results": results}, indent=1))
    cats = sorted({c for r in results for c in r["by_category"]})
    md = ["# Dual vs single codebook (same data, same steps and batch, same model size)", "",
          f"Model: Llama {args.hidden} hidden x {args.layers} layers; {args.steps} steps of {args.batch} sequences "
          "(40 % audio-only next-token, 60 % audio query -> answer text); held-out SpokenQA test split; 2-core CPU.",
          "", "| stream | tokens/s | bits/s of audio | bits/token | answer acc. | "
          + " | ".join(cats) + " | train s |", "|---" * (6 + len(cats)) + "|"]
    for r in results:
        md.append(f"| {r['variant']} | {r['tokens_per_s']} | {r['bits_per_second']} | {r['bits_per_token']} | "
                  f"{r['answer_accuracy']:.3f} | " + " | ".join(f"{r['by_category'].get(c, float('nan')):.2f}"
                                                            for c in cats) + f" | {r['train_s']:.0f} |")
    md += ["", "Seed's claim (Step-Audio-AQAA): the dual codebook (linguistic + semantic) works better than either "
           "single codebook. See the closing note / README for whether it held here."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["variant"] for r in results]
    axes[0].bar(names, [r["bits_per_second"] for r in results], color="#6a8fc7")
    axes[0].set(title="held-out audio: bits per second", ylabel="bits/s")
    axes[1].bar(names, [r["answer_accuracy"] for r in results], color="#7bb37b")
    axes[1].set(title="answer accuracy (text)", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print("\n".join(md))


if __name__ == "__main__":
    main()
