"""What would a pretrained text backbone bring? SmolLM2-135M-Instruct answers SpokenQA's questions from their *text*.

    .venv/bin/python scripts/probe_backbone_text.py --manifest data/spokenqa/test.jsonl \
        --out reports/default_model/session28/backbone_text_test.json [--model DIR] [--shots 0|K --train T]

The bundled `smollm2` preset starts the LM from SmolLM2-135M-Instruct (`aqaa.lm.smollm2`). Before a GPU trains it,
this measures what the backbone knows on its own: each knowledge / reasoning / multi-turn item is given as a chat
(earlier turns with their reference answers, then the question; no audio, no hearing errors), answered greedily,
and judged by the eval's own `judge_answer`. Speech control and voice understanding need the audio and are left
out. Also counted: the knowledge / reasoning items whose answer no training dialogue says (new sums, differences:
only a model that composes answers gets these; the shipped LM, from audio, 0 of 30 on the test split).
`--shots K` prefixes K training dialogues of the same question type (the answer form), `--model` takes a fine-tuned
copy (a folder of `save_pretrained`, e.g. from `scripts/finetune_backbone_text.py`). `--step int4` answers through
the engine's own one-token step (`aqaa.lm.decode.LlamaDecoder`, weights packed in that dtype) instead of
transformers' generate: what quantized steps cost in answers.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

from aqaa.eval.harness import read_manifest
from aqaa.eval.judge import judge_answer
from aqaa.eval.text import normalize
from aqaa.lm.decode import STEP_DTYPES, LlamaDecoder
from aqaa.lm.smollm2 import load_smollm2

CATEGORIES = ("knowledge", "reasoning", "multi_turn")


def chat_of(item: dict) -> list[dict]:
    """The dialogue as chat messages: earlier turns with their reference answers, then the question."""
    messages = []
    for turn in item.get("context") or []:
        messages += [{"role": "user", "content": turn["text"]}, {"role": "assistant", "content": turn["answer_text"]}]
    return messages + [{"role": "user", "content": item["text"]}]


def shots_for(item: dict, pool: dict[str, list[dict]], k: int, rng: random.Random) -> list[dict]:
    same = pool.get(item["qtype"], [])
    messages = []
    for ex in rng.sample(same, min(k, len(same))):
        messages += chat_of(ex)[-1:] + [{"role": "assistant", "content": ex["answer_text"]}]
    return messages


@torch.inference_mode()
def answer(model, tok, messages: list[dict], max_new_tokens: int = 32) -> str:
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@torch.inference_mode()
def answer_stepwise(decoder, tok, messages: list[dict], max_new_tokens: int = 32) -> str:
    """Greedy answer through the engine's decoder: the prompt through the modules, then packed one-token steps."""
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    cache, out = decoder.new_cache(), []
    logits = decoder.forward(list(ids), cache)
    while len(out) < max_new_tokens:
        token = int(logits.argmax())
        if token == tok.eos_token_id:
            break
        out.append(token)
        logits = decoder.forward([token], cache)
    return tok.decode(out, skip_special_tokens=True).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="", help="a fine-tuned copy (save_pretrained folder); default: the bundled one")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--train", default="data/spokenqa/train.jsonl", help="the shots and the trained answers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", default="hf", choices=["hf", *STEP_DTYPES],
                    help="hf: transformers' generate; else the engine's step with weights packed in that dtype")
    args = ap.parse_args()

    torch.set_num_threads(2)
    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, tok = AutoModelForCausalLM.from_pretrained(args.model).eval(), AutoTokenizer.from_pretrained(args.model)
    else:
        model, tok = load_smollm2()
    decoder = None if args.step == "hf" else LlamaDecoder(model).pack(STEP_DTYPES[args.step])
    _, items = read_manifest(args.manifest)
    items = [it for it in items if it["category"] in CATEGORIES]
    train = read_manifest(args.train)[1]
    trained_answers = {normalize(t["answer"]["text"]) for ex in train for t in ex["turns"]}
    pool: dict[str, list[dict]] = collections.defaultdict(list)
    for ex in train if args.shots else []:
        if ex["category"] in CATEGORIES and not ex.get("context"):
            pool[ex["qtype"]].append(ex)
    rng, rows, t0 = random.Random(args.seed), [], time.time()
    for it in tqdm(items, desc="typed questions"):
        messages = shots_for(it, pool, args.shots, rng) + chat_of(it)
        text = answer(model, tok, messages) if decoder is None else answer_stepwise(decoder, tok, messages)
        rows.append({"id": it["id"], "category": it["category"], "qtype": it["qtype"], "question": it["text"],
                     "accepted": it["answer"], "said": text,
                     "correct": bool(judge_answer(it, text, text)["answer_correct"]),
                     "answer_in_training": normalize(it["answer_text"]) in trained_answers})
    by_cat = {c: [r["correct"] for r in rows if r["category"] == c] for c in CATEGORIES}
    by_type = collections.defaultdict(list)
    for r in rows:
        by_type[r["qtype"]].append(r["correct"])
    new = [r["correct"] for r in rows if r["category"] != "multi_turn" and not r["answer_in_training"]]
    summary = {
        "model": args.model or "SmolLM2-135M-Instruct (bundled)", "manifest": args.manifest, "shots": args.shots,
        "step": args.step,
        "n": len(rows), "correct": round(sum(r["correct"] for r in rows) / max(len(rows), 1), 3),
        "by_category": {c: {"n": len(v), "correct": round(sum(v) / max(len(v), 1), 3)} for c, v in by_cat.items()},
        "answer_not_in_training": f"{sum(new)}/{len(new)}",
        "by_qtype": {q: f"{sum(v)}/{len(v)}" for q, v in sorted(by_type.items())},
        "seconds": round(time.time() - t0, 1), "machine": "2-core CPU", "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
