"""Pilot: does a small bidirectional encoder over the *heard* audio let the causal LM hear the words?

    .venv/bin/python scripts/exp_audio_encoder.py --base runs/gpu-h100/long_stage1_fp16 --out runs/exp-enc \
        [--steps 400] [--control]   # --control: the same loop without the encoder

Why: a 2-layer BiGRU CTC probe reads the linguistic tokens at 11 % CER on held-out speech (reports/tokenizer.md),
while the backbone's own ASR stays at WER 0.46-0.80: the tokens carry the words, the causal LM does not read them.
Here every audio block the model *hears* (a user turn, or an ASR document's audio) gets a residual BiGRU over its
token embeddings (`aqaa.lm.heard`, now in the library as `lm.heard_encoder=128`; zero-initialised output, so
training starts from the base model); blocks the model *speaks* stay plain and causal. Encoded positions carry no
loss (a bidirectional state would see the next token).
Same data, mixture, batches (seed, step) and schedule as an ASR-heavy continuation of stage 1; then the hearing
probe of scripts/probe_asr.py (WER, transcript NLL with and without the audio, entity recall) on test queries and
held-out hearing sentences, through the same forward. A script, not the recipe: an A/B harness.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import jiwer
import torch
import torch.nn as nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_asr import entity_heard, load_queries, transcript_nll  # noqa: E402

from aqaa.data.tokens import load_tokens  # noqa: E402
from aqaa.eval.text import normalize, wer  # noqa: E402
from aqaa.lm.format import document  # noqa: E402
from aqaa.lm.heard import heard_ctc_loss, heard_ctc_transcript, mask_heard_labels  # noqa: E402
from aqaa.lm.model import AudioLM  # noqa: E402
from aqaa.train.lm import batch_plan, build_parts, collate, stage_config, warm_heard_encoder  # noqa: E402

MIX = {"text": 0.2, "asr": 0.6, "tts": 0.2}


def logits_of(lm: AudioLM, ids: torch.Tensor) -> torch.Tensor:
    return lm.model(input_ids=ids).logits


def train(lm: AudioLM, parts: dict, steps: int, lr: float, seed: int, log: Path) -> None:
    params = list(lm.model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = 20
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    sizes = {k: len(v) for k, v in parts.items()}
    pad = lm.vocab.ctrl["pad"]
    lm.model.train()
    with log.open("w") as fh:
        for step in tqdm(range(steps), desc="encoder" if lm.cfg.heard_encoder else "control"):
            batch = collate([parts[n][i] for n, i in batch_plan(sizes, MIX, 16, seed, step)], pad, 768)
            labels = mask_heard_labels(lm.model, batch["input_ids"], batch["labels"])  # no-op for the control
            logits = logits_of(lm, batch["input_ids"])[:, :-1]
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                               ignore_index=-100)
            ctc = heard_ctc_loss(lm.model, batch["input_ids"], lm.vocab.decode_text) if lm.cfg.heard_ctc else None
            token_loss = loss.item()
            if ctc is not None:
                loss = loss + lm.cfg.heard_ctc * ctc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if (step + 1) % 10 == 0:
                fh.write(json.dumps({"step": step + 1, "loss": round(token_loss, 4),
                                     **({"ctc": round(ctc.item(), 4)} if ctc is not None else {})}) + "\n")
                fh.flush()
    lm.model.eval()


@torch.inference_mode()
def probe(lm: AudioLM, queries: list[dict], tokens) -> dict:
    v, c = lm.vocab, lm.vocab.ctrl
    text_ok = torch.zeros(v.size, dtype=torch.bool)
    text_ok[: v.text_size] = True
    text_ok[list(c.values())] = False
    text_ok[c["eos"]] = True
    rows, ctc_rows = [], []
    for q in tqdm(queries, desc="probe"):
        tok = tokens[q["audio"]]
        audio = v.audio_group_ids(tok["linguistic"], tok["semantic"])
        ids = document(v, "asr", [], audio).ids[:-1]
        out: list[int] = []
        while len(out) < 40:  # greedy, whole forward per token (short sequences; no cache needed for a probe)
            logits = logits_of(lm, torch.tensor([ids + out]))[0, -1].masked_fill(~text_ok, float("-inf"))
            t = int(logits.argmax())
            if t == c["eos"]:
                break
            out.append(t)
        hyp = v.decode_text(out)
        if lm.cfg.heard_ctc:
            ctc_rows.append((normalize(q["text"]), heard_ctc_transcript(lm.model, audio) or "-"))
        nll = [transcript_nll(lm, a, q["text"], lambda x: logits_of(lm, x)) for a in (audio, [])]
        rows.append({"id": q["id"], "text": q["text"], "heard": hyp, "wer": wer(q["text"], hyp), "nll": nll[0],
                     "prior_nll": nll[1], "entity_heard": entity_heard(q, hyp)})
    ent = [r["entity_heard"] for r in rows if r["entity_heard"] is not None]
    mean = lambda k: round(statistics.mean(r[k] for r in rows), 3)  # noqa: E731
    return {"n": len(rows), "wer": mean("wer"), "transcript_nll": mean("nll"), "prior_nll": mean("prior_nll"),
            "audio_worth_nats": round(mean("prior_nll") - mean("nll"), 3),
            "entity_recall": round(sum(ent) / len(ent), 3) if ent else None, "n_entity": len(ent),
            "encoder_ctc_cer": round(float(jiwer.cer(*map(list, zip(*ctc_rows)))), 3) if ctc_rows else None,
            "encoder_ctc_examples": ctc_rows[:5],
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
    ap.add_argument("--ctc", type=float, default=0.0, help="weight of the encoder's auxiliary CTC loss")
    ap.add_argument("--ctc-warmup", type=int, default=0, help="CTC-only steps on the encoder before the LM trains")
    ap.add_argument("--ctc-warmup-lr", type=float, default=2e-3)
    ap.add_argument("--name", default="", help="arm folder name (default: encoder / control)")
    ap.add_argument("--save", action="store_true", help="keep the trained model in the arm folder (model/)")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out) / (args.name or ("control" if args.control else "encoder"))
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    tokens = load_tokens(args.tokens, data)
    lm = AudioLM.load(args.base)
    lm.cfg.heard_ctc = args.ctc
    lm.with_heard_encoder(0 if args.control else 128)
    t0 = time.perf_counter()
    if args.steps:
        parts = build_parts(data, tokens, lm.vocab, lm.cfg.rhythm)
        if args.ctc_warmup:  # the library's warm-up, with this script's batch (16) and seed (0)
            warm_heard_encoder(lm, parts, stage_config("stage1", "default", [
                f"heard_ctc_warmup={args.ctc_warmup}", f"heard_ctc_warmup_lr={args.ctc_warmup_lr}"]), "cpu")
        train(lm, parts, args.steps, args.lr, 0, out / "metrics.jsonl")
    report = {"base": args.base, "steps": args.steps, "encoder": bool(lm.cfg.heard_encoder), "ctc": args.ctc,
              "ctc_warmup": args.ctc_warmup,
              "train_s": round(time.perf_counter() - t0, 1)}
    if args.save:
        lm.save(out / "model")
    for source in ("queries", "hearing"):
        report[source] = probe(lm, load_queries(data, tokens, source, "test", args.limit), tokens)
        print(source, {k: v for k, v in report[source].items() if k != "examples"}, flush=True)
    (out / "probe.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
