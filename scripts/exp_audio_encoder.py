"""Pilot: does a small bidirectional encoder over the *heard* audio let the causal LM hear the words?

    .venv/bin/python scripts/exp_audio_encoder.py --base runs/gpu-h100/long_stage1_fp16 --out runs/exp-enc \
        [--steps 400] [--control]   # --control: the same loop without the encoder

Why: a 2-layer BiGRU CTC probe reads the linguistic tokens at 11 % CER on held-out speech (reports/tokenizer.md),
while the backbone's own ASR stays at WER 0.46-0.80: the tokens carry the words, the causal LM does not read them.
Here every audio block the model *hears* (a user turn, or an ASR document's audio) gets a residual BiGRU over its
token embeddings (zero-initialised output, so training starts from the base model); blocks the model *speaks*
stay plain and causal. Encoded positions carry no loss (a bidirectional state would see the next token).
Same data, mixture, batches (seed, step) and schedule as an ASR-heavy continuation of stage 1; then the hearing
probe of scripts/probe_asr.py (WER, transcript NLL with and without the audio, entity recall) on test queries and
held-out hearing sentences, through the same forward. A script, not the recipe: it changes no library code.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_asr import entity_heard, load_queries, transcript_nll  # noqa: E402

from aqaa.data.tokens import load_tokens  # noqa: E402
from aqaa.eval.text import wer  # noqa: E402
from aqaa.lm.format import document  # noqa: E402
from aqaa.lm.model import AudioLM  # noqa: E402
from aqaa.train.lm import batch_plan, build_parts, collate  # noqa: E402

MIX = {"text": 0.2, "asr": 0.6, "tts": 0.2}


class HeardAudioEncoder(nn.Module):
    """Residual BiGRU over the embeddings of each heard audio block."""

    def __init__(self, dim: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.gru(x[None])[0][0])


def heard_spans(row: list[int], c: dict) -> list[slice]:
    """Audio blocks the model hears: after `<|user|>`, or followed by `<|asr|>` (an ASR document's input)."""
    spans = []
    for i, t in enumerate(row):
        if t != c["audio_start"] or c["audio_end"] not in row[i:]:
            continue
        end = row.index(c["audio_end"], i)
        after = row[end + 1] if end + 1 < len(row) else None
        if (i > 0 and row[i - 1] == c["user"]) or after == c["asr"]:
            spans.append(slice(i + 1, end))
    return spans


def embed(lm: AudioLM, enc: HeardAudioEncoder | None, ids: torch.Tensor) -> torch.Tensor:
    x = lm.model.get_input_embeddings()(ids)
    if enc is None:
        return x
    rows = []
    for b, row in enumerate(ids.tolist()):
        xb = x[b]
        for span in heard_spans(row, lm.vocab.ctrl):
            if span.stop > span.start:
                xb = torch.cat([xb[: span.start], enc(xb[span]), xb[span.stop:]])
        rows.append(xb)
    return torch.stack(rows)


def logits_of(lm: AudioLM, enc, ids: torch.Tensor) -> torch.Tensor:
    return lm.model(inputs_embeds=embed(lm, enc, ids)).logits


def train(lm: AudioLM, enc, parts: dict, steps: int, lr: float, seed: int, log: Path) -> None:
    params = list(lm.model.parameters()) + (list(enc.parameters()) if enc is not None else [])
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = 20
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    sizes = {k: len(v) for k, v in parts.items()}
    c, pad = lm.vocab.ctrl, lm.vocab.ctrl["pad"]
    lm.model.train()
    with log.open("w") as fh:
        for step in tqdm(range(steps), desc="encoder" if enc is not None else "control"):
            batch = collate([parts[n][i] for n, i in batch_plan(sizes, MIX, 16, seed, step)], pad, 768)
            labels = batch["labels"].clone()
            if enc is not None:  # encoded positions see their successors: no loss there
                for b, row in enumerate(batch["input_ids"].tolist()):
                    for span in heard_spans(row, c):
                        labels[b, span] = -100
            logits = logits_of(lm, enc, batch["input_ids"])[:, :-1]
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                               ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if (step + 1) % 10 == 0:
                fh.write(json.dumps({"step": step + 1, "loss": round(loss.item(), 4)}) + "\n")
                fh.flush()
    lm.model.eval()


@torch.inference_mode()
def probe(lm: AudioLM, enc, queries: list[dict], tokens) -> dict:
    v, c = lm.vocab, lm.vocab.ctrl
    text_ok = torch.zeros(v.size, dtype=torch.bool)
    text_ok[: v.text_size] = True
    text_ok[list(c.values())] = False
    text_ok[c["eos"]] = True
    rows = []
    for q in tqdm(queries, desc="probe"):
        tok = tokens[q["audio"]]
        audio = v.audio_group_ids(tok["linguistic"], tok["semantic"])
        ids = document(v, "asr", [], audio).ids[:-1]
        out: list[int] = []
        while len(out) < 40:  # greedy, whole forward per token (short sequences; no cache needed for a probe)
            logits = logits_of(lm, enc, torch.tensor([ids + out]))[0, -1].masked_fill(~text_ok, float("-inf"))
            t = int(logits.argmax())
            if t == c["eos"]:
                break
            out.append(t)
        hyp = v.decode_text(out)
        nll = [transcript_nll(lm, a, q["text"], lambda x: logits_of(lm, enc, x)) for a in (audio, [])]
        rows.append({"id": q["id"], "text": q["text"], "heard": hyp, "wer": wer(q["text"], hyp), "nll": nll[0],
                     "prior_nll": nll[1], "entity_heard": entity_heard(q, hyp)})
    ent = [r["entity_heard"] for r in rows if r["entity_heard"] is not None]
    mean = lambda k: round(statistics.mean(r[k] for r in rows), 3)  # noqa: E731
    return {"n": len(rows), "wer": mean("wer"), "transcript_nll": mean("nll"), "prior_nll": mean("prior_nll"),
            "audio_worth_nats": round(mean("prior_nll") - mean("nll"), 3),
            "entity_recall": round(sum(ent) / len(ent), 3) if ent else None, "n_entity": len(ent),
            "examples": rows[:10]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="runs/gpu-h100/long_stage1_fp16")
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--tokens", default="runs/tokens/tokens.jsonl")
    ap.add_argument("--out", default="runs/exp-enc")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--control", action="store_true", help="the same loop without the encoder")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out) / ("control" if args.control else "encoder")
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    tokens = load_tokens(args.tokens, data)
    lm = AudioLM.load(args.base)
    enc = None if args.control else HeardAudioEncoder(lm.cfg.hidden)
    t0 = time.perf_counter()
    if args.steps:
        parts = build_parts(data, tokens, lm.vocab, lm.cfg.rhythm)
        train(lm, enc, parts, args.steps, args.lr, 0, out / "metrics.jsonl")
    report = {"base": args.base, "steps": args.steps, "encoder": enc is not None,
              "train_s": round(time.perf_counter() - t0, 1)}
    for source in ("queries", "hearing"):
        report[source] = probe(lm, enc, load_queries(data, tokens, source, "test", args.limit), tokens)
        print(source, {k: v for k, v in report[source].items() if k != "examples"}, flush=True)
    (out / "probe.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
