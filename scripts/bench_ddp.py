"""Training throughput, 1 process vs 2 DDP processes vs 2 FSDP processes (gloo) on this machine -> reports/ddp_cpu.json.

    .venv/bin/python scripts/bench_ddp.py --data data/spokenqa --tokens runs/tokens46/tokens.jsonl [--steps 30]

Both runs train LM stage 1 of the same preset with the same global batch; 1 process gets both cores
(OMP_NUM_THREADS=2), each of 2 processes gets one. Tokens/s = all tokens of the global batches / wall time of the
steps (from metrics.jsonl, first 5 steps dropped as warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(nproc: int, args, out: Path, fsdp: bool = False) -> dict:
    over = [f"steps={args.steps}", f"batch={args.batch}", "log_every=1", f"ckpt_every={args.steps}", "warmup=5",
            f"fsdp={str(fsdp).lower()}"]
    base = ["-m", "aqaa.cli", "train", "pretrain", "--stage", "1", "--preset", args.preset, "--data", args.data,
            "--tokens", args.tokens, "--out", str(out), *over]
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // nproc)}
    if nproc == 1:
        cmd = [sys.executable, *base]
    else:
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(nproc), "--master_port",
               "29533", *base]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(x) for x in (out / "stage1" / "metrics.jsonl").read_text().splitlines()]
    a, b = rows[4], rows[-1]
    return {"processes": nproc, "mode": "fsdp" if fsdp else ("ddp" if nproc > 1 else "single"), "threads_each": 2 // nproc, "tokens_per_s": round((b["tokens"] - a["tokens"])
                                                                                 / (b["elapsed_s"] - a["elapsed_s"])),
            "final_loss": b["loss"], "measured_steps": b["step"] - a["step"],
            "measured_s": round(b["elapsed_s"] - a["elapsed_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/spokenqa")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="reports/ddp_cpu.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(1, args, Path(tmp) / "one"), run(2, args, Path(tmp) / "two"),
                   run(2, args, Path(tmp) / "fsdp", fsdp=True)]
    report = {"machine": "2-core CPU (no GPU)", "preset": args.preset, "global_batch": args.batch,
              "steps": args.steps, "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
