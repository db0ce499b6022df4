"""Tokenizer on a tiny config: shapes, rates, the 2:3 interleave and its inverse, streaming == offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aqaa.tokenizer.interleave import GROUP_SAMPLES, deinterleave, interleave, n_groups, pad_to_groups
from aqaa.tokenizer.model import DualTokenizer, stream_encode


@pytest.fixture(scope="module")
def tiny_tok(tiny_corpus):
    return DualTokenizer.load(tiny_corpus["tokenizer"]), tiny_corpus["tokenizer"]


def test_interleave_round_trip_and_pad_rule():
    rng = np.random.default_rng(0)
    for groups in (1, 2, 7):
        lin = rng.integers(0, 1024, 2 * groups)
        sem = rng.integers(0, 4096, 3 * groups)
        seq = interleave(lin, sem)
        assert len(seq) == 5 * groups and all(t < 1024 for t in seq[0::5]) and seq[2] >= 1024
        back_l, back_s = deinterleave(seq)
        assert back_l == lin.tolist() and back_s == sem.tolist()
    with pytest.raises(ValueError):
        deinterleave([1, 2, 3, 4])
    with pytest.raises(ValueError):
        deinterleave([1, 1030, 1025, 1026, 1027])  # second slot must be linguistic
    assert n_groups(1) == 1 and n_groups(GROUP_SAMPLES) == 1 and n_groups(GROUP_SAMPLES + 1) == 2
    assert len(pad_to_groups(np.ones(GROUP_SAMPLES + 5))) == 2 * GROUP_SAMPLES


def test_token_counts_match_duration(tiny_tok, speech):
    tok, _ = tiny_tok
    samples, _ = speech
    streams = tok.encode(samples)
    groups = n_groups(len(samples))
    assert len(streams.linguistic) == 2 * groups and len(streams.semantic) == 3 * groups
    # rates: 16.7 Hz and 25 Hz, to within one group of the true duration
    assert abs(len(streams.linguistic) / (50 / 3) - len(samples) / 16000) <= 0.12
    assert abs(len(streams.semantic) / 25 - len(samples) / 16000) <= 0.12
    assert streams.linguistic.max() < tok.cfg.linguistic.codes and streams.semantic.max() < tok.cfg.semantic.codes
    d = streams.to_dict()
    assert deinterleave(d["interleaved"], tok.cfg.linguistic.codes) == (d["linguistic"], d["semantic"])


@pytest.mark.parametrize("chunk", [1920, 3840, 7680, 1000])
def test_streaming_equals_offline(tiny_tok, speech, chunk):
    tok, _ = tiny_tok
    samples, _ = speech
    offline = tok.encode(samples)
    online = stream_encode(tok, samples, chunk)
    # semantic: causal encoder with enough left context -> identical
    assert np.array_equal(online.semantic, offline.semantic)
    # linguistic: Whisper's encoder sees a bounded window when streaming; nearly all tokens agree
    assert len(online.linguistic) == len(offline.linguistic)
    assert np.mean(online.linguistic == offline.linguistic) >= 0.8


def test_streaming_state_can_be_copied_and_reset(tiny_tok, speech):
    tok, _ = tiny_tok
    samples, _ = speech
    enc = tok.start()
    enc.step(samples[:7680])
    fork = enc.copy()
    a = enc.step(samples[7680:15360])
    b = fork.step(samples[7680:15360])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    enc.reset()
    assert enc.state.samples_seen == 0


def test_save_load_round_trip_and_cli(tiny_tok, speech, tmp_path):
    import subprocess
    import sys

    from aqaa.audio.io import save_wav

    tok, folder = tiny_tok
    again = DualTokenizer.load(folder)
    samples, rate = speech
    assert np.array_equal(again.encode(samples).semantic, tok.encode(samples).semantic)
    wav = save_wav(tmp_path / "q.wav", samples, rate)
    proc = subprocess.run([sys.executable, "-m", "aqaa.cli", "tokenize", str(wav), "--tokenizer", str(folder), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert {"linguistic", "semantic", "interleaved", "duration_s"} <= out.keys()
    assert abs(out["duration_s"] - len(samples) / rate) < 1e-3


def test_codebook_health_counts_dead_codes_and_perplexity():
    from aqaa.tokenizer.health import codebook_health

    uniform = codebook_health([np.arange(8), np.arange(8)], 8)
    assert uniform == {"tokens": 16, "codes": 8, "used": 8, "dead_fraction": 0.0, "perplexity": 8.0}
    half = codebook_health([np.array([0, 1, 2, 3] * 5)], 8)
    assert half["dead_fraction"] == 0.5 and half["used"] == 4 and half["perplexity"] == pytest.approx(4.0)
    assert codebook_health([np.zeros(10, dtype=int)], 8)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        codebook_health([np.array([8])], 8)


def test_entropy_loss_refused_for_vq(tmp_path):
    from aqaa.train.tokenizer import train_tokenizer

    with pytest.raises(ValueError, match="FSQ"):
        train_tokenizer(tmp_path, tmp_path / "tok", "tiny", ["entropy_weight=0.1"])
