"""Linguistic stream: Whisper tiny.en encoder features (50 Hz, 384-d), mean-pooled x3 to 16.7 Hz, quantized by
k-means to 1,024 codes. The encoder is pretrained for ASR, so its features are dominated by phonetic content."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from aqaa.tokenizer.interleave import L_HOP, pad_to_groups

WHISPER_HOP = 160  # Whisper mel hop; its encoder halves the frame rate (100 -> 50 Hz)
POOL = L_HOP // (2 * WHISPER_HOP)  # 3 encoder frames per linguistic token


@dataclass
class LinguisticConfig:
    codes: int = 1024
    dim: int = 384


@lru_cache(maxsize=2)
def _whisper(threads: int = 2):
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    from aqaa.eval.asr import whisper_model_path

    model = ctranslate2.models.Whisper(whisper_model_path(), device="cpu", compute_type="int8", intra_threads=threads)
    return model, FeatureExtractor(feature_size=80)


def whisper_features(samples: np.ndarray, threads: int = 2) -> np.ndarray:
    """Pooled encoder features [n_tokens, 384] of a clip whose length is a whole number of 120 ms groups."""
    import ctranslate2

    if len(samples) % (2 * L_HOP):
        raise ValueError("pad the clip to whole 120 ms groups first (interleave.pad_to_groups)")
    model, extractor = _whisper(threads)
    n_mel = len(samples) // WHISPER_HOP
    mel = extractor(np.asarray(samples, np.float32), padding=0)[:, :n_mel]
    if mel.shape[1] < n_mel:  # the extractor drops a final partial frame; repeat the last one
        mel = np.pad(mel, ((0, 0), (0, n_mel - mel.shape[1])), mode="edge")
    out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32)), to_cpu=True)
    enc = np.asarray(out)[0]  # [n_mel / 2, 384]
    return enc.reshape(-1, POOL, enc.shape[-1]).mean(axis=1)


class LinguisticQuantizer(torch.nn.Module):
    """Standardize, then nearest of `codes` k-means centroids."""

    def __init__(self, cfg: LinguisticConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.dim))
        self.register_buffer("std", torch.ones(cfg.dim))
        self.register_buffer("centroids", torch.zeros(cfg.codes, cfg.dim))

    @torch.no_grad()
    def quantize(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        x = (torch.as_tensor(feats, dtype=torch.float32) - self.mean) / self.std
        d = (x * x).sum(1, keepdim=True) - 2 * x @ self.centroids.T + (self.centroids**2).sum(1)
        return d.argmin(1).numpy()

    def encode(self, samples: np.ndarray, threads: int = 2) -> np.ndarray:
        return self.quantize(whisper_features(pad_to_groups(samples), threads))
