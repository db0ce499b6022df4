"""`aqaa serve` on the tiny model: /health, POST /v1/chat (good, bad, oversize), the websocket protocol (answer
streams, malformed frames get an error and the connection stays usable), and the browser page in headless
Chromium with a fake microphone fed from a wav."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from aqaa.serve.server import ServerLimits, create_app, pcm16_bytes


@pytest.fixture(scope="module")
def client(tiny_model):
    from fastapi.testclient import TestClient

    app = create_app(str(tiny_model), limits=ServerLimits(max_upload_bytes=400_000, silence_ms=400))
    with TestClient(app) as c:
        yield c


def test_health_and_page(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["engine"] == "aqaa"
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in page.text and "/v1/stream" in page.text


def test_post_chat_answers_and_refuses_bad_input(client):
    with open("examples/question.wav", "rb") as fh:
        r = client.post("/v1/chat", files={"file": ("q.wav", fh, "audio/wav")})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    y, rate = sf.read(io.BytesIO(r.content))
    assert rate == 16_000 and len(y) > 0 and float(r.headers["X-Aqaa-First-Audio-Ms"]) > 0
    bad = client.post("/v1/chat", files={"file": ("../../etc/passwd", b"not audio at all", "audio/wav")})
    assert bad.status_code == 400 and "error" in bad.json()
    silent = io.BytesIO()
    sf.write(silent, np.zeros(16_000, np.float32), 16_000, format="WAV")
    assert client.post("/v1/chat", files={"file": ("s.wav", silent.getvalue())}).status_code == 400
    huge = client.post("/v1/chat", files={"file": ("h.wav", b"\0" * 500_000)})
    assert huge.status_code == 413
    assert client.get("/health").json()["status"] == "ok"


def test_websocket_streams_an_answer_and_survives_bad_frames(client):
    speech, _ = sf.read("examples/question.wav", dtype="float32")
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(b"\x01\x02\x03")  # odd length: not PCM16
        assert json.loads(ws.receive_text())["type"] == "error"
        ws.send_text("{not json")
        assert json.loads(ws.receive_text())["type"] == "error"
        for i in range(0, len(speech), 3200):
            ws.send_bytes(pcm16_bytes(speech[i: i + 3200]))
        ws.send_text(json.dumps({"type": "end"}))
        audio, done = 0, None
        while done is None:
            msg = ws.receive()
            if msg.get("bytes") is not None:
                audio += len(msg["bytes"]) // 2
            elif msg.get("text"):
                m = json.loads(msg["text"])
                if m["type"] == "done":
                    done = m
                assert m["type"] in ("text", "done")
        assert audio > 0 and done["first_audio_ms"] > 0 and abs(done["audio_s"] - audio / 16_000) < 0.01


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (scripts/install.sh)")
def test_browser_page_streams_the_microphone_and_plays_the_answer(tiny_model, tmp_path):
    import uvicorn
    from playwright.sync_api import sync_playwright

    speech, _ = sf.read("examples/question.wav", dtype="float32")
    mic = tmp_path / "mic.wav"  # the question, then silence so the server's VAD ends the turn
    sf.write(mic, np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(40_000, np.float32)]), 16_000,
             subtype="PCM_16")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(str(tiny_model), limits=ServerLimits(silence_ms=500)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}", "--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.click("#start")
            page.wait_for_function("window.aqaa.answers >= 1", timeout=60_000)
            page.wait_for_function("window.aqaa.now > window.aqaa.playEnd + 0.1", timeout=30_000)  # played out
            state = page.evaluate("window.aqaa")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert state["answers"] >= 1 and not state["errors"]
    # a non-silent answer arrived and went through the page's audio graph to the speakers
    assert state["receivedPeak"] > 0.001 and state["playedPeak"] > 0.25 * state["receivedPeak"]
