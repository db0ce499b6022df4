"""Causal log-mel features at 100 Hz (the semantic stream's input and the vocoder's target).

Settings follow the 16 kHz HiFi-GAN of OFFLINE.md (n_fft 1024, hop 160, 80 mels up to 8 kHz, natural log,
floor 1e-5), so tokens -> mel -> that vocoder works. Frames are causal: frame t ends at sample 160 (t + 1), the
clip is left-padded with n_fft - hop zeros, and n samples give exactly n / 160 frames; a streaming `MelState`
produces the same frames chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

N_FFT, HOP, N_MELS, F_MAX = 1024, 160, 80, 8000.0
LOG_FLOOR = 1e-5


@lru_cache(maxsize=1)
def _mel_basis() -> torch.Tensor:
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=16_000, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=F_MAX)).float()


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def log_mel_frames(padded: torch.Tensor) -> torch.Tensor:
    """[..., (T-1)*hop + n_fft] samples (already left-padded) -> [..., 80, T] natural-log mel."""
    spec = torch.stft(padded, N_FFT, HOP, window=_window(), center=False, return_complex=True).abs()
    return torch.log(torch.clamp(_mel_basis() @ spec, min=LOG_FLOOR))


def log_mel(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Causal log-mel of a whole clip: len // 160 frames, [80, T]."""
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    x = x[: len(x) // HOP * HOP]
    return log_mel_frames(torch.nn.functional.pad(x, (N_FFT - HOP, 0)))


@dataclass
class MelState:
    """Streaming log-mel: the last n_fft - hop samples seen, and samples not yet making a whole hop."""

    tail: np.ndarray = field(default_factory=lambda: np.zeros(N_FFT - HOP, np.float32))
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def step(self, chunk: np.ndarray) -> torch.Tensor:
        buf = np.concatenate([self.pending, np.asarray(chunk, np.float32)])
        whole = len(buf) // HOP * HOP
        self.pending = buf[whole:]
        if whole == 0:
            return torch.zeros(N_MELS, 0)
        frames = np.concatenate([self.tail, buf[:whole]])
        self.tail = frames[-(N_FFT - HOP):]
        return log_mel_frames(torch.from_numpy(frames))
