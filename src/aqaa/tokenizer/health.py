"""Codebook health: how many codes a stream really uses, the one measure every tokenizer report shares."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def codebook_health(codes: Iterable[np.ndarray], codebook_size: int) -> dict:
    """Usage of a codebook over token arrays: tokens seen, codes used, dead fraction (codes never used) and usage
    perplexity (exp of the entropy of the code histogram; `codebook_size` when every code is equally used)."""
    arrays = [np.asarray(c, dtype=np.int64).ravel() for c in codes]
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= codebook_size):
        raise ValueError(f"codes outside [0, {codebook_size}): {flat.min()}..{flat.max()}")
    counts = np.bincount(flat, minlength=codebook_size)
    p = counts[counts > 0] / max(flat.size, 1)
    return {"tokens": int(flat.size), "codes": codebook_size, "used": int((counts > 0).sum()),
            "dead_fraction": round(float((counts == 0).mean()), 4),
            "perplexity": round(float(np.exp(-(p * np.log(p)).sum())), 1) if flat.size else 0.0}
