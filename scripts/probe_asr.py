"""How well does a backbone hear? Its own ASR task (`Generator.transcribe`) on held-out SpokenQA queries.

    .venv/bin/python scripts/probe_asr.py --model runs/recipe-default/lm/stage1/model [--model ...] \
        --data data/spokenqa --tokens runs/tokens/tokens.jsonl --limit 100 --out reports/asr_probe.json

Every answer starts from what the model heard, and knowledge questions hinge on one word (a country, a capital).
Reported per model: greedy WER; the teacher-forced transcript loss with the audio and with the audio left out (the
gap is what the model hears); and *entity recall*, the share of knowledge queries whose named entity (capitalised
words after the first) appears in the transcript. Reads cached tokens; no audio is decoded.

`--source hearing` probes the held-out (valid) hearing sentences instead (`aqaa data synth --hearing`): unseen
sentences in the *training* voices, so the gap to the test queries separates new words from new voices; there
entity recall covers every capitalised word after the first (names, countries, cities, days, months).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from aqaa.data.tokens import load_tokens
from aqaa.eval.text import normalize, wer
from aqaa.lm.format import document
from aqaa.lm.generate import Generator
from aqaa.lm.heard import heard_ctc_transcript
from aqaa.lm.model import AudioLM


def entities(text: str) -> list[str]:
    """Capitalised words after the sentence's first word: the country or city a knowledge query names."""
    words = re.findall(r"[A-Za-z']+", text)[1:]
    return [w for w in words if w[0].isupper() and w != "I"]


def entity_heard(query: dict, hyp: str) -> bool | None:
    """Whether every entity of a knowledge query / hearing sentence is in the transcript (None: it names none)."""
    ents = entities(query["text"]) if query["category"] in ("knowledge", "hearing") else []
    return all(f" {normalize(e)} " in f" {normalize(hyp)} " for e in ents) if ents else None


@torch.inference_mode()
def transcript_nll(lm: AudioLM, audio_ids: list[int], text: str, logits_of=None) -> float:
    """Teacher-forced loss of the true transcript (nats per text token): moves long before greedy output does.
    `logits_of` (ids [1, T] -> logits) replaces the plain forward, e.g. for a model with an extra audio path."""
    doc = document(lm.vocab, "asr", lm.vocab.encode_text(text), audio_ids)
    ids = torch.tensor([doc.ids])
    logits = (logits_of(ids) if logits_of else lm.model(input_ids=ids).logits)[0, :-1].float()
    mask = torch.arange(1, len(doc.ids)) > doc.ids.index(lm.vocab.ctrl["asr"])  # the transcript and its <|eos|>
    return float(torch.nn.functional.cross_entropy(logits[mask], ids[0, 1:][mask]))


def probe(model_dir: str, queries: list[dict], tokens: dict) -> dict:
    lm = AudioLM.load(model_dir)
    gen = Generator(lm)
    ctc = bool(lm.cfg.heard_encoder and lm.cfg.heard_ctc)  # the heard-audio encoder's own character head
    rows, t0 = [], time.perf_counter()
    for q in tqdm(queries, desc=Path(model_dir).parent.name or model_dir):
        row = tokens[q["audio"]]
        audio = lm.vocab.audio_group_ids(row["linguistic"], row["semantic"])
        hyp, nll = gen.transcribe(audio), transcript_nll(lm, audio, q["text"])
        prior = transcript_nll(lm, [], q["text"])  # the same transcript with the audio left out
        rows.append({"id": q["id"], "category": q["category"], "text": q["text"], "heard": hyp,
                     "wer": wer(q["text"], hyp), "nll": round(nll, 4), "prior_nll": round(prior, 4),
                     "entities": entities(q["text"]) if q["category"] in ("knowledge", "hearing") else [],
                     "entity_heard": entity_heard(q, hyp)})
        if ctc:
            read = heard_ctc_transcript(lm.model, audio)
            rows[-1].update(ctc=read, ctc_wer=wer(q["text"], read), ctc_entity_heard=entity_heard(q, read))
    by_cat: dict[str, list[float]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(r["wer"])
    ent = [r["entity_heard"] for r in rows if r["entity_heard"] is not None]
    return {"model": model_dir, "n": len(rows), "wer": round(statistics.mean(r["wer"] for r in rows), 3),
            "transcript_nll": round(statistics.mean(r["nll"] for r in rows), 3),
            "prior_nll": round(statistics.mean(r["prior_nll"] for r in rows), 3),
            "wer_by_category": {k: round(statistics.mean(v), 3) for k, v in sorted(by_cat.items())},
            "entity_recall": round(sum(ent) / len(ent), 3) if ent else None, "n_entity_queries": len(ent),
            **(ctc_summary(rows) if ctc else {}),
            "seconds": round(time.perf_counter() - t0, 1), "examples": rows[:12], "rows": rows}


def ctc_summary(rows: list[dict]) -> dict:
    """What the heard-audio encoder's CTC head reads (greedy), beside the LM's own transcript: CER, WER, entities."""
    import jiwer

    ent = [r["ctc_entity_heard"] for r in rows if r["ctc_entity_heard"] is not None]
    return {"ctc_cer": round(float(jiwer.cer([normalize(r["text"]) for r in rows],
                                             [normalize(r["ctc"]) or "-" for r in rows])), 3),
            "ctc_wer": round(statistics.mean(r["ctc_wer"] for r in rows), 3),
            "ctc_entity_recall": round(sum(ent) / len(ent), 3) if ent else None}


def load_queries(data: Path, tokens, source: str = "queries", split: str = "test", limit: int = 100) -> list[dict]:
    """The probe's items: the last query of each SpokenQA item of `split`, or the valid split's hearing sentences."""
    queries = []
    if source == "hearing":
        for line in (data / "pretrain" / "sentences.jsonl").read_text().splitlines():
            s = json.loads(line)
            if s["id"].startswith("hear-") and s["split"] == "valid" and s["audio"] in tokens:
                queries.append({"id": s["id"], "category": "hearing", "audio": s["audio"], "text": s["text"]})
        return queries[:limit]
    for line in (data / f"{split}.jsonl").read_text().splitlines()[:limit]:
        item = json.loads(line)
        q = item["turns"][-1]["query"]  # the question itself (earlier turns of a multi-turn item are statements)
        if q["audio"] in tokens:
            queries.append({"id": item["id"], "category": item["category"], "audio": q["audio"], "text": q["text"]})
    return queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--tokens", default="runs/tokens/tokens.jsonl")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--out", default="reports/asr_probe.json")
    ap.add_argument("--source", choices=["queries", "hearing"], default="queries",
                    help="SpokenQA queries of --split, or the valid split's hearing sentences (training voices)")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = Path(args.data)
    tokens = load_tokens(args.tokens, data)
    queries = load_queries(data, tokens, args.source, args.split, args.limit)
    results = [probe(m, queries, tokens) for m in args.model]
    for r in results:
        print(f"{r['model']}: WER {r['wer']}, transcript NLL {r['transcript_nll']} (no audio {r['prior_nll']}), "
              f"entity recall {r['entity_recall']} "
              f"({r['n_entity_queries']} queries naming one), {r['seconds']} s")
        if "ctc_cer" in r:
            print(f"  encoder CTC head: CER {r['ctc_cer']}, WER {r['ctc_wer']}, entity recall {r['ctc_entity_recall']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"split": args.split, "source": args.source, "n": len(queries), "results": results},
                              indent=1))
    tmp.replace(out)


if __name__ == "__main__":
    main()
