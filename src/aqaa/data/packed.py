"""Packed training sequences: shards read on demand, for corpora bigger than memory.

`aqaa data pack` turns a SpokenQA folder + token cache into a pack folder:

    vocab/                the extended tokenizer the ids are written in (stage 1 starts its model with it)
    manifest.json         {"parts": {part: [{"file", "sequences", "tokens"}, ...]}, "shard_sequences": N}
    <part>/<k>.safetensors  flat `ids` (int32) and `loss` (uint8) of N sequences, and their `offsets` (int64)

Training then reads only the sequences of its own share of each batch by slicing the shard files (safetensors
`get_slice`: no shard is loaded whole), so neither the token cache nor the sequences have to fit in memory. The
order is the recipe's (seed, step) draw, the same for every rank: deterministic, and a resumed run replays it.
Packing itself streams too: token rows are read from disk by byte offset (`TokenIndex`), shards written as they fill.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from aqaa.lm.format import Sequence

MANIFEST = "manifest.json"


class TokenIndex(Mapping):
    """A token cache (tokens.jsonl) as a read-only mapping audio path -> row; only byte offsets stay in memory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offsets: dict[str, int] = {}
        with self.path.open("rb") as fh:
            pos = 0
            for line in fh:
                try:
                    rel = json.loads(line)["audio"]
                except (json.JSONDecodeError, KeyError):  # a line cut by a kill (encode_corpus redoes it)
                    rel = None
                if rel is not None:
                    self._offsets[rel] = pos
                pos += len(line)
        self._fh = self.path.open("rb")

    def __getitem__(self, rel: str) -> dict:
        self._fh.seek(self._offsets[rel])
        return json.loads(self._fh.readline())

    def __contains__(self, rel: object) -> bool:
        return rel in self._offsets

    def __iter__(self) -> Iterator[str]:
        return iter(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)


def _write_shard(path: Path, seqs: list[Sequence]) -> dict:
    from aqaa.train.common import save_tensors

    lengths = np.array([len(s) for s in seqs], np.int64)
    tensors = {
        "ids": torch.from_numpy(np.concatenate([np.asarray(s.ids, np.int32) for s in seqs])),
        "loss": torch.from_numpy(np.concatenate([np.asarray(s.loss, np.uint8) for s in seqs])),
        "offsets": torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)])),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(tensors, path)
    return {"file": str(path.relative_to(path.parent.parent)), "sequences": len(seqs), "tokens": int(lengths.sum())}


def pack(sequences: Iterator[tuple[str, Sequence]], vocab, out: str | Path, shard_sequences: int = 4096) -> Path:
    """Write (part, sequence) pairs into shards of `shard_sequences`; the manifest is written last, atomically, so a
    folder with a manifest is a complete pack (a killed pack is redone from the start)."""
    import os

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab.hf.save_pretrained(out / "vocab")
    buffers: dict[str, list[Sequence]] = {}
    parts: dict[str, list[dict]] = {}

    def flush(name: str) -> None:
        k = len(parts.setdefault(name, []))
        parts[name].append(_write_shard(out / name / f"{k:05d}.safetensors", buffers.pop(name)))

    for name, seq in tqdm(sequences, desc="pack", unit="seq"):
        buffers.setdefault(name, []).append(seq)
        if len(buffers[name]) >= shard_sequences:
            flush(name)
    for name in list(buffers):
        flush(name)
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"parts": parts, "shard_sequences": shard_sequences}, indent=1))
    os.replace(tmp, out / MANIFEST)
    return out


def is_pack(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


class PackedPart:
    """One mixture part of a pack: `len()` and `part[i]` -> Sequence, reading only that sequence from its shard."""

    def __init__(self, folder: Path, shards: list[dict]):
        self._files = [folder / s["file"] for s in shards]
        self._starts = list(np.cumsum([0] + [s["sequences"] for s in shards]))
        self._open: dict[int, tuple] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _shard(self, k: int) -> tuple:
        if k not in self._open:
            f = safe_open(str(self._files[k]), framework="pt")
            self._open[k] = (f.get_slice("ids"), f.get_slice("loss"), f.get_tensor("offsets"), f)
        return self._open[k]

    def __getitem__(self, i: int) -> Sequence:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._starts, i) - 1
        ids, loss, offsets, _ = self._shard(k)
        a, b = int(offsets[i - self._starts[k]]), int(offsets[i - self._starts[k] + 1])
        return Sequence(ids[a:b].tolist(), loss[a:b].tolist())


def load_pack(folder: str | Path) -> tuple[dict[str, PackedPart], object]:
    """(parts, vocab) of a pack folder."""
    from aqaa.errors import AqaaInputError
    from aqaa.lm.vocab import Vocab

    folder = Path(folder)
    if not is_pack(folder):
        raise AqaaInputError(f"{folder}: not a pack (no {MANIFEST}); make one with `aqaa data pack`")
    manifest = json.loads((folder / MANIFEST).read_text())
    return {name: PackedPart(folder, shards) for name, shards in manifest["parts"].items()}, Vocab.load(folder / "vocab")
