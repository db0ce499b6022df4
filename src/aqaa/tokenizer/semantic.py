"""Semantic stream: a causal convolutional autoencoder on 100 Hz log-mel, downsampled x4 to 25 Hz and quantized
by FSQ (finite scalar quantization, vector-quantize-pytorch) to levels 4^6 = 4,096 codes.

The decoder reconstructs the log-mel *and* the pitch contour (log F0, voicing from Praat), so the codes must keep
pitch, energy and timing: what the content-dominated linguistic stream drops. Everything before the quantizer is
causal, so streaming encoding gives exactly the offline codes (see `SemanticState`). FSQ has no codebook to
collapse, which keeps dead codes low without k-means restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aqaa.tokenizer.features import N_MELS

DOWNSAMPLE = 4  # 100 Hz mel frames -> 25 Hz tokens


@dataclass
class SemanticConfig:
    # 4^6 = 4,096 codes. Measured on the same data and steps (reports/tokenizer.md): dead codes 13.8% vs 24.5% for
    # 8^4 and 25.3% for 2^12, with equal or lower reconstruction loss.
    levels: list[int] = field(default_factory=lambda: [4, 4, 4, 4, 4, 4])
    channels: int = 192
    layers: int = 4  # residual causal conv blocks on each side
    kernel: int = 5
    preserve_symmetry: bool = False  # FSQ option; required for levels of 2
    noise_dropout: float = 0.0  # FSQ option (needs preserve_symmetry): random rounding offsets while training
    # the decoder also predicts the local phone rate (aqaa.train.tokenizer.local_rate). Off by default: measured, it
    # did not raise the semantic rate probe (0.600 vs 0.633, n=30) and left more dead codes (reports/tokenizer_rate)
    rate_head: bool = False

    @property
    def codes(self) -> int:
        return math.prod(self.levels)


class CausalConv(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, ((self.kernel_size[0] - 1) * self.dilation[0], 0)))


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = CausalConv(channels, channels, kernel, dilation=dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(F.gelu(self.conv(F.gelu(x))))


class SemanticCodec(nn.Module):
    def __init__(self, cfg: SemanticConfig):
        from vector_quantize_pytorch import FSQ

        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.register_buffer("mel_mean", torch.zeros(N_MELS, 1))
        self.register_buffer("mel_std", torch.ones(N_MELS, 1))
        self.enc_in = CausalConv(N_MELS, c, cfg.kernel)
        self.enc = nn.Sequential(*[ResBlock(c, cfg.kernel, 2**i) for i in range(cfg.layers)])
        self.down = nn.Conv1d(c, c, DOWNSAMPLE, stride=DOWNSAMPLE)  # frames 4t..4t+3 -> token t: no look-ahead
        self.to_code = nn.Conv1d(c, len(cfg.levels), 1)
        self.fsq = FSQ(levels=list(cfg.levels), preserve_symmetry=cfg.preserve_symmetry,
                       noise_dropout=cfg.noise_dropout)
        self.from_code = nn.Conv1d(len(cfg.levels), c, 1)
        self.up = nn.ConvTranspose1d(c, c, DOWNSAMPLE, stride=DOWNSAMPLE)
        self.dec = nn.Sequential(*[ResBlock(c, cfg.kernel, 2**i) for i in range(cfg.layers)])
        self.dec_out = nn.Conv1d(c, N_MELS + 2 + int(cfg.rate_head), 1)  # mel, log F0, voicing logit[, rate]

    @property
    def receptive_frames(self) -> int:
        """Mel frames of left context the encoder sees before a token (for streaming buffers)."""
        k = self.cfg.kernel
        return (k - 1) * (1 + sum(2**i for i in range(self.cfg.layers))) + DOWNSAMPLE

    def encode_latent(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 80, T] log-mel (T a multiple of 4) -> [B, T/4, n_levels] continuous codes before rounding."""
        x = (mel - self.mel_mean) / self.mel_std
        x = self.down(self.enc(self.enc_in(x)))
        return self.to_code(x).transpose(1, 2)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 80, T] -> [B, T/4] code indices."""
        _, idx = self.fsq(self.encode_latent(mel))
        return idx

    def level_probabilities(self, latent: torch.Tensor, temperature: float = 0.25) -> torch.Tensor:
        """Soft assignment of each bounded latent dimension to its FSQ levels: [B, N, n_levels] -> list per dim of
        [B, N, L] (for the codebook-usage entropy loss; the rounding itself has no gradient to spread codes)."""
        bounded = self.fsq.bound(latent)
        probs = []
        for d, levels in enumerate(self.cfg.levels):
            grid = torch.arange(levels, device=latent.device) - levels // 2  # the integers FSQ rounds to
            probs.append(torch.softmax(-(bounded[..., d: d + 1] - grid) ** 2 / temperature, dim=-1))
        return probs

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, N, n_levels] quantized codes -> [B, 82 (+1), 4N]: normalized mel, log F0, voicing logit[, rate]."""
        x = self.up(self.from_code(codes.transpose(1, 2)))
        return self.dec_out(self.dec(x))

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decode_codes(self.fsq.indices_to_codes(indices))

    def forward(self, mel: torch.Tensor, with_latent: bool = False):
        latent = self.encode_latent(mel)
        codes, idx = self.fsq(latent)
        return (self.decode_codes(codes), idx, latent) if with_latent else (self.decode_codes(codes), idx)
