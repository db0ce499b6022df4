"""Would int8 weights make the `smollm2` backbone decode in real time on 2 cores? Times one token's matrix-vector
products of SmolLM2-135M's 30 decoder layers (fused q|k|v, o, gate|up, down; random weights: the time does not
depend on them) in float16, the engine's step dtype, and as per-channel int8 through torch's weight-only kernel.

    .venv/bin/python scripts/bench_matvec_int8.py [--threads 2] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from aqaa.lm.decode import Int8Matrix

HIDDEN, INTERMEDIATE, KV, LAYERS = 576, 1536, 192, 30
SHAPES = [(HIDDEN + 2 * KV, HIDDEN), (HIDDEN, HIDDEN), (2 * INTERMEDIATE, HIDDEN), (HIDDEN, INTERMEDIATE)] * LAYERS


def per_token_ms(step, runs: int = 50) -> float:
    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(runs):
        step()
    return (time.perf_counter() - t) / runs * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs = {n: torch.randn(1, n) for n in (HIDDEN, INTERMEDIATE)}
    fp16 = [torch.randn(o, i).half() for o, i in SHAPES]
    int8 = [Int8Matrix.quantize(torch.randn(o, i)) for o, i in SHAPES]  # the engine's own int8 step weights
    x16 = {n: x.half() for n, x in inputs.items()}
    xb = {n: x.bfloat16() for n, x in inputs.items()}
    result = {
        "float16_ms_per_token": round(per_token_ms(
            lambda: [torch.nn.functional.linear(x16[w.shape[1]], w) for w in fp16]), 2),
        "int8_weight_only_ms_per_token": round(per_token_ms(
            lambda: [torch._weight_int8pack_mm(xb[m.weight.shape[1]], m.weight, m.scale) for m in int8]), 2),
        "threads": args.threads, "torch": torch.__version__, "what": "30 layers' matrix-vector products, one token",
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
