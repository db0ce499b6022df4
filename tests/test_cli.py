"""The real `aqaa` command on real files: the SPEC command-line contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
AQAA = [sys.executable, "-m", "aqaa.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*AQAA, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_chat_on_non_audio_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("definitely not a wav file\n")
    proc = run("chat", str(bad), "-o", str(tmp_path / "out.wav"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a readable audio file" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.wav").exists()


def test_chat_on_missing_file_exits_2(tmp_path):
    proc = run("chat", str(tmp_path / "none.wav"), "-o", str(tmp_path / "out.wav"))
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_chat_answers_the_example_questions_with_speech(tmp_path):
    """The README's main job on the shipped default model: a spoken answer whose audio says its text channel. (Whether
    the answer is right is measured by `aqaa eval`, not here: the shipped model still mishears most entities.)

    Three example questions, each answered alone, and the median text-audio WER: a single sampled answer disagrees
    with its own text (WER > 0.5) on ~3.5 % of test items, and which answer does depends on the CPU, since the int8
    step kernels take other paths on other instruction sets (session 33: the Japan question failed on an AVX-512
    host, passed on AVX2 ones); two bad answers of three would mean the model, not the draw."""
    from aqaa.eval.asr import transcribe
    from aqaa.eval.text import wer

    wers = []
    for name in ("question", "turn1_name", "turn2_recall"):
        out = tmp_path / f"{name}.wav"
        proc = run("chat", str(ROOT / "examples" / f"{name}.wav"), "-o", str(out), "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert {"text", "first_audio_ms", "audio_s", "rtf"} <= summary.keys()
        assert summary["engine"] == "aqaa" and summary["text"].strip()
        samples, rate = sf.read(out)
        assert rate >= 16000 and abs(len(samples) / rate - summary["audio_s"]) < 0.01
        assert np.sqrt(np.mean(samples**2)) > 0.01  # speech, not silence
        assert 0 < summary["first_audio_ms"] and summary["rtf"] > 0
        wers.append(wer(summary["text"], transcribe(samples.astype(np.float32), rate)))
    assert float(np.median(wers)) <= 0.5, wers


def test_cascade_answers_the_example_question(tmp_path):
    """The baseline (Whisper tiny.en -> SmolLM2 -> Piper) gets the README's example right: the bar aqaa is held to."""
    out = tmp_path / "answer.wav"
    proc = run("cascade", str(ROOT / "examples" / "question.wav"), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "tokyo" in summary["text"].lower() and summary["engine"] == "cascade"
    samples, rate = sf.read(out)
    assert rate >= 16000 and np.sqrt(np.mean(samples**2)) > 0.01


def test_shipped_codec_round_trips_assistant_speech(tmp_path):
    """`aqaa tokenize` then `aqaa detokenize` with no folder arguments (the shipped tokenizer and vocoder): the
    assistant's voice comes back at its length and intelligible to Whisper."""
    from aqaa.data.voices import synthesize
    from aqaa.eval.asr import transcribe
    from aqaa.eval.text import wer

    text = "The capital of Japan is Tokyo, a very large city by the sea."
    samples, rate = synthesize("joe", text)
    sf.write(tmp_path / "joe.wav", samples, rate)
    tok = run("tokenize", str(tmp_path / "joe.wav"), "--json")
    assert tok.returncode == 0, tok.stderr
    (tmp_path / "tokens.json").write_text(tok.stdout.strip().splitlines()[-1])
    back = run("detokenize", str(tmp_path / "tokens.json"), "-o", str(tmp_path / "back.wav"))
    assert back.returncode == 0, back.stderr
    y, r = sf.read(tmp_path / "back.wav")
    assert r == 16_000 and abs(len(y) / r - len(samples) / rate) < 0.01
    assert wer(text, transcribe(y.astype(np.float32), r)) <= 0.25
