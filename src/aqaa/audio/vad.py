"""Speech detection with Silero VAD (a well-kept pretrained model that ships inside its package)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def _model():
    from silero_vad import load_silero_vad

    return load_silero_vad()


def speech_spans(samples: np.ndarray, sample_rate: int = 16_000, min_speech_ms: int = 120) -> list[tuple[float, float]]:
    """Spans of speech as (start_s, end_s); empty when nobody speaks."""
    from silero_vad import get_speech_timestamps

    if sample_rate not in (8_000, 16_000):
        raise ValueError("Silero VAD runs at 8 or 16 kHz")
    with torch.no_grad():
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
            _model(),
            sampling_rate=sample_rate,
            min_speech_duration_ms=min_speech_ms,
            return_seconds=True,
        )
    _model().reset_states()
    return [(float(s["start"]), float(s["end"])) for s in stamps]


def speech_probability_fn():
    """A streaming speech detector with its own state: call it on successive 512-sample (32 ms) 16 kHz windows."""
    from silero_vad import load_silero_vad

    model = load_silero_vad()

    def prob(window: np.ndarray) -> float:
        with torch.no_grad():
            return float(model(torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)), 16_000))

    return prob
