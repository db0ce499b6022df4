"""Packed shards (`aqaa data pack`): the same sequences as the in-memory parts, read one at a time from several
shards, and a stage trained from the pack follows the in-memory run's loss curve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def packed(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "pack"
    r = subprocess.run([sys.executable, "-m", "aqaa.cli", "data", "pack", "--data", str(tiny_corpus["data"]),
                        "--tokens", str(tiny_corpus["tokens"]), "--out", str(out), "--preset", "tiny",
                        "--shard-sequences", "5"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_token_index_reads_rows_like_the_cache(tiny_corpus):
    from aqaa.data.packed import TokenIndex
    from aqaa.data.tokens import read_tokens

    rows, index = read_tokens(tiny_corpus["tokens"]), TokenIndex(tiny_corpus["tokens"])
    assert sorted(index) == sorted(rows) and len(index) == len(rows)
    for rel in list(rows)[:5]:
        assert index[rel] == rows[rel]
    assert "missing.wav" not in index


def test_pack_holds_the_in_memory_sequences(tiny_corpus, packed):
    from aqaa.data.packed import load_pack
    from aqaa.data.tokens import read_tokens
    from aqaa.lm.format import AnswerRhythm
    from aqaa.train.lm import build_parts

    parts, vocab = load_pack(packed)
    memory = build_parts(tiny_corpus["data"], read_tokens(tiny_corpus["tokens"]), vocab, AnswerRhythm())
    manifest = json.loads((packed / "manifest.json").read_text())
    assert any(len(shards) > 1 for shards in manifest["parts"].values())  # several shards were written
    for name, seqs in memory.items():
        if not seqs:
            continue
        assert len(parts[name]) == len(seqs)
        for i in (0, len(seqs) // 2, len(seqs) - 1):
            assert parts[name][i].ids == seqs[i].ids and parts[name][i].loss == seqs[i].loss
    with pytest.raises(IndexError):
        parts["asr"][len(parts["asr"])]


def test_stage_from_pack_trains_like_in_memory(tiny_corpus, packed, tmp_path):
    from aqaa.train.lm import stage_config, train_stage

    over = ["steps=4", "batch=4", "log_every=1", "ckpt_every=2", "warmup=2"]
    train_stage(stage_config("stage1", "tiny", over), tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "mem")
    train_stage(stage_config("stage1", "tiny", over), tiny_corpus["data"], packed, tmp_path / "pack", stop_after=2)
    train_stage(stage_config("stage1", "tiny", over), tiny_corpus["data"], packed, tmp_path / "pack")  # resumed
    rows = lambda d: [json.loads(x)["loss"] for x in (d / "stage1" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "pack") == pytest.approx(rows(tmp_path / "mem"), abs=1e-5)


def test_pack_refuses_a_missing_cache(tiny_corpus, tmp_path):
    r = subprocess.run([sys.executable, "-m", "aqaa.cli", "data", "pack", "--data", str(tiny_corpus["data"]),
                        "--tokens", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "p")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "token cache" in r.stderr
