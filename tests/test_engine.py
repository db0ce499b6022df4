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


def test_transcribing_model_streams_and_reports_what_it_heard(tiny_model, speech, tmp_path):
    """A model whose rhythm transcribes the query: the transcript is `query_text`, never the spoken answer's text,
    and the conversation's cache still holds the whole answer (transcript included)."""
    import shutil

    from aqaa.serve.engine import AqaaSession

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    cfg_path = folder / "lm" / "aqaa_lm.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["rhythm"]["transcribe_query"] = True
    cfg_path.write_text(json.dumps(cfg))
    s = AqaaSession(folder)
    samples, _ = speech
    result = s.answer(samples)
    assert result.audio_s > 0 and isinstance(result.query_text, str)
    v = s.lm.vocab
    answer = s.state.answer
    assert answer[0] == v.ctrl["asr"] and v.ctrl["tts"] in answer
    heard = answer[1: answer.index(v.ctrl["tts"])]
    assert result.query_text == v.decode_text(heard)
    assert s.history[-1][1] == answer


def test_assemble_refuses_extra_keys_that_shadow_the_parts(tiny_model, tmp_path):
    import pytest

    from aqaa.serve.engine import assemble_model

    parts = [tiny_model / name for name in ("tokenizer", "lm", "vocoder")]
    with pytest.raises(ValueError, match="vocoder"):
        assemble_model(tmp_path / "m", *parts, extra={"vocoder": "runs/other"})
    assert not (tmp_path / "m").exists()
    made = assemble_model(tmp_path / "m", *parts, extra={"vocoder_run": "runs/other"})
    assert json.loads((made / "aqaa.json").read_text())["vocoder"] == "vocoder"


def test_listening_while_spoken_answers_as_the_whole_turn_does(tiny_model, speech):
    """`listen` in pieces (120 ms, and an odd 1,000 samples) feeds the KV cache as the turn comes in, and then answers
    exactly as a whole-turn session given the same (streamed) tokens: same ids in the history, same answers over two
    turns of one cache. `stream_answer()` with nothing heard is a clear error."""
    import pytest

    from aqaa.errors import AqaaInputError
    from aqaa.serve.engine import AqaaSession
    from aqaa.tokenizer.model import stream_encode

    samples, _ = speech
    for piece in (1920, 1000):
        whole = AqaaSession(tiny_model)  # the whole turn at once, tokenized as the streaming encoder does
        tok = whole.tokenizer
        whole.tokenizer = type("Streamed", (), {"encode": staticmethod(lambda x: stream_encode(tok, x, piece))})()
        expected = [whole.answer(samples).text, whole.answer(samples).text]
        s = AqaaSession(tiny_model)
        fed = []
        for i in range(0, len(samples), piece):
            s.listen(samples[i: i + piece])
            fed.append(s.state.n_past)
        assert s.heard_so_far.prefilled and fed[-1] > fed[0] >= 3  # fed as it came, not at the end
        assert len(b"".join(s.stream_answer())) > 0
        q, a = s.history[0]
        assert q == whole.history[0][0] and s.state.n_past == len(q) + len(a) + 6  # bos user a_start .. a_end end asst
        assert s.last_text == expected[0]
        if piece == 1920:  # `answer()` of a session that listens in 120 ms pieces: the same, both turns
            listened = AqaaSession(tiny_model, listen_ms=120)
            results = [listened.answer(samples), listened.answer(samples)]
            assert [r.text for r in results] == expected and listened.history == whole.history
            assert results[1].timeline["listen_chunk_ms_max"] > 0
    with pytest.raises(AqaaInputError, match="listen"):
        list(AqaaSession(tiny_model).stream_answer())


def test_loud_answers_are_limited_not_clipped(tiny_model, speech, monkeypatch):
    """A vocoder whose output peaks far above full scale: the answer stays under the limiter's ceiling, smoothly."""
    from aqaa.serve.engine import AqaaSession
    from aqaa.vocoder.model import StreamingVocoder

    step = StreamingVocoder.step
    monkeypatch.setattr(StreamingVocoder, "step", lambda self, lin, sem: 50.0 * step(self, lin, sem))
    s = AqaaSession(tiny_model, warm_up=False)
    out = s.answer(speech[0]).samples
    assert len(out) and np.abs(out).max() <= s.limiter.ceiling + 1e-6
    assert (np.abs(out) >= 0.999).sum() == 0  # nothing sits at full scale, as clipping would leave it
