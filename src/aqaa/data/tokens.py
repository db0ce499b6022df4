"""Audio-token cache: every rendering of a SpokenQA folder encoded once by a tokenizer.

`tokens.jsonl` holds one line per wav: {"audio": path relative to the data folder, "duration_s", "linguistic",
"semantic"}. Lines are appended as files are encoded, so a killed run resumes where it stopped; the
tokenizer's config is recorded in `tokens.json` beside it and a mismatch refuses to mix two tokenizers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm


RENDERINGS = ("query", "answer", "neutral", "opposite", "plain_query")  # every wav a dialogue turn may name


def corpus_wavs(data_dir: Path) -> list[str]:
    """Every wav a SpokenQA folder references (all splits, all turns and variants, the spoken sentences)."""
    rel: set[str] = set()
    for split in ("train", "valid", "test"):
        path = data_dir / f"{split}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            for turn in json.loads(line)["turns"]:
                rel.update(turn[k]["audio"] for k in RENDERINGS if k in turn)
    sentences = data_dir / "pretrain" / "sentences.jsonl"
    if sentences.exists():
        rel.update(json.loads(x)["audio"] for x in sentences.read_text().splitlines())
    return sorted(rel)


def check_token_inputs(path: str | Path, data_dir: str | Path | None = None) -> None:
    """A missing token cache or data folder is the user's error, said plainly."""
    from aqaa.errors import AqaaInputError

    if data_dir is not None and not (Path(data_dir) / "train.jsonl").is_file():
        raise AqaaInputError(f"{data_dir}: not a SpokenQA folder (no train.jsonl); make one with `aqaa data synth`")
    if not Path(path).is_file():
        raise AqaaInputError(f"{path}: no token cache; make one with `aqaa data tokens`")


def load_tokens(path: str | Path, data_dir: str | Path | None = None) -> dict[str, dict]:
    """The token cache a training step reads (checked first by `check_token_inputs`)."""
    check_token_inputs(path, data_dir)
    return read_tokens(Path(path))


def read_tokens(path: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: re-encode that file
                continue
            rows[row["audio"]] = row
    return rows


def encode_corpus(data_dir: str | Path, tokenizer_dir: str | Path, out: str | Path) -> Path:
    from aqaa.tokenizer.model import DualTokenizer

    data_dir, out = Path(data_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_cfg = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text())
    meta = out / "tokens.json"
    if meta.exists() and json.loads(meta.read_text())["tokenizer"] != tok_cfg:
        raise ValueError(f"{out} holds tokens of another tokenizer; use a new folder")
    meta.write_text(json.dumps({"tokenizer": tok_cfg, "tokenizer_dir": str(tokenizer_dir), "data": str(data_dir)}))
    path = out / "tokens.jsonl"
    done = read_tokens(path)
    todo = [r for r in corpus_wavs(data_dir) if r not in done]
    tok = DualTokenizer.load(tokenizer_dir)
    with path.open("a") as fh:
        for rel in tqdm(todo, desc="encode audio", unit="file"):
            x, rate = sf.read(data_dir / rel, dtype="float32")
            if rate != 16_000:
                raise ValueError(f"{rel}: expected 16 kHz, got {rate}")
            streams = tok.encode(x if x.ndim == 1 else x.mean(1))
            fh.write(json.dumps({"audio": rel, "duration_s": round(streams.duration_s, 4),
                                 "linguistic": np.asarray(streams.linguistic).tolist(),
                                 "semantic": np.asarray(streams.semantic).tolist()}) + "\n")
            fh.flush()
    return path
