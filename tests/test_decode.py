"""The lean decode path (`aqaa.lm.decode`) against transformers' own forward: same logits for a prompt and for
token-by-token steps (also with grouped KV heads and past the cache's first 256 slots), copies that continue alike,
and output-head rows limited to what the grammar allows."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aqaa.lm.decode import HFDecoder, LlamaDecoder
from aqaa.lm.model import PRESETS, AudioLM

LINES = ["What is the capital of Japan?", "The capital of Japan is Tokyo.", "Seven plus five is twelve."] * 5


def tiny(kv_heads: int = 2) -> AudioLM:
    cfg = dataclasses.replace(PRESETS["tiny"], heads=4, kv_heads=kv_heads, hidden=32)
    lm = AudioLM.create(cfg, LINES, seed=3)
    lm.model.eval()
    return lm


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_lean_forward_gives_transformers_logits(kv_heads):
    lm = tiny(kv_heads)
    torch.manual_seed(0)
    prompt = torch.randint(0, lm.vocab.size, (200,)).tolist()
    steps = torch.randint(0, lm.vocab.size, (80,)).tolist()  # 280 positions: the cache grows past 256
    lean, hf = LlamaDecoder(lm.model), HFDecoder(lm.model)
    c_lean, c_hf = lean.new_cache(), hf.new_cache()
    torch.testing.assert_close(lean.forward(prompt, c_lean), hf.forward(prompt, c_hf), atol=1e-5, rtol=1e-4)
    for i, token in enumerate(steps):
        if i == 40:  # a few tokens at once mid-stream, too
            torch.testing.assert_close(lean.forward(steps[40:43], c_lean), hf.forward(steps[40:43], c_hf),
                                       atol=1e-5, rtol=1e-4)
        if 40 <= i < 43:
            continue
        last = lean.forward([token], c_lean)
        torch.testing.assert_close(last, hf.forward([token], c_hf), atol=1e-5, rtol=1e-4)
    assert c_lean.length == 280 and c_hf.get_seq_length() == 280
    with torch.inference_mode():  # and step by step equals the whole sequence in one transformers call
        full = lm.model(input_ids=torch.tensor([prompt + steps])).logits[0, -1]
    torch.testing.assert_close(last, full, atol=1e-5, rtol=1e-4)


def test_cache_copies_continue_alike_and_reset_empties():
    lm = tiny()
    dec = LlamaDecoder(lm.model)
    cache = dec.new_cache()
    dec.forward(list(range(10, 30)), cache)
    fork = cache.copy()
    a = [dec.forward([7 + i], cache) for i in range(5)]
    b = [dec.forward([7 + i], fork) for i in range(5)]
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    cache.reset()
    assert cache.length == 0 and not cache.keys
    assert fork.length == 25


def test_head_rows_the_grammar_allows_give_the_same_answer():
    """Computing only the output-head rows the grammar allows next changes nothing that is sampled."""
    from aqaa.lm.decode import mask_runs
    from aqaa.lm.generate import Generator, Sampling

    lm = tiny()
    dec = LlamaDecoder(lm.model)
    mask = torch.zeros(lm.vocab.size, dtype=torch.bool)
    mask[3:40], mask[lm.vocab.s_range[0]:lm.vocab.s_range[1]], mask[-1] = True, True, True
    runs = mask_runs(mask)
    assert runs == [(3, 40), lm.vocab.s_range, (lm.vocab.size - 1, lm.vocab.size)]
    full, part = dec.forward(list(range(50)), dec.new_cache()), dec.forward(list(range(50)), dec.new_cache(), runs)
    torch.testing.assert_close(full[mask], part[mask], atol=1e-6, rtol=1e-5)
    assert torch.isinf(part[~mask]).all()
    v = lm.vocab
    q = [v.ctrl["bos"], v.ctrl["user"], v.ctrl["audio_start"], *v.audio_group_ids([1, 2], [3, 4, 5]),
         v.ctrl["audio_end"], v.ctrl["end_turn"], v.ctrl["assistant"]]
    answers = []
    for restrict in (True, False):
        gen = Generator(lm, Sampling(max_groups=8, max_text_tokens=6, seed=0))
        if not restrict:
            gen._rows = {k: None for k in gen._rows}
        answers.append([e.ids for e in gen.answer(gen.feed(gen.new_state(), q))])
    assert answers[0] == answers[1] and len(answers[0]) > 3


@pytest.mark.parametrize("kv_heads,encoder,dtype", [(4, 0, torch.float32), (2, 0, torch.float32),
                                                    (4, 16, torch.float32), (2, 0, torch.float16)])
def test_packed_steps_give_the_same_logits(kv_heads, encoder, dtype):
    """`pack()` (fused weight copies for one-token steps) computes the same function: also with grouped KV heads,
    past the cache's first 256 slots, with head rows, and with the heard-audio encoder; fp16 copies within 1e-2."""
    from aqaa.lm.decode import mask_runs

    cfg = dataclasses.replace(PRESETS["tiny"], heads=4, kv_heads=kv_heads, hidden=32, heard_encoder=encoder)
    lm = AudioLM.create(cfg, LINES, seed=3)
    lm.model.eval()
    torch.manual_seed(0)
    prompt = torch.randint(0, lm.vocab.size, (200,)).tolist()
    steps = torch.randint(0, lm.vocab.size, (70,)).tolist()
    rows = mask_runs(torch.arange(lm.vocab.size) % 3 == 0)
    plain, packed = LlamaDecoder(lm.model), LlamaDecoder(lm.model).pack(dtype)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    c_plain, c_packed = plain.new_cache(), packed.new_cache()
    torch.testing.assert_close(packed.forward(prompt, c_packed), plain.forward(prompt, c_plain))
    for i, token in enumerate(steps):
        r = rows if i % 2 else None
        torch.testing.assert_close(packed.forward([token], c_packed, r), plain.forward([token], c_plain, r), **tol)
    assert c_packed.length == c_plain.length == 270
    with torch.no_grad():  # the copies are not live: training moves the modules, not the packed step
        lm.model.model.layers[0].mlp.down_proj.weight.add_(1.0)
    assert not torch.allclose(packed.forward([5], c_packed.copy()), plain.forward([5], c_plain.copy()))
    packed.pack(dtype)
    torch.testing.assert_close(packed.forward([5], c_packed), plain.forward([5], c_plain), **tol)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int4])
def test_quantized_steps_stay_close(dtype):
    """int8 / int4 packed steps (weight-only, for big backbones) keep the next-token distribution: argmax and a small
    KL against the exact fp32 step; int4 rounds in groups of 32 inputs and pads rows to its kernel's 16."""
    from aqaa.lm.decode import Int4Matrix, Int8Matrix

    cfg = dataclasses.replace(PRESETS["tiny"], heads=4, kv_heads=2, hidden=64)
    lm = AudioLM.create(cfg, LINES, seed=3)
    lm.model.eval()
    torch.manual_seed(0)
    prompt = torch.randint(0, lm.vocab.size, (60,)).tolist()
    steps = torch.randint(0, lm.vocab.size, (40,)).tolist()
    exact, quant = LlamaDecoder(lm.model).pack(torch.float32), LlamaDecoder(lm.model).pack(dtype)
    kind = Int8Matrix if dtype == torch.int8 else Int4Matrix
    assert all(isinstance(m, kind) for m in (quant.packed[0].qkv, quant.packed[0].down))
    c_exact, c_quant = exact.new_cache(), quant.new_cache()
    exact.forward(prompt, c_exact), quant.forward(prompt, c_quant)
    agree, kl = 0, 0.0
    for token in steps:
        a, b = exact.forward([token], c_exact), quant.forward([token], c_quant)
        agree += int(a.argmax() == b.argmax())
        kl += float(torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="sum"))
    assert agree >= 0.9 * len(steps) and kl / len(steps) < 1e-2
    # a head block of an odd number of rows (the kernel tiles 16) and inputs not in whole groups (int8 instead)
    w = torch.randn(37, 64)
    m = Int4Matrix.quantize(w)
    x = torch.randn(1, 64)
    assert m.mv(x).shape == (1, 37)
    torch.testing.assert_close(m.mv(x), x @ w.t(), atol=0.1 * float((x @ w.t()).abs().max()), rtol=0)
    quant._dtype = torch.int4
    assert isinstance(quant._layout(torch.randn(16, 40)), Int8Matrix)
