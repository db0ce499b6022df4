"""Token-by-token inference for the backbone: a lean Llama forward over an explicit KV cache.

Why by hand: at the default size (6.4 M parameters) transformers' forward spends ~3 ms per token in Python
(output capturing, mask building, cache dispatch) against ~1.5-2.5 ms of arithmetic, and decoding is what decides
real time on a 2-core CPU. This path reuses the HF modules' weights (and their Linear modules, so an int8-quantized
model works unchanged) and computes the same function; `tests/test_lm.py` holds it to the HF forward. Models it
does not cover (another architecture, a non-default RoPE) fall back to HF with the same interface.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class KVCache:
    """Keys and values of every position fed so far, per layer, in buffers with spare room (doubled when full)."""

    keys: list[torch.Tensor] = field(default_factory=list)  # [1, kv_heads, capacity, head_dim] per layer
    values: list[torch.Tensor] = field(default_factory=list)
    length: int = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer `layer`'s new keys/values at positions [length, length + T); return all of them so far."""
        n, t = self.length, k.shape[2]
        if layer == len(self.keys):  # first use of this layer
            self.keys.append(k.new_empty(*k.shape[:2], 0, k.shape[3]))
            self.values.append(v.new_empty(*v.shape[:2], 0, v.shape[3]))
        if n + t > self.keys[layer].shape[2]:
            room = max(256, 2 * (n + t))
            for store in (self.keys, self.values):
                old = store[layer]
                store[layer] = old.new_empty(*old.shape[:2], room, old.shape[3])
                store[layer][:, :, :n] = old[:, :, :n]
        self.keys[layer][:, :, n: n + t] = k
        self.values[layer][:, :, n: n + t] = v
        return self.keys[layer][:, :, : n + t], self.values[layer][:, :, : n + t]

    def copy(self) -> "KVCache":
        return copy.deepcopy(self)

    def reset(self) -> None:
        self.keys, self.values, self.length = [], [], 0


# what `LlamaDecoder.pack` takes (and an aqaa model folder's `step_dtype` names)
STEP_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8,
               "int4": torch.int4}


def fast_path_supported(model) -> bool:
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    return (cfg.model_type == "llama" and rope.get("rope_type", "default") == "default"
            and cfg.hidden_act == "silu" and not getattr(cfg, "attention_bias", False))


def mask_runs(allowed: torch.Tensor) -> list[tuple[int, int]]:
    """The [lo, hi) runs of True in a boolean mask over the vocabulary."""
    edges = torch.diff(allowed.int(), prepend=torch.zeros(1, dtype=torch.int), append=torch.zeros(1, dtype=torch.int))
    return list(zip(torch.nonzero(edges == 1).flatten().tolist(), torch.nonzero(edges == -1).flatten().tolist()))


class LlamaDecoder:
    """`forward(ids, cache, rows)` -> logits of the last position, extending `cache` by `ids`. With `rows` (the
    [lo, hi) id runs the grammar allows next) only those rows of the output head are computed, the rest are -inf:
    the head is a quarter of the weights read per token, and an audio step needs 1,024 or 4,096 of its rows."""

    def __init__(self, model):
        if not fast_path_supported(model):
            raise ValueError(f"no lean decode path for {model.config.model_type}")
        self.model = model
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.inv_freq = model.model.rotary_emb.inv_freq.float()
        self.scale = self.head_dim ** -0.5
        self.packed: list[PackedLayer] | None = None  # set by `pack()`: the single-token step's own weight copies
        self._head_blocks: dict[tuple[int, int], torch.Tensor] = {}
        self._rope_table: tuple[torch.Tensor, torch.Tensor] | None = None
        self._input_major, self._dtype = True, torch.float32

    def pack(self, dtype: torch.dtype = torch.float32) -> "LlamaDecoder":
        """Copy the weights into the layout a one-token step reads fastest, for a model that no longer trains.

        Why: a step is a chain of matrix-vector products whose weights (19 MB at the default size) stream from
        memory every token. Fused (q|k|v, gate|up) fp32 copies laid out input-major (`x @ W`, W [in, out]) read
        ~1.5x faster than the modules' own [out, in] Linears on this 2-core CPU and give the same logits; fp16
        copies (output-major, where torch's fp16 matrix-vector kernel is fast; fp32 accumulation) read ~4x faster
        and move a logit by <= 0.02 (the answers of the 200 SpokenQA test items stayed as good: reports/
        decode_speed.md). int8 / int4: weight-only quantized copies (per row / per group of 32 inputs) read by
        torch's CPU kernels with bf16 activations: a half / a quarter of fp16's bytes, for backbones whose
        weight reads, not Python, bound a step (`smollm2`: reports/decode_quantized.md). Prompts (many tokens at
        once) still go through the modules in fp32. The copies are not updated: `pack()` again after the
        weights change."""
        if dtype not in STEP_DTYPES.values():
            raise ValueError(f"pack() takes one of {', '.join(STEP_DTYPES)}, not {dtype}")
        self._input_major, self._dtype = dtype == torch.float32, dtype

        def fused(*weights: torch.Tensor) -> torch.Tensor:  # [out, in] modules -> one matrix in the step's layout
            return self._layout(torch.cat([w.detach() for w in weights]))

        layers = []
        for layer in self.model.model.layers:
            a, mlp = layer.self_attn, layer.mlp
            linears = (a.q_proj, a.k_proj, a.v_proj, a.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
            if any(type(m) is not torch.nn.Linear or m.bias is not None for m in linears):
                raise ValueError("pack() needs plain bias-free nn.Linear projections (a quantized model cannot pack)")
            layers.append(PackedLayer(fused(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight), fused(a.o_proj.weight),
                                      fused(mlp.gate_proj.weight, mlp.up_proj.weight), fused(mlp.down_proj.weight),
                                      layer.input_layernorm.weight.detach(),
                                      layer.post_attention_layernorm.weight.detach()))
        self.packed, self._head_blocks = layers, {}
        positions = torch.arange(self.model.config.max_position_embeddings, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self._rope_table = (emb.cos(), emb.sin())
        return self

    def new_cache(self) -> KVCache:
        return KVCache()

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    @torch.inference_mode()
    def forward(self, ids: list[int], cache: KVCache, rows: list[tuple[int, int]] | None = None) -> torch.Tensor:
        if self.packed is not None and len(ids) == 1 and cache.length < len(self._rope_table[0]):
            return self._step(ids[0], cache, rows)
        m, t, n = self.model.model, len(ids), cache.length
        x = m.embed_tokens(torch.tensor([ids], dtype=torch.long))
        freqs = torch.arange(n, n + t, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = None
        if t > 1:  # causal over the new positions, everything cached before them visible
            mask = torch.ones(t, n + t, dtype=torch.bool).tril(diagonal=n)
        for i, layer in enumerate(m.layers):
            attn = layer.self_attn
            h = self._norm(x, layer.input_layernorm.weight)
            q = attn.q_proj(h).view(1, t, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            k, v = cache.append(i, k, v)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                               enable_gqa=self.heads != self.kv_heads)
            x = x + attn.o_proj(a.transpose(1, 2).reshape(1, t, -1))
            h = self._norm(x, layer.post_attention_layernorm.weight)
            mlp = layer.mlp
            x = x + mlp.down_proj(F.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        cache.length = n + t
        x = self._norm(x[:, -1], m.norm.weight)
        head = self.model.lm_head
        if rows is None or head.bias is not None:
            return head(x)[0].float()
        logits = torch.full((head.out_features,), float("-inf"))
        for lo, hi in rows:
            logits[lo:hi] = F.linear(x, head.weight[lo:hi])[0]
        return logits

    def _layout(self, w: torch.Tensor) -> "torch.Tensor | Int8Matrix | Int4Matrix":
        """An [out, in] weight as the packed step reads it."""
        if self._dtype == torch.int4 and w.shape[1] % Int4Matrix.GROUP == 0:
            return Int4Matrix.quantize(w)
        if self._dtype in (torch.int8, torch.int4):  # int4's kernel needs inputs in whole groups: int8 otherwise
            return Int8Matrix.quantize(w)
        return (w.t() if self._input_major else w).contiguous().to(self._dtype)

    def _mv(self, x: torch.Tensor, w: "torch.Tensor | Int8Matrix | Int4Matrix") -> torch.Tensor:
        """x [1, in] (fp32) times a packed matrix; the result in fp32."""
        if isinstance(w, (Int8Matrix, Int4Matrix)):
            return w.mv(x)
        x = x.to(self._dtype)
        return (x @ w if self._input_major else F.linear(x, w)).float()

    def _step(self, token: int, cache: KVCache, rows: list[tuple[int, int]] | None) -> torch.Tensor:
        """One token through the packed weights: the function of `forward`, with fewer and faster weight reads."""
        m, n = self.model.model, cache.length
        hd, nq, nkv = self.head_dim, self.heads, self.kv_heads
        if type(m.embed_tokens) is torch.nn.Embedding and not m.embed_tokens._forward_hooks:
            x = m.embed_tokens.weight[token].view(1, -1).float()
        else:  # e.g. the heard-audio encoder's embedding: its own forward
            x = m.embed_tokens(torch.tensor([[token]], dtype=torch.long))[0].float()
        cos, sin = self._rope_table[0][n], self._rope_table[1][n]
        half = hd // 2
        for i, p in enumerate(self.packed):
            h = F.rms_norm(x, (x.shape[-1],), p.input_norm, self.eps)
            qkv = self._mv(h, p.qkv).view(nq + 2 * nkv, hd)
            qk = qkv[: nq + nkv]
            qk = qk * cos + torch.cat((-qk[:, half:], qk[:, :half]), dim=-1) * sin
            q, k, v = qk[:nq], qk[nq:], qkv[nq + nkv:]
            k, v = cache.append(i, k.view(1, nkv, 1, hd), v.view(1, nkv, 1, hd))
            a = F.scaled_dot_product_attention(q.view(1, nq, 1, hd), k, v, scale=self.scale,
                                               enable_gqa=nq != nkv)
            x = x + self._mv(a.view(1, -1), p.o)
            h = F.rms_norm(x, (x.shape[-1],), p.post_norm, self.eps)
            gate, up = self._mv(h, p.gate_up).chunk(2, dim=-1)
            x = x + self._mv(F.silu(gate) * up, p.down)
        cache.length = n + 1
        x = F.rms_norm(x, (x.shape[-1],), m.norm.weight, self.eps)
        head = self.model.lm_head
        if head.bias is not None:
            return head(x)[0].float()
        logits = torch.full((head.out_features,), float("-inf"))
        for lo, hi in rows if rows is not None else [(0, head.out_features)]:
            block = self._head_blocks.get((lo, hi))
            if block is None:
                block = self._head_blocks[(lo, hi)] = self._layout(head.weight[lo:hi].detach())
            logits[lo:hi] = self._mv(x, block)[0]
        return logits


@dataclass
class Int8Matrix:
    """An [out, in] weight as int8 rows and one bf16 scale per row (symmetric, max-abs): what
    `torch._weight_int8pack_mm` reads. Rounding moves each weight by at most half a step of its row's scale."""

    weight: torch.Tensor  # [out, in] int8
    scale: torch.Tensor  # [out] bf16

    @classmethod
    def quantize(cls, w: torch.Tensor) -> "Int8Matrix":
        w = w.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)  # rounded first: q uses the same
        q = (w / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        return cls(q, scale)

    def mv(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scale).float()


@dataclass
class Int4Matrix:
    """An [out, in] weight as 4-bit codes, asymmetric per group of 32 inputs (a bf16 scale and offset each), in
    torch's packed CPU layout; rows padded to a multiple of 16 (the kernel's tile), cut off again after the product."""

    GROUP = 32
    weight: torch.Tensor  # packed by aten._convert_weight_to_int4pack_for_cpu
    scales_zeros: torch.Tensor  # [in / GROUP, padded out, 2] bf16: w = (code - 8) * scale + zero
    out_features: int

    @classmethod
    def quantize(cls, w: torch.Tensor) -> "Int4Matrix":
        w = w.detach().float()
        out, inp = w.shape
        w = torch.cat([w, w.new_zeros(-out % 16, inp)])
        groups = w.view(w.shape[0], inp // cls.GROUP, cls.GROUP)
        best = None
        for shrink in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75):  # clip each group's range where that rounds it best
            low, high = groups.amin(-1) * shrink, groups.amax(-1) * shrink
            scale = ((high - low) / 15).clamp(min=1e-8).to(torch.bfloat16).float()
            codes = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15)
            err = ((codes * scale[..., None] + low[..., None] - groups) ** 2).sum(-1)
            if best is None:
                best = [err, low, scale, codes]
            else:
                better = err < best[0]
                best = [torch.where(better, err, best[0]), torch.where(better, low, best[1]),
                        torch.where(better, scale, best[2]), torch.where(better[..., None], codes, best[3])]
        _, low, scale, codes = best
        zero = low + 8 * scale  # the kernel computes (code - 8) * scale + zero
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).view(w.shape[0], inp), 1)
        return cls(packed, torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous(), out)

    def mv(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.weight, self.GROUP,
                                                        self.scales_zeros)
        return y[:, : self.out_features].float()


@dataclass
class PackedLayer:
    """One decoder layer's weights, fused, in the single-token step's layout and dtype (`LlamaDecoder.pack`)."""

    qkv: "torch.Tensor | Int8Matrix | Int4Matrix"
    o: "torch.Tensor | Int8Matrix | Int4Matrix"
    gate_up: "torch.Tensor | Int8Matrix | Int4Matrix"
    down: "torch.Tensor | Int8Matrix | Int4Matrix"
    input_norm: torch.Tensor
    post_norm: torch.Tensor


class HFDecoder:
    """The same interface over transformers' own forward (any architecture), with an in-place growing cache."""

    def __init__(self, model):
        self.model = model

    def new_cache(self):
        from aqaa.lm.cache import growing_cache

        return growing_cache(self.model.config)

    @torch.inference_mode()
    def forward(self, ids: list[int], cache, rows: list[tuple[int, int]] | None = None) -> torch.Tensor:
        out = self.model(input_ids=torch.tensor([ids], dtype=torch.long), cache=cache, use_cache=True,
                         logits_to_keep=1)
        return out.logits[0, -1].float()


def decoder_for(model) -> "LlamaDecoder | HFDecoder":
    return LlamaDecoder(model) if fast_path_supported(model) else HFDecoder(model)
