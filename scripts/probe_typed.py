"""Does the LM answer from words alone? Typed knowledge and reasoning questions, train vs held-out phrasings.

    .venv/bin/python scripts/probe_typed.py --model runs/heard-typed/sft/model [--model ...] --per-type 6 \
        --out reports/hearing_data/typed_probe.json

Each question is given as text alone (`aqaa.lm.format.typed_turn`, written as the model's reading writes it: no
audio, no reading errors) and answered greedily; the answer's text channel is judged by `contains_answer`. Questions
are drawn per question type from the train phrasings and from the held-out (test-only) ones with the same seed, so
the two columns separate "cannot retrieve the answer" from "cannot read a new phrasing". Only the text is generated
(the answer's audio stops a few groups after its last text token), so a model takes a minute or two.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from tqdm import tqdm

from aqaa.data.spokenqa import HELD_OUT, QUESTION_TYPES
from aqaa.eval.text import contains_answer
from aqaa.lm.format import typed_turn
from aqaa.lm.generate import Generator, Sampling
from aqaa.lm.model import AudioLM


def answer_text(gen: Generator, lm: AudioLM, question: str) -> str:
    """The greedy text channel of the answer to a typed question (generation stops once the text has ended)."""
    v = lm.vocab
    state = gen.feed(gen.new_state(), [v.ctrl["bos"], *typed_turn(v, lm.reading_ids(question, snap=False)),
                                       v.ctrl["assistant"]])
    text, quiet = [], 0
    for ev in gen.answer(state):
        if ev.kind == "text":
            text, quiet = text + ev.ids, 0
        elif ev.kind == "group":
            quiet += 1
            if quiet > 5:  # the text runs ahead of the audio by one rhythm step (4 groups)
                break
    return v.decode_text(text)


def probe(model_dir: str, per_type: int, seed: int) -> dict:
    lm = AudioLM.load(model_dir)
    gen = Generator(lm, Sampling(text_temperature=0.0, max_groups=120))
    rng, rows = random.Random(seed), []
    qtypes = [q for q in QUESTION_TYPES.values() if q.category in ("knowledge", "reasoning")]
    for qt in tqdm(qtypes, desc=Path(model_dir).parent.name or model_dir):
        for _ in range(per_type):
            for split, phrasings in (("train", qt.phrasings[:-HELD_OUT]), ("held_out", qt.phrasings[-HELD_OUT:])):
                _, turn = qt.make(rng, rng.choice(phrasings))
                out = answer_text(gen, lm, turn.query)
                rows.append({"category": qt.category, "qtype": qt.name, "phrasing": split, "question": turn.query,
                             "answer": out, "correct": contains_answer(out, turn.accepted)})
    summary = {}
    for cat in ("knowledge", "reasoning"):
        for split in ("train", "held_out"):
            sel = [r["correct"] for r in rows if r["category"] == cat and r["phrasing"] == split]
            summary[f"{cat}/{split}"] = f"{sum(sel)} / {len(sel)}"
    return {"model": model_dir, "summary": summary, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--per-type", type=int, default=6, help="questions per question type and phrasing split")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="reports/hearing_data/typed_probe.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = [probe(m, args.per_type, args.seed) for m in args.model]
    for r in results:
        print(r["model"], json.dumps(r["summary"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)


if __name__ == "__main__":
    main()
