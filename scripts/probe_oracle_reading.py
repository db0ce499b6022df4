"""Ceiling of reading the query: `aqaa eval` with every user turn's reading replaced by its true text.

    .venv/bin/python scripts/probe_oracle_reading.py --model runs/model-heard-hide3-s0 \
        --manifest data/spokenqa/test.jsonl --out runs/oracle-hide3 --categories knowledge reasoning

A model with `lm.heard_reading` answers from its audio and from what its CTC head reads. If it answers badly even
when the reading is the exact question (normalized as the CTC head writes it, cased as the model's reading is),
better hearing cannot help and the LM's reading-to-answer mapping is the gap; if it answers well, the reading's
errors are. The audio is the real one;
everything else (engine, judge, report) is `aqaa eval`'s. Turns the manifest does not script (the judge's neutral
"Say <phrase>." rendering of control items) keep the model's own reading.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tqdm import tqdm

from aqaa.eval.harness import evaluate_item, read_manifest, with_items
from aqaa.eval.report import write_report
from aqaa.lm.format import read_once
from aqaa.serve.chat import open_session


class OracleReading:
    """An `aqaa` session whose next user turns read `texts` (in order) instead of the CTC reading."""

    def __init__(self, session):
        self.session, self.texts = session, []
        self.own = session.lm.reader()
        if self.own is None:
            raise SystemExit("the model does not read its queries (lm.heard_reading is off): nothing to replace")

    def __getattr__(self, name):
        return getattr(self.session, name)

    def reset(self) -> None:
        self.session.reset()
        lm, own = self.session.lm, self.own

        def read(audio_ids: list[int]) -> list[int]:
            if not self.texts:
                return own(audio_ids)
            return lm.reading_ids(self.texts.pop(0), snap=False)  # exact words, in the model's case
        self.session.reader = read_once(read)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", default="data/spokenqa/test.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--categories", nargs="*", help="only these categories (default: all)")
    ap.add_argument("--limit", type=int, help="only the first N items (after --categories)")
    ap.add_argument("--label", default="oracle-reading")
    args = ap.parse_args()

    root, items = read_manifest(args.manifest)
    items = [it for it in items if not args.categories or it["category"] in args.categories]
    items = items[:args.limit] if args.limit else items
    out = Path(args.out)
    (out / "items").mkdir(parents=True, exist_ok=True)
    todo = [it for it in items if not (out / "items" / f"{it['id']}.json").exists()]
    session = OracleReading(open_session(args.model, "aqaa")) if todo else None
    for item in tqdm(todo, desc="oracle reading"):
        session.texts = [t["text"] for t in item.get("context") or []] + [item["text"]]
        record = {**evaluate_item(item, root, session, out), "engine": args.label}
        path = out / "items" / f"{item['id']}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    records = with_items([json.loads((out / "items" / f"{it['id']}.json").read_text()) for it in items], items)
    summary = write_report(out, {args.label: records}, title=f"oracle reading: {args.model}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
