"""Does the LM compose answers, or recall training answers? For the knowledge and reasoning items of `aqaa eval`
output folders, counts:

- answers in the *form* of the asked question type's answer ("... plus ... is ...", "The capital of ... is ...");
  an answer of another form means the model answered another question (it misheard what was asked);
- wrong answers that are word for word an answer of a training dialogue (recalled, not composed);
- accuracy on the items whose expected answer a training dialogue has, and on those whose answer none has (only a
  model that composes can get these right).

    python scripts/answer_forms.py --train data/spokenqa/train.jsonl \
        --manifest data/spokenqa/valid.jsonl --manifest data/spokenqa/test.jsonl runs/eval-rr-valid-s0 runs/eval-rr-test-s0
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from aqaa.data.lexicon import COLOURS, COUNTRIES
from aqaa.eval.harness import read_manifest

_CONTINENTS = "|".join(sorted({c for _, _, c in COUNTRIES}))
_COLOURS = "|".join(sorted({c for _, c in COLOURS}))
FORMS = {  # the skeleton of each question type's answer (`aqaa.data.spokenqa`)
    "capital": r"^The capital of .+ is ", "capital_country": r" is the capital of ",
    "continent": rf" is in ({_CONTINENTS})\.", "colour": rf" is ({_COLOURS})\.$",
    "add": r" plus .+ is ", "subtract": r" minus .+ is ", "multiply": r" times .+ is ",
    "bigger": r" is bigger\.", "smaller": r" is smaller\.",
    "next_day": r" comes after ", "previous_day": r" comes before ",
    "next_month": r" comes after ", "previous_month": r" comes before ",
}


def tally(run: Path, trained: set[str], expected: dict[str, str]) -> Counter:
    c: Counter = Counter()
    for f in sorted((run / "items").glob("*.json")):
        item = json.loads(f.read_text())
        if item["qtype"] not in FORMS:
            continue
        correct = bool(item["correct"])
        c["items"] += 1
        c["correct"] += correct
        c["right_form"] += re.search(FORMS[item["qtype"]], item["text"]) is not None
        c["recalled_wrong"] += not correct and item["text"] in trained
        seen = "seen" if expected.get(item["id"]) in trained else "unseen"
        c[seen] += 1
        c[f"{seen}_correct"] += correct
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="`aqaa eval` output folders")
    ap.add_argument("--train", type=Path, required=True, help="the training manifest")
    ap.add_argument("--manifest", type=Path, action="append", required=True,
                    help="a manifest the runs evaluated (repeat the option for several)")
    args = ap.parse_args()
    trained = {t["answer"]["text"] for item in read_manifest(args.train)[1] for t in item["turns"]}
    expected = {item["id"]: item["answer_text"] for m in args.manifest for item in read_manifest(m)[1]}
    print("| run | knowledge + reasoning correct | answer of the asked form | wrong: a training answer | "
          "correct, answer in training | correct, answer not in training |\n|---|---|---|---|---|---|")
    for run in args.runs:
        c = tally(run, trained, expected)
        print(f"| {run.name} | {c['correct']} / {c['items']} | {c['right_form']} / {c['items']} | "
              f"{c['recalled_wrong']} / {c['items'] - c['correct']} | {c['seen_correct']} / {c['seen']} | "
              f"{c['unseen_correct']} / {c['unseen']} |")


if __name__ == "__main__":
    main()
