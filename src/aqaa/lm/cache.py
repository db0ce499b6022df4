"""A KV cache that grows in place: decoding one token appends into preallocated room instead of re-copying the
whole cache (transformers' DynamicLayer concatenates, which on a 2-core CPU cost ~30 % of a decode step at a few
hundred tokens of context, more in long conversations)."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views of a buffer with spare room (doubled when full)."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._k = self._v = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, new = self.get_seq_length(), key_states.shape[-2]
        if self._k is None or n + new > self._k.shape[-2]:
            room = max(256, 2 * (n + new))
            shape = (*key_states.shape[:-2], room, key_states.shape[-1])
            k, v = key_states.new_empty(shape), value_states.new_empty(shape)
            if n:
                k[..., :n, :], v[..., :n, :] = self.keys, self.values
            self._k, self._v = k, v
        self._k[..., n: n + new, :] = key_states
        self._v[..., n: n + new, :] = value_states
        self.keys, self.values = self._k[..., : n + new, :], self._v[..., : n + new, :]
        return self.keys, self.values

    def reset(self) -> None:
        self._k = self._v = None
        super().reset()


def growing_cache(config) -> DynamicCache:
    """A DynamicCache for `config` whose layers grow in place (same results, no per-token copy of the cache)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache
