"""The cascade baseline: Whisper tiny.en -> SmolLM2-135M-Instruct -> Piper joe.

This is what aqaa must beat. It streams where its parts allow: the LM's text is cut at sentence ends and each
sentence goes to the TTS at once, so the first audio is ready before the LM has finished.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Answer the spoken question in one short sentence. "
    "If asked to say something in a certain way, just say the words."
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass
class TurnResult:
    """One answered turn: its text channel, audio, and the latency timeline (ms from the end of the query)."""

    text: str
    samples: np.ndarray
    sample_rate: int
    timeline: dict[str, float] = field(default_factory=dict)
    query_text: str = ""  # what the system understood (the cascade's ASR transcript)

    @property
    def audio_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def first_audio_ms(self) -> float:
        return self.timeline.get("first_audio_ms", float("nan"))

    @property
    def rtf(self) -> float:
        return (self.timeline["total_ms"] / 1000.0) / max(self.audio_s, 1e-6)


class CascadeSession:
    """A conversation with the cascade: the chat history is the session state."""

    name = "cascade"

    def __init__(self, max_new_tokens: int = 48):
        from aqaa.data.voices import _piper_voice
        from aqaa.eval.asr import _model as whisper
        from aqaa.lm.smollm2 import load_smollm2

        from aqaa.data.voices import synthesize
        from aqaa.eval.asr import transcribe

        t0 = time.perf_counter()
        self.model, self.tokenizer = load_smollm2()
        whisper()
        _piper_voice()
        # Warm-up: first calls pay one-off costs (ONNX / CTranslate2 allocations, librosa imports) that are not
        # part of answering a turn.
        speech, _ = synthesize("joe", "Hello there.")
        transcribe(speech)
        self.load_s = time.perf_counter() - t0
        self.max_new_tokens = max_new_tokens
        self.history: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_PROMPT}]

    def reset(self) -> None:
        self.history = self.history[:1]

    def answer(self, samples: np.ndarray, sample_rate: int = 16_000) -> TurnResult:
        from transformers import TextIteratorStreamer

        from aqaa.data.voices import Style, synthesize
        from aqaa.eval.asr import transcribe

        t0 = time.perf_counter()
        ms = lambda: 1000.0 * (time.perf_counter() - t0)  # noqa: E731
        timeline: dict[str, float] = {}
        query = transcribe(samples, sample_rate)
        timeline["asr_ms"] = ms()
        self.history.append({"role": "user", "content": query})
        inputs = self.tokenizer.apply_chat_template(
            self.history, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(
            target=self.model.generate,
            kwargs=dict(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, streamer=streamer),
        )
        worker.start()
        text, pending, chunks, rate = "", "", [], 22_050
        for piece in streamer:
            if "llm_first_token_ms" not in timeline:
                timeline["llm_first_token_ms"] = ms()
            text += piece
            pending += piece
            parts = _SENTENCE_END.split(pending)
            for sentence in parts[:-1]:
                chunks.append(self._speak(sentence, synthesize, Style, timeline, ms))
            pending = parts[-1]
        worker.join()
        if pending.strip():
            chunks.append(self._speak(pending, synthesize, Style, timeline, ms))
        timeline["total_ms"] = ms()
        text = text.strip()
        self.history.append({"role": "assistant", "content": text})
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return TurnResult(text, audio, rate, {k: round(v, 1) for k, v in timeline.items()}, query_text=query)

    @staticmethod
    def _speak(sentence: str, synthesize, style_cls, timeline: dict, ms) -> np.ndarray:
        if not any(ch.isalnum() for ch in sentence):
            return np.zeros(0, np.float32)
        samples, _ = synthesize("joe", sentence.strip(), style_cls(), out_rate=None)
        timeline.setdefault("first_audio_ms", ms())
        return samples
