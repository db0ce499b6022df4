"""The aqaa engine on a tiny model assembled from tiny trained parts: streaming answers, a multi-turn KV cache,
and `aqaa chat --model DIR --json` end to end on real wavs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf



def test_session_streams_and_keeps_the_conversation(tiny_model, speech):
    from aqaa.serve.engine import AqaaSession

    samples, _ = speech
    s = AqaaSession(tiny_model)
    first = s.answer(samples)
    assert first.sample_rate == 16_000 and first.audio_s > 0 and np.isfinite(first.samples).all()
    assert 0 < first.first_audio_ms <= first.timeline["total_ms"]
    n_after_one, first_len = s.state.n_past, len(s.state.answer)
    s.answer(samples)
    user_turn_len = n_after_one - 1 - first_len  # <|bos|> + user turn + answer made the first context
    assert s.state.n_past == n_after_one + user_turn_len + len(s.state.answer)  # the same cache, extended
    assert len(s.history) == 2
    s.reset()
    assert s.state is None and not s.history


def test_chat_cli_with_model_folder(tiny_model, tmp_path):
    q = "examples/question.wav"
    out = tmp_path / "a.wav"
    r = subprocess.run([sys.executable, "-m", "aqaa.cli", "chat", q, "examples/turn1_name.wav", "-o", str(out),
                        "--model", str(tiny_model), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "aqaa" and summary["first_audio_ms"] > 0 and summary["audio_s"] > 0
    y, rate = sf.read(out)
    assert rate == 16_000 and abs(len(y) / rate - summary["audio_s"]) < 0.01
