"""Serving benchmark from websocket clients on localhost -> reports/serve.{json,md}.

    .venv/bin/python scripts/bench_serve.py --model runs/model46 [--queries data/spokenqa/test.jsonl] [--n 30]

1. latency: one client at a time sends a query (100 ms PCM16 frames at real-time pace, as a microphone would),
   then `end`;
   first audio = first answer frame received - `end` sent. p50 / p95 over n queries.
2. concurrency: 4 clients at once, each answering 5 queries; per answer RTF = answer wall time / audio seconds.
3. load: 50 clients connect at once and each sends one query; every client must be answered or refused cleanly
   (an error message or a closed connection with a reason), and the server must still answer /health after.
The server runs in a child process (uvicorn) exactly as `aqaa serve` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


async def ask(url: str, samples: np.ndarray, frame: int = 1600, realtime: bool = True) -> dict:
    """Send the query as a microphone would (100 ms frames at real-time pace), then `end`."""
    import websockets

    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        t0 = time.perf_counter()
        for i in range(0, len(samples), frame):
            await ws.send(pcm16(samples[i: i + frame]))
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (i + frame) / 16_000 - time.perf_counter()))
        t_end = time.perf_counter()
        await ws.send(json.dumps({"type": "end"}))
        first, n = None, 0
        while True:
            msg = await asyncio.wait_for(ws.recv(), timeout=120)
            if isinstance(msg, bytes):
                if first is None:
                    first = time.perf_counter()
                n += len(msg) // 2
                continue
            m = json.loads(msg)
            if m["type"] == "done":
                total = time.perf_counter() - t_end
                return {"first_audio_ms": 1000 * ((first or time.perf_counter()) - t_end), "audio_s": n / 16_000,
                        "wall_s": total, "rtf": total / max(n / 16_000, 1e-6), "server": m}
            if m["type"] == "error":
                return {"error": m["error"]}


async def load_client(url: str, samples: np.ndarray) -> str:
    try:
        r = await ask(url, samples)
        return "refused" if "error" in r else "answered"
    except Exception as err:  # a clean close with a reason counts as refused; anything else is reported
        name = type(err).__name__
        return "refused" if "ConnectionClosed" in name else f"failed:{name}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--queries", default="data/spokenqa/test.jsonl")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--out", default="reports/serve")
    args = ap.parse_args()
    root = Path(args.queries).parent
    items = [json.loads(x) for x in Path(args.queries).read_text().splitlines()]
    queries = [sf.read(root / it["audio"], dtype="float32")[0] for it in items if not it.get("context")][: args.n]
    server = subprocess.Popen([sys.executable, "-m", "aqaa.cli", "serve", "--model", args.model, "--port",
                               str(args.port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    url = f"ws://127.0.0.1:{args.port}/v1/stream"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        asyncio.run(ask(url, queries[0]))  # warm-up
        single = [asyncio.run(ask(url, q)) for q in queries]
        single = [r for r in single if "error" not in r]
        fa = [r["first_audio_ms"] for r in single]

        async def four():
            async def client(k):
                return [await ask(url, q) for q in queries[k * 5: k * 5 + 5]]
            return await asyncio.gather(*(client(k) for k in range(4)))

        conc = [r for rs in asyncio.run(four()) for r in rs if "error" not in r]

        async def fifty():
            return await asyncio.gather(*(load_client(url, queries[k % len(queries)]) for k in range(50)))

        outcomes = asyncio.run(fifty())
        health = json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())
        crashed = server.poll() is not None
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {
        "model": args.model, "machine": "2-core CPU, server and clients on the same machine",
        "single": {"n": len(single), "first_audio_ms_p50": round(float(np.percentile(fa, 50)), 1),
                   "first_audio_ms_p95": round(float(np.percentile(fa, 95)), 1),
                   "rtf_median": round(statistics.median(r["rtf"] for r in single), 3)},
        "four_concurrent": {"answers": len(conc), "rtf_max": round(max(r["rtf"] for r in conc), 3),
                            "rtf_median": round(statistics.median(r["rtf"] for r in conc), 3),
                            "first_audio_ms_p50": round(float(np.percentile([r["first_audio_ms"] for r in conc], 50)), 1)},
        "load_50": {k: outcomes.count(k) for k in sorted(set(outcomes))},
        "server_crashed": crashed, "health_after": health,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = [f"# Serving benchmark (`{args.model}`, websocket clients on localhost, 2-core CPU)", "",
          "| measure | value |", "|---|---|",
          f"| first audio after end of query, p50 / p95 ({len(single)} queries, one at a time) | "
          f"{report['single']['first_audio_ms_p50']} / {report['single']['first_audio_ms_p95']} ms |",
          f"| whole-answer RTF, median (one at a time) | {report['single']['rtf_median']} |",
          f"| 4 concurrent sessions: RTF max / median ({len(conc)} answers) | "
          f"{report['four_concurrent']['rtf_max']} / {report['four_concurrent']['rtf_median']} |",
          f"| 50 clients at once | {report['load_50']} |",
          f"| server crashed | {crashed} |"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
