"""A streaming peak limiter: loud answers keep their shape instead of being hard-clipped at full scale.

Why: a loud speech-control answer can come out of the vocoder with peaks up to ~1.3, and clipping them at +-1 (what
writing 16-bit PCM does) flattens the waveform's tops, an audible buzz. The limiter lowers the gain smoothly just
before such peaks and lets it recover afterwards, so every sample stays within `ceiling` and audio below it passes
unchanged. It looks ahead only inside the chunk it is given (a 120 ms group arrives whole, so that costs no latency)
and carries one number, the gain at the end of the last chunk, in an explicit state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Limiter:
    """`limiter(chunk)` -> the chunk with |y| <= ceiling; call `reset()` between answers.

    The gain falls towards a peak by at most `attack_per_ms` per millisecond (so it starts ~2 ms before a peak that
    needs -6 dB) and recovers by at most `release_per_ms` (0.5 -> 1 in 200 ms), both linear in gain.
    """

    sample_rate: int = 16_000
    ceiling: float = 0.97
    attack_per_ms: float = 0.25
    release_per_ms: float = 0.0025
    gain: float = 1.0  # the state: the gain applied to the last sample of the last chunk

    def reset(self) -> None:
        self.gain = 1.0

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, dtype=np.float32)
        if not len(x):
            return x
        peak = np.abs(x)
        if self.gain >= 1.0 and peak.max() <= self.ceiling:
            return x  # the common case: nothing to limit, nothing to recover
        n = np.arange(len(x))
        attack = self.attack_per_ms * 1000 / self.sample_rate
        release = self.release_per_ms * 1000 / self.sample_rate
        need = np.minimum(1.0, self.ceiling / np.maximum(peak, 1e-9))  # the most gain each sample allows
        # falling towards a peak at most `attack` a sample: ahead[i] = min over k >= i of need[k] + attack (k - i)
        ahead = np.minimum.accumulate((need + attack * n)[::-1])[::-1] - attack * n
        # rising after it at most `release` a sample, from the last chunk's gain: g[i] = min(ahead[i], g[i-1] + release)
        g = np.minimum(np.minimum.accumulate(ahead - release * n) + release * n, self.gain + release * (n + 1))
        self.gain = float(g[-1])
        return (x * g).astype(np.float32)
