"""Discriminators for the vocoder's adversarial fine-tune (training only; `aqaa train vocoder adv_weight=...`).

HiFi-GAN's multi-period discriminator (a waveform folded by its period p into a [T / p, p] image, so each column
holds samples one period apart: it sees whether the signal repeats, i.e. periodicity) and UnivNet's multi-resolution
spectrogram discriminator, at a quarter to an eighth of the published widths (and the spectrogram's first
convolution strided) so that a step fits a 2-core CPU. The losses are least-squares GAN losses plus feature
matching, as in HiFi-GAN.
Why by hand: no maintained package ships these as importable modules (they live inside model repositories).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

LRELU = 0.1


def conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU convolutions, then the scoring convolution: (scores [B, *], every layer's output)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: int = 16):
        super().__init__()
        self.period = period
        widths = [1, channels, 2 * channels, 4 * channels, 4 * channels]
        self.convs = nn.ModuleList(weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)))
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), 1, padding=(2, 0))))
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """y [B, N] -> (scores [B, *], feature maps)."""
        b, n = y.shape
        pad = (-n) % self.period
        x = F.pad(y, (0, pad), mode="reflect" if pad < n else "constant").view(b, 1, -1, self.period)
        return conv_stack(self.convs, self.post, x)


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, channels: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        # every conv halves the frequency axis (UnivNet's first keeps it): 4x cheaper, the CPU's share of a step
        self.convs = nn.ModuleList([weight_norm(nn.Conv2d(1, channels, (3, 9), (1, 2), padding=(1, 4)))] + [
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))) for _ in range(3)] + [
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))])
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        mag = torch.stft(y, self.n_fft, self.hop, window=self.window, return_complex=True).abs()
        x = mag.transpose(1, 2)[:, None]  # [B, 1, frames, bins]
        return conv_stack(self.convs, self.post, x)


class VocoderDiscriminator(nn.Module):
    """All sub-discriminators: `forward(y)` -> one (scores, feature maps) pair per sub-discriminator."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11),
                 resolutions: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256)), channels: int = 16,
                 input_gain: float = 10.0):
        super().__init__()
        # speech at ~-25 dBFS gives a fresh discriminator tiny activations: measured on shipped-vocoder output, it
        # stayed at chance (loss 0.50) for 200 steps at lr 1e-3 with gain 1, and reached 0.42 with gain 10
        self.input_gain = input_gain
        self.subs = nn.ModuleList([PeriodDiscriminator(p, channels) for p in periods]
                                  + [ResolutionDiscriminator(n, h, channels) for n, h in resolutions])

    def forward(self, y: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(y * self.input_gain) for d in self.subs]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Least squares: real scores towards 1, generated towards 0 (mean over sub-discriminators)."""
    return sum(((1 - r) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(real, fake)) / len(real)


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial: generated scores towards 1, feature matching: L1 between the real and generated feature maps),
    each a mean over sub-discriminators (and their layers)."""
    adv = sum(((1 - f) ** 2).mean() for f, _ in fake) / len(fake)
    fm = sum(sum(F.l1_loss(b, a.detach()) for a, b in zip(fr, ff)) / len(fr)
             for (_, fr), (_, ff) in zip(real, fake)) / len(fake)
    return adv, fm
