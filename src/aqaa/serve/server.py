"""`aqaa serve`: a FastAPI app with a websocket voice API, `POST /v1/chat`, `GET /health` and a browser page.

Websocket `/v1/stream` protocol (one conversation per connection):
  client -> server: binary frames of 16 kHz mono PCM16 (the query as it is spoken); a text frame
                    `{"type": "end"}` ends the turn (or the server's Silero VAD ends it after `silence_ms` of
                    silence); `{"type": "reset"}` starts a new conversation. Audio with speech that arrives while an
                    answer plays is barge-in: the answer stops.
  server -> client: `{"type": "text", "text": ...}` as the answer's text channel grows, binary PCM16 frames of
                    the answer (16 kHz) as each 120 ms group is vocoded, then `{"type": "done", "text",
                    "first_audio_ms", "audio_s", "rtf"}`; `{"type": "error", "error": ...}` for bad input (the
                    connection stays usable).
Limits: loopback bind by default, upload size and query duration caps, an idle timeout per connection, a time cap
per answer, a bound on concurrent answers (beyond it: HTTP 503 / a websocket error). Uploads go to a private
temp dir and are deleted after reading.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response

from aqaa.audio.io import AudioLimits, load_audio
from aqaa.errors import AqaaInputError

PAGE = Path(__file__).resolve().parent / "static" / "index.html"


@dataclass
class ServerLimits:
    max_upload_bytes: int = 8 * 1024 * 1024
    max_query_s: float = 60.0
    idle_timeout_s: float = 60.0
    answer_timeout_s: float = 60.0
    max_concurrent: int = 4
    silence_ms: int = 600  # VAD end of turn
    torch_threads: int = 1  # per operation: concurrent sessions each get a core rather than fighting over both


def pcm16_bytes(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class Engine:
    """Loads the model once; hands out conversation sessions; bounds how many answers run at once."""

    def __init__(self, model: str | None, engine: str, limits: ServerLimits):
        from aqaa.serve.chat import DEFAULT_MODEL

        self.limits = limits
        self.busy = threading.BoundedSemaphore(limits.max_concurrent)
        folder = Path(model) if model else DEFAULT_MODEL
        if engine != "cascade" and (folder / "aqaa.json").exists():
            from aqaa.serve.engine import AqaaModel

            self.kind, self.shared = "aqaa", AqaaModel(folder)
            self.lock = None
        else:
            from aqaa.eval.cascade import CascadeSession

            self.kind, self.shared = "cascade", CascadeSession()
            self.lock = threading.Lock()  # one cascade, one conversation at a time

    def session(self):
        if self.kind == "aqaa":
            from aqaa.serve.engine import AqaaSession

            return AqaaSession(self.shared, warm_up=False, torch_threads=self.limits.torch_threads or None)
        return self.shared

    def answer_stream(self, session, samples: np.ndarray, on_text, on_audio, stop: threading.Event) -> dict:
        """Blocking: run one answer, pushing text and audio through the callbacks; returns the timings."""
        if not self.busy.acquire(blocking=False):
            raise BusyError("server busy: too many answers in progress, try again")
        try:
            t0 = time.perf_counter()
            first, n = None, 0
            if self.kind == "aqaa":
                deadline = t0 + self.limits.answer_timeout_s
                for chunk in session.stream_answer(samples, on_text=on_text, stop=stop):
                    if first is None:
                        first = time.perf_counter()
                    n += len(chunk)
                    on_audio(chunk, session.sample_rate)
                    if time.perf_counter() > deadline:
                        stop.set()
                text, rate = session.last_text, session.sample_rate
            else:
                with self.lock:
                    result = session.answer(samples, 16_000)
                first = time.perf_counter()
                on_text(result.text)
                on_audio(result.samples, result.sample_rate)
                text, rate, n = result.text, result.sample_rate, len(result.samples)
            total = time.perf_counter() - t0
            audio_s = n / rate
            return {"text": text, "first_audio_ms": round(1000 * ((first or time.perf_counter()) - t0), 1),
                    "audio_s": round(audio_s, 3), "rtf": round(total / max(audio_s, 1e-6), 4),
                    "interrupted": stop.is_set()}
        finally:
            self.busy.release()


class BusyError(RuntimeError):
    pass


def _resample_to(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


def create_app(model: str | None = None, engine: str = "auto", limits: ServerLimits | None = None):
    limits = limits or ServerLimits()
    if limits.torch_threads:
        import torch

        torch.set_num_threads(limits.torch_threads)
    core = Engine(model, engine, limits)
    audio_limits = AudioLimits(max_seconds=limits.max_query_s, max_bytes=limits.max_upload_bytes)
    app = FastAPI(title="aqaa", version="0.1")
    app.state.engine = core
    stats = {"answers": 0, "errors": 0, "open_streams": 0}

    @app.get("/health")
    def health():
        return {"status": "ok", "engine": core.kind, **stats}

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text()

    @app.post("/v1/chat")
    async def chat(file: UploadFile = File(...)):
        data = await file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            stats["errors"] += 1
            return JSONResponse({"error": f"upload larger than {limits.max_upload_bytes} bytes"}, status_code=413)
        with tempfile.TemporaryDirectory(prefix="aqaa-upload-") as tmp:
            path = Path(tmp) / "query"  # never the client's file name
            path.write_bytes(data)
            try:
                audio = load_audio(path, audio_limits)
            except AqaaInputError as err:
                stats["errors"] += 1
                return JSONResponse({"error": str(err).replace(str(path), "upload")}, status_code=400)
        session = core.session()
        if core.kind == "aqaa":
            session.reset()
        chunks: list[np.ndarray] = []
        rate_box = [16_000]

        def on_audio(chunk, rate):
            chunks.append(chunk)
            rate_box[0] = rate

        try:
            summary = await asyncio.wait_for(asyncio.to_thread(
                core.answer_stream, session, audio.samples, lambda t: None, on_audio, threading.Event()),
                timeout=limits.answer_timeout_s + 5)
        except BusyError as err:
            return JSONResponse({"error": str(err)}, status_code=503)
        except asyncio.TimeoutError:
            return JSONResponse({"error": "answer timed out"}, status_code=504)
        stats["answers"] += 1
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        headers = {"X-Aqaa-First-Audio-Ms": str(summary["first_audio_ms"]), "X-Aqaa-Rtf": str(summary["rtf"]),
                   "X-Aqaa-Text": summary["text"].encode("ascii", "replace").decode()[:500]}
        return Response(wav_bytes(samples, rate_box[0]), media_type="audio/wav", headers=headers)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        stats["open_streams"] += 1
        loop = asyncio.get_running_loop()
        session = core.session()
        if core.kind == "aqaa":
            session.reset()
        vad = _Endpointer(limits.silence_ms)
        buf: list[np.ndarray] = []
        answering: dict = {"task": None, "stop": None}

        async def send_json(obj):
            try:
                await ws.send_text(json.dumps(obj))
            except Exception:  # the client left; nothing to tell
                pass

        async def run_answer(samples: np.ndarray):
            stop = threading.Event()
            answering["stop"] = stop
            out_rate = 16_000

            def on_text(text):
                asyncio.run_coroutine_threadsafe(send_json({"type": "text", "text": text}), loop)

            def on_audio(chunk, rate):
                asyncio.run_coroutine_threadsafe(ws.send_bytes(pcm16_bytes(_resample_to(chunk, rate, out_rate))),
                                                 loop)

            try:
                summary = await asyncio.to_thread(core.answer_stream, session, samples, on_text, on_audio, stop)
                stats["answers"] += 1
                await asyncio.sleep(0)
                await send_json({"type": "done", **summary})
            except BusyError as err:
                await send_json({"type": "error", "error": str(err)})
            except AqaaInputError as err:
                await send_json({"type": "error", "error": str(err)})

        async def end_turn():
            samples = np.concatenate(buf) if buf else np.zeros(0, np.float32)
            buf.clear()
            vad.reset()
            if len(samples) == 0 and answering["task"] is not None:
                return  # the VAD already ended this turn; the client's own `end` arrived after it
            if len(samples) < 0.2 * 16_000:
                await send_json({"type": "error", "error": "query too short (< 0.2 s of audio)"})
                return
            answering["task"] = asyncio.create_task(run_answer(samples))

        try:
            while True:
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=limits.idle_timeout_s)
                except asyncio.TimeoutError:
                    await send_json({"type": "error", "error": "idle timeout"})
                    break
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    data = msg["bytes"]
                    if len(data) % 2:
                        stats["errors"] += 1
                        await send_json({"type": "error", "error": "audio frames must be 16-bit PCM (even length)"})
                        continue
                    frame = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
                    task = answering["task"]
                    if task is not None and not task.done():
                        if vad.speech(frame):  # barge-in
                            answering["stop"].set()
                            buf.append(frame)
                        continue
                    buf.append(frame)
                    if sum(len(b) for b in buf) > limits.max_query_s * 16_000:
                        buf.clear()
                        stats["errors"] += 1
                        await send_json({"type": "error", "error": f"query longer than {limits.max_query_s} s"})
                        continue
                    if vad.push(frame):
                        await end_turn()
                elif msg.get("text") is not None:
                    try:
                        ctrl = json.loads(msg["text"])
                        kind = ctrl["type"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        stats["errors"] += 1
                        await send_json({"type": "error", "error": "control frames are JSON objects with a type"})
                        continue
                    if kind == "end":
                        await end_turn()
                    elif kind == "reset":
                        if answering["stop"] is not None:
                            answering["stop"].set()
                        buf.clear()
                        session.reset()
                        await send_json({"type": "reset"})
                    else:
                        await send_json({"type": "error", "error": f"unknown control type {kind!r}"})
        except WebSocketDisconnect:
            pass
        finally:
            if answering["stop"] is not None:
                answering["stop"].set()
            stats["open_streams"] -= 1

    return app


class _Endpointer:
    """End of turn by Silero VAD: speech seen, then `silence_ms` without speech."""

    def __init__(self, silence_ms: int):
        from aqaa.audio.vad import speech_probability_fn

        self.prob = speech_probability_fn()
        self.silence_needed = silence_ms / 1000 * 16_000
        self.reset()

    def reset(self) -> None:
        self.pending = np.zeros(0, np.float32)
        self.heard, self.silence = False, 0

    def _windows(self, frame: np.ndarray):
        self.pending = np.concatenate([self.pending, frame])
        while len(self.pending) >= 512:
            win, self.pending = self.pending[:512], self.pending[512:]
            yield self.prob(win) > 0.5

    def speech(self, frame: np.ndarray) -> bool:
        return any(list(self._windows(frame)))

    def push(self, frame: np.ndarray) -> bool:
        for voiced in self._windows(frame):
            if voiced:
                self.heard, self.silence = True, 0
            elif self.heard:
                self.silence += 512
        return self.heard and self.silence >= self.silence_needed


def serve(host: str = "127.0.0.1", port: int = 8000, model: str | None = None, engine: str = "auto") -> None:
    import uvicorn

    uvicorn.run(create_app(model, engine), host=host, port=port, log_level="info", ws_max_size=1 << 20)
