"""The 2:3 interleave of SPEC and its exact inverse.

Rates: one linguistic token per 60 ms (960 samples at 16 kHz), one semantic token per 40 ms (640 samples).
Every 120 ms of audio (GROUP_SAMPLES) becomes the group `L L S S S`.

Pad rule: a clip is zero-padded at its end to a whole number of groups, so a clip of n samples gives
ceil(n / 1920) groups = 2 g linguistic + 3 g semantic tokens. The true length travels beside the tokens
(`duration_s`), so the vocoder trims its output to it: padding in, padding out.

Token ids: each stream has local codes (linguistic 0..1023, semantic 0..4095). The interleaved sequence uses
audio-token ids 0..5119: linguistic code k is id k, semantic code k is id 1024 + k, matching the vocabulary order
`<l_0>..<l_1023>, <s_0>..<s_4095>` the LM appends to its text vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16_000
GROUP_SAMPLES = 1920  # 120 ms
L_PER_GROUP, S_PER_GROUP = 2, 3
L_HOP, S_HOP = GROUP_SAMPLES // L_PER_GROUP, GROUP_SAMPLES // S_PER_GROUP  # 960, 640 samples
L_CODES, S_CODES = 1024, 4096
AUDIO_TOKENS = L_CODES + S_CODES  # 5,120


def n_groups(n_samples: int) -> int:
    return max(1, math.ceil(n_samples / GROUP_SAMPLES))


def pad_to_groups(samples: np.ndarray) -> np.ndarray:
    """Zero-pad at the end to a whole number of 120 ms groups (at least one)."""
    target = n_groups(len(samples)) * GROUP_SAMPLES
    return np.pad(samples, (0, target - len(samples))) if target > len(samples) else samples


def interleave(linguistic, semantic, l_codes: int = L_CODES) -> list[int]:
    """[l0 l1 s0 s1 s2, l2 l3 s3 s4 s5, ...] with semantic ids offset by `l_codes`."""
    lin, sem = list(map(int, linguistic)), list(map(int, semantic))
    groups = len(lin) // L_PER_GROUP
    if len(lin) != L_PER_GROUP * groups or len(sem) != S_PER_GROUP * groups:
        raise ValueError(f"streams do not form whole groups: {len(lin)} linguistic, {len(sem)} semantic tokens")
    out: list[int] = []
    for g in range(groups):
        out += lin[2 * g : 2 * g + 2]
        out += [l_codes + s for s in sem[3 * g : 3 * g + 3]]
    return out


def deinterleave(tokens, l_codes: int = L_CODES) -> tuple[list[int], list[int]]:
    """Exact inverse of `interleave`; refuses sequences that are not whole, well-formed groups."""
    tokens = list(map(int, tokens))
    if len(tokens) % (L_PER_GROUP + S_PER_GROUP):
        raise ValueError(f"{len(tokens)} audio tokens are not a whole number of 5-token groups")
    lin, sem = [], []
    for g in range(0, len(tokens), 5):
        l_part, s_part = tokens[g : g + 2], tokens[g + 2 : g + 5]
        if any(not 0 <= t < l_codes for t in l_part) or any(t < l_codes for t in s_part):
            raise ValueError(f"group {g // 5} is not L L S S S: {tokens[g:g + 5]}")
        lin += l_part
        sem += [t - l_codes for t in s_part]
    return lin, sem
