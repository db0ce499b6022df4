"""Semantic stream: a causal convolutional autoencoder on 100 Hz log-mel, downsampled x4 to 25 Hz and quantized
to 4,096 codes, by FSQ (finite scalar quantization) or by a VQ codebook (vector-quantize-pytorch for both).

The decoder reconstructs the log-mel *and* the pitch contour (log F0, voicing from Praat), so the codes must keep
pitch, energy and timing: what the content-dominated linguistic stream drops. Everything before the quantizer is
causal, so streaming encoding gives exactly the offline codes (see `SemanticState`).

FSQ has no codebook to collapse, but leaves level *combinations* unused (13.8 % of 4^6 dead on training audio).
The VQ option (k-means init, EMA updates, low-dimensional l2-normalized codes, dead-code restarts from the batch)
spreads its codes over where the latents are, the usual cure for dead codes (SoundStream, improved VQGAN).
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
    # "vq": a `codebook_size` x `codebook_dim` EMA codebook (default); "fsq": `levels`. Measured, 400-step runs on
    # the same data (reports/semantic_usage_n2000.json): held-out dead codes 15 % (VQ) vs 62 % (FSQ 4^6), usage
    # perplexity 2473 vs 380, equal mel L1.
    quantizer: str = "vq"
    # FSQ: 4^6 = 4,096 codes; dead codes 13.8 % vs 24.5 % for 8^4 and 25.3 % for 2^12 (reports/tokenizer_fsq8x4/tokenizer.md)
    levels: list[int] = field(default_factory=lambda: [4, 4, 4, 4, 4, 4])
    channels: int = 192
    layers: int = 4  # residual causal conv blocks on each side
    kernel: int = 5
    preserve_symmetry: bool = False  # FSQ option; required for levels of 2
    noise_dropout: float = 0.0  # FSQ option (needs preserve_symmetry): random rounding offsets while training
    # the decoder also predicts the local phone rate (aqaa.train.tokenizer.local_rate). Off by default: measured, it
    # did not raise the semantic rate probe (0.600 vs 0.633, n=30) and left more dead codes (reports/tokenizer_rate)
    rate_head: bool = False
    codebook_size: int = 4096
    codebook_dim: int = 8
    vq_decay: float = 0.99
    commitment_weight: float = 0.25
    dead_code_threshold: float = 0.02  # EMA uses per training step below which a code restarts on a batch vector
    cosine: bool = True  # l2-normalized codes and latents (cosine similarity)

    @property
    def codes(self) -> int:
        return math.prod(self.levels) if self.quantizer == "fsq" else self.codebook_size

    @property
    def code_dim(self) -> int:
        return len(self.levels) if self.quantizer == "fsq" else self.codebook_dim


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
        from vector_quantize_pytorch import FSQ, VectorQuantize

        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.register_buffer("mel_mean", torch.zeros(N_MELS, 1))
        self.register_buffer("mel_std", torch.ones(N_MELS, 1))
        self.enc_in = CausalConv(N_MELS, c, cfg.kernel)
        self.enc = nn.Sequential(*[ResBlock(c, cfg.kernel, 2**i) for i in range(cfg.layers)])
        self.down = nn.Conv1d(c, c, DOWNSAMPLE, stride=DOWNSAMPLE)  # frames 4t..4t+3 -> token t: no look-ahead
        self.to_code = nn.Conv1d(c, cfg.code_dim, 1)
        if cfg.quantizer not in ("fsq", "vq"):
            raise ValueError(f"semantic quantizer must be 'fsq' or 'vq', not {cfg.quantizer!r}")
        if cfg.quantizer == "fsq":
            self.fsq = FSQ(levels=list(cfg.levels), preserve_symmetry=cfg.preserve_symmetry,
                           noise_dropout=cfg.noise_dropout)
        else:
            self.vq = VectorQuantize(dim=cfg.codebook_dim, codebook_size=cfg.codebook_size, decay=cfg.vq_decay,
                                     kmeans_init=True, threshold_ema_dead_code=cfg.dead_code_threshold,
                                     commitment_weight=cfg.commitment_weight, use_cosine_sim=cfg.cosine)
        self.from_code = nn.Conv1d(cfg.code_dim, c, 1)
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

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, N, code_dim] latents -> (quantized codes, indices [B, N], auxiliary loss: VQ commitment, else 0)."""
        if self.cfg.quantizer == "fsq":
            codes, idx = self.fsq(latent)
            return codes, idx, latent.new_zeros(())
        codes, idx, commit = self.vq(latent)
        return codes, idx, commit.sum()

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 80, T] -> [B, T/4] code indices."""
        return self.quantize(self.encode_latent(mel))[1]

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

    def code_vectors(self) -> torch.Tensor:
        """[codes, code_dim]: the quantized vector each code index stands for."""
        idx = torch.arange(self.cfg.codes)
        if self.cfg.quantizer == "fsq":
            return self.fsq.indices_to_codes(idx)
        return self.vq.get_codes_from_indices(idx)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        if self.cfg.quantizer == "fsq":
            return self.decode_codes(self.fsq.indices_to_codes(indices))
        return self.decode_codes(self.vq.get_output_from_indices(indices))

    def forward(self, mel: torch.Tensor, with_latent: bool = False):
        """-> (decoded, indices[, latent, auxiliary loss])."""
        latent = self.encode_latent(mel)
        codes, idx, aux = self.quantize(latent)
        return (self.decode_codes(codes), idx, latent, aux) if with_latent else (self.decode_codes(codes), idx)
