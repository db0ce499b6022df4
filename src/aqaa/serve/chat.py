"""`aqaa chat`: answer one or more spoken user turns of a conversation with speech.

The engine is the shipped aqaa model (`aqaa/assets/default/aqaa.json`); an install without it (a stripped
package) answers with the cascade baseline and says so on stderr, so the command line never changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aqaa.audio.io import AudioLimits, load_audio, save_wav
from aqaa.errors import AqaaInputError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "default"


def open_session(model: str | None = None, engine: str = "auto", listen_ms: int | None = None):
    """A conversation session: `engine` "cascade" is the baseline; "auto" is the model in `model` (None: the
    shipped default), or the cascade when no model is installed. `listen_ms`: an aqaa session hears each query in
    pieces as it is spoken (`AqaaSession`); the cascade transcribes whole turns either way."""
    from aqaa.eval.cascade import CascadeSession

    if engine == "cascade":
        return CascadeSession()
    if model is not None and not Path(model).is_dir():
        raise AqaaInputError(f"{model}: no such model folder")
    folder = Path(model) if model else DEFAULT_MODEL
    if (folder / "aqaa.json").exists():
        from aqaa.serve.engine import AqaaSession

        return AqaaSession(folder, listen_ms=listen_ms)
    if model is not None:
        raise AqaaInputError(f"{model}: not an aqaa model folder (no aqaa.json)")
    print("aqaa: no aqaa model is installed; answering with the cascade baseline "
          "(Whisper tiny.en -> SmolLM2-135M -> Piper)", file=sys.stderr)
    return CascadeSession()


def chat(inputs: list[str], output: str, model: str | None = None, engine: str = "auto",
         limits: AudioLimits | None = None) -> dict:
    """Answer each input in turn; the last answer goes to `output`. Returns the SPEC --json summary."""
    # Validate every input before loading any model: bad input fails fast and loses nothing.
    turns = [load_audio(path, limits) for path in inputs]
    for audio in turns:
        for warning in audio.warnings:
            print(f"aqaa: warning: {warning}", file=sys.stderr)
    session = open_session(model, engine)
    result = None
    for audio in turns:
        result = session.answer(audio.samples, audio.sample_rate)
    assert result is not None
    save_wav(output, result.samples, result.sample_rate)
    return {
        "text": result.text,
        "first_audio_ms": round(result.first_audio_ms, 1),
        "audio_s": round(result.audio_s, 3),
        "rtf": round(result.rtf, 4),
        "engine": session.name,
        "heard": result.query_text,
        "timeline": result.timeline,
        "load_s": round(session.load_s, 2),
        "output": str(output),
    }
