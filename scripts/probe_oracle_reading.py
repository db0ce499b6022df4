"""Ceiling of reading the query: `aqaa eval` with every user turn's reading replaced by its true text.

    .venv/bin/python scripts/probe_oracle_reading.py --model runs/model-heard-hide3-s0 \
        --manifest data/spokenqa/test.jsonl --out runs/oracle-hide3 --categories knowledge reasoning

A model with `lm.heard_reading` answers from its audio and from what its CTC head reads. If it answers badly even
when the reading is the exact question (normalized as the CTC head writes it, cased as the model's reading is),
better hearing cannot help and the LM's reading-to-answer mapping is the gap; if it answers well, the reading's
errors are. The audio is the real one; everything else (engine, judge, report, resuming) is `aqaa eval`'s. Turns
the manifest does not script (the judge's neutral "Say <phrase>." rendering of control items) keep the model's own
reading.

`--reader-from LM_DIR` replaces the reading by another LM's (e.g. the chain's stage 1, whose encoder the later stages
have not yet moved) instead of the true text, snapped and cased by the evaluated model: what a frozen reader would
give without retraining anything.

    .venv/bin/python scripts/probe_oracle_reading.py --model runs/recipe-heard-read/model \
        --reader-from runs/recipe-heard-read/lm/stage1/model --out runs/reader-stage1 --label stage1-reading
"""

from __future__ import annotations

import argparse
import json

import torch

from aqaa.eval.harness import read_manifest, run_items
from aqaa.eval.report import write_report
from aqaa.lm.format import read_once
from aqaa.serve.chat import open_session


class ReplacedReading:
    """An `aqaa` session whose user turns are read by `reading()` instead of the model's own reader (reset with
    every item); everything else is the session's."""

    def __init__(self, session, name: str):
        self.session, self.name, self.texts = session, name, []
        self.own = session.lm.reader()
        if self.own is None:
            raise SystemExit("the model does not read its queries (lm.heard_reading is off): nothing to replace")

    def __getattr__(self, name):
        return getattr(self.session, name)

    def reset(self) -> None:
        self.session.reset()
        self.session.reader = read_once(self.reading())

    def reading(self):
        raise NotImplementedError


class OtherReading(ReplacedReading):
    """Every user turn read by another LM's encoder (its greedy CTC text, then the evaluated model's own snapping
    and casing), scripted or not."""

    def __init__(self, session, name: str, reader_dir: str):
        from aqaa.lm.model import AudioLM

        super().__init__(session, name)
        self.other = AudioLM.load(reader_dir)
        lm = session.lm
        if self.other.vocab.l_range != lm.vocab.l_range or self.other.vocab.s_range != lm.vocab.s_range:
            raise SystemExit(f"{reader_dir} numbers its audio tokens unlike the model: its reading does not apply")

    def reading(self):
        from aqaa.lm.heard import heard_ctc_transcript

        lm, other = self.session.lm, self.other

        def read(audio_ids: list[int]) -> list[int]:
            with torch.inference_mode():
                return lm.reading_ids(heard_ctc_transcript(other.model, audio_ids))
        return read


class OracleReading(ReplacedReading):
    """The next user turns read `texts` (in order) instead of the CTC reading."""

    def reading(self):
        lm, own = self.session.lm, self.own

        def read(audio_ids: list[int]) -> list[int]:
            if not self.texts:
                return own(audio_ids)
            return lm.reading_ids(self.texts.pop(0), snap=False)  # exact words, in the model's case
        return read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", default="data/spokenqa/test.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--categories", nargs="*", help="only these categories (default: all)")
    ap.add_argument("--limit", type=int, help="only the first N items (after --categories)")
    ap.add_argument("--label", default="oracle-reading")
    ap.add_argument("--reader-from", help="an LM folder whose encoder reads every turn instead of the true text")
    args = ap.parse_args()

    root, items = read_manifest(args.manifest)
    items = [it for it in items if not args.categories or it["category"] in args.categories]
    items = items[:args.limit] if args.limit else items

    def script(session: OracleReading, item: dict) -> None:
        session.texts = [t["text"] for t in item.get("context") or []] + [item["text"]]

    if args.reader_from:
        records = run_items(items, root, args.out,
                            lambda: OtherReading(open_session(args.model, "aqaa"), args.label, args.reader_from),
                            args.label)
        title = f"{args.model} read by {args.reader_from}"
    else:
        records = run_items(items, root, args.out, lambda: OracleReading(open_session(args.model, "aqaa"), args.label),
                            args.label, before_item=script)
        title = f"oracle reading: {args.model}"
    summary = write_report(args.out, {args.label: records}, title=title)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
