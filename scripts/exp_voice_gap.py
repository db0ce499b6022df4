"""Is it the new voices or the new words? The hearing probe on the same held-out sentences in both kinds of voice.

The held-out hearing sentences (`aqaa data synth --hearing`, valid split) are said by training voices; this renders
the same texts again in the test-only voices (same style and noise draw), tokenizes them, and runs
`scripts/probe_asr.py`'s probe on both sets, so the difference is the voices alone.

    .venv/bin/python scripts/exp_voice_gap.py --model runs/recipe-v4/lm/stage1/model --limit 60 \
        --out reports/hearing_data/voice_gap.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_asr import probe  # noqa: E402


def main() -> None:
    import soundfile as sf

    from aqaa.data.synth import TEST_VOICES, _render, plan_hearing
    from aqaa.data.tokens import load_tokens
    from aqaa.tokenizer.model import DualTokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--tokens", default="runs/tokens/tokens.jsonl")
    ap.add_argument("--tokenizer", default="runs/tok")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--out", default="reports/hearing_data/voice_gap.json")
    args = ap.parse_args()
    made = json.loads((Path(args.data) / "synth.json").read_text())
    plans = [p for p in plan_hearing(made["hearing"], made["seed"]) if p.split == "valid"][: args.limit]
    tokens = load_tokens(args.tokens, args.data)
    tok = DualTokenizer.load(args.tokenizer)
    rng = random.Random(0)
    seen, unseen, new_tokens = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in plans:
            rel = f"pretrain/audio/{p.id}.wav"
            seen.append({"id": p.id, "category": "hearing", "audio": rel, "text": p.text})
            voice = rng.choice(TEST_VOICES)
            rendered = _render(Path(tmp), f"{p.id}.wav", p.text, replace(p.render, voice=voice), p.id)
            x, _ = sf.read(Path(tmp) / rendered["audio"], dtype="float32")
            s = tok.encode(x)
            key = f"test-voice/{p.id}"
            new_tokens[key] = {"linguistic": np.asarray(s.linguistic).tolist(),
                               "semantic": np.asarray(s.semantic).tolist()}
            unseen.append({"id": p.id, "category": "hearing", "audio": key, "text": p.text, "voice": voice})
    tokens.update(new_tokens)
    results = []
    for m in args.model:
        a, b = probe(m, seen, tokens), probe(m, unseen, tokens)
        for name, r in (("training voices", a), ("test voices", b)):
            print(f"{m} {name}: WER {r['wer']}, NLL {r['transcript_nll']} (no audio {r['prior_nll']}), "
                  f"entity recall {r['entity_recall']}")
            results.append({"model": m, "voices": name, **{k: r[k] for k in (
                "n", "wer", "transcript_nll", "prior_nll", "entity_recall", "n_entity_queries", "examples")}})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": len(plans), "results": results}, indent=1))


if __name__ == "__main__":
    main()
