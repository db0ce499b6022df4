"""A token cache whose dialogue queries are tokenized as `AqaaSession.listen` hears them -> OUT/tokens.jsonl.

    .venv/bin/python scripts/stream_query_tokens.py --data data/spokenqa --tokens runs/recipe/tokens/tokens.jsonl \
        --out runs/tok-stream [--tokenizer src/aqaa/assets/default/tokenizer] [--piece-ms 120] [--splits train] \
        [--categories voice_understanding]

Why: streamed linguistic tokens agree with the offline ones on only ~52 % of positions (Whisper's encoder sees a
1.92 s window plus 120 ms of look-ahead instead of the whole clip), and an LM trained on offline query tokens loses
~10 points when it listens (reports/decode_quantized.md). Training on this cache shows the LM the queries it will
hear. Every query of every dialogue (train, valid, test) is re-encoded through the streaming encoder in pieces of
`--piece-ms`; the answers and every other file keep their offline tokens (the vocoder reads those). Resumable:
finished files are appended to OUT/streamed.jsonl; the cache is written at the end (temp file + rename).
`--categories` keeps the others' queries offline (e.g. only voice-understanding queries streamed, so that a round
on the cache does not learn recall from streamed earlier turns: session 30).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from tqdm import tqdm

from aqaa.audio.io import load_audio
from aqaa.data.tokens import read_tokens
from aqaa.eval.harness import read_manifest
from aqaa.tokenizer.model import load_default_tokenizer, stream_encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokens", required=True, help="the offline token cache to start from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", default=None, help="default: the shipped one")
    ap.add_argument("--piece-ms", type=int, default=120)
    ap.add_argument("--splits", default="train,valid,test",
                    help="whose queries to re-encode (SFT reads only train's; evals re-encode as they listen)")
    ap.add_argument("--categories", default=None,
                    help="comma-separated dialogue categories to re-encode (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_tokens(Path(args.tokens))
    categories = set(args.categories.split(",")) if args.categories else None
    items = [item for split in args.splits.split(",") for item in read_manifest(data / f"{split}.jsonl")[1]]
    queries = sorted({t["query"]["audio"] for item in items
                      if categories is None or item["category"] in categories for t in item["turns"]})
    if not queries:
        raise SystemExit(f"no queries in splits {args.splits!r} with categories {args.categories!r}")
    progress = out / "streamed.jsonl"
    done = read_tokens(progress)
    tok = load_default_tokenizer(args.tokenizer)
    piece = 16 * args.piece_ms
    with progress.open("a") as f:
        for audio in tqdm([q for q in queries if q not in done], desc="streamed queries"):
            streams = stream_encode(tok, load_audio(data / audio).samples, piece)
            row = {**rows[audio], "linguistic": streams.linguistic.tolist(), "semantic": streams.semantic.tolist()}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[audio] = row
    same = [sum(a == b for a, b in zip(done[q]["linguistic"], rows[q]["linguistic"]))
            / max(len(rows[q]["linguistic"]), 1) for q in queries]
    rows.update({q: done[q] for q in queries})  # not what an earlier run into OUT streamed beyond the filter
    tmp = out / "tokens.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    os.replace(tmp, out / "tokens.jsonl")
    print(json.dumps({"queries": len(queries), "rows": len(rows), "out": str(out / "tokens.jsonl"),
                      "linguistic_agreement_with_offline": round(sum(same) / len(same), 3)}))


if __name__ == "__main__":
    main()
