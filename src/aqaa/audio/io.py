"""Load any readable audio file as validated mono 16 kHz float32, with one clear error per failure.

Every stage of aqaa (tokenizer, chat, eval, server) reads user audio through `load_audio`, so the
rules of SPEC ("Audio") live in one place.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aqaa.errors import AqaaInputError

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioLimits:
    """Configurable limits for a user query (SPEC: at most 60 s, at least 0.2 s of audio with speech)."""

    max_seconds: float = 60.0
    min_seconds: float = 0.2
    require_speech: bool = True
    clip_level: float = 0.999  # |x| at or above this counts as a clipped sample
    clip_fraction: float = 0.001  # more clipped samples than this fraction -> a warning
    max_bytes: int = 200 * 1024 * 1024  # refuse before decoding: 60 s of even 8-channel float audio is far less


@dataclass
class Audio:
    """Mono float32 samples at `sample_rate`, plus what was noticed while loading."""

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE
    source_rate: int = SAMPLE_RATE
    source_channels: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _wav_truncated(raw: bytes, file_size: int) -> bool:
    """True when a RIFF/WAVE file's data chunk claims more bytes than the file holds.

    libsndfile silently shortens such files; a user should hear that the upload was cut.
    """
    if len(raw) < 12 or raw[:4] not in (b"RIFF", b"RIFX") or raw[8:12] != b"WAVE":
        return False
    endian = "<" if raw[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(raw):  # `raw` is the head of the file: chunk headers sit near its start
        chunk_id = raw[pos : pos + 4]
        (size,) = struct.unpack(endian + "I", raw[pos + 4 : pos + 8])
        if chunk_id == b"data":
            # 0xFFFFFFFF / 0 are used by streaming writers for "unknown length": not a truncation.
            return size not in (0, 0xFFFFFFFF) and pos + 8 + size > file_size
        pos += 8 + size + (size & 1)
    return False


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Fallback for containers libsndfile cannot read (m4a, webm, ...) when ffmpeg is installed."""
    if shutil.which("ffmpeg") is None:
        raise AqaaInputError(f"{path}: not a readable audio file (unknown format, and ffmpeg is not installed)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.wav"
        proc = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "wav", "-c:a", "pcm_f32le", str(out)],
            capture_output=True,
            timeout=120,
        )
        if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            raise AqaaInputError(f"{path}: not a readable audio file")
        data, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return data, rate


def _decode(path: Path, limits: AudioLimits) -> tuple[np.ndarray, int]:
    with path.open("rb") as fh:
        raw_head = fh.read(1 << 16)
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as err:
        text = str(err)
        if "data" in text and "chunk" in text:
            raise AqaaInputError(f"{path}: corrupt or truncated audio file ({text.split(': ', 1)[-1]})") from None
        return _decode_with_ffmpeg(path)
    if info.samplerate <= 0 or info.channels <= 0:
        raise AqaaInputError(f"{path}: corrupt audio header (rate {info.samplerate}, channels {info.channels})")
    if info.frames > 0 and info.frames / info.samplerate > limits.max_seconds:
        raise AqaaInputError(
            f"{path}: audio is {info.frames / info.samplerate:.1f} s long; the limit is {limits.max_seconds:.0f} s"
        )
    if info.format == "WAV" and _wav_truncated(raw_head, path.stat().st_size):
        raise AqaaInputError(f"{path}: truncated audio file (the data chunk is shorter than its header says)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AqaaInputError(f"{path}: corrupt audio data ({err})") from None
    if info.frames > 0 and len(data) < 0.98 * info.frames:
        raise AqaaInputError(
            f"{path}: truncated audio file (decoded {len(data) / rate:.2f} s of {info.frames / rate:.2f} s)"
        )
    return data, rate


def load_audio(
    source: str | os.PathLike | bytes,
    limits: AudioLimits | None = None,
    *,
    target_rate: int = SAMPLE_RATE,
) -> Audio:
    """Read `source` (a path, or the bytes of a file) as mono float32 at `target_rate`.

    Raises AqaaInputError with one readable sentence for anything SPEC refuses.
    """
    limits = limits or AudioLimits()
    if isinstance(source, (bytes, bytearray)):
        with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
            tmp.write(source)
            tmp.flush()
            return load_audio(tmp.name, limits, target_rate=target_rate)
    path = Path(source)
    if not path.exists():
        raise AqaaInputError(f"{path}: no such file")
    if path.is_dir():
        raise AqaaInputError(f"{path}: is a folder, not an audio file")
    size = path.stat().st_size
    if size == 0:
        raise AqaaInputError(f"{path}: empty file")
    if size > limits.max_bytes:
        raise AqaaInputError(f"{path}: file is {size / 2**20:.0f} MiB; the limit is {limits.max_bytes / 2**20:.0f} MiB")

    data, rate = _decode(path, limits)
    channels = data.shape[1]
    if len(data) == 0:
        raise AqaaInputError(f"{path}: the file holds no audio samples")
    if not np.all(np.isfinite(data)):
        raise AqaaInputError(f"{path}: audio holds NaN or infinite samples")
    duration = len(data) / rate
    if duration > limits.max_seconds:
        raise AqaaInputError(f"{path}: audio is {duration:.1f} s long; the limit is {limits.max_seconds:.0f} s")
    if duration < limits.min_seconds:
        raise AqaaInputError(f"{path}: audio is {duration:.2f} s long; at least {limits.min_seconds} s is needed")

    warnings: list[str] = []
    clipped = float(np.mean(np.abs(data) >= limits.clip_level))
    if clipped > limits.clip_fraction:
        warnings.append(f"{path}: {100 * clipped:.1f}% of samples are clipped; recognition may suffer")
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality="HQ")
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
    audio = Audio(mono, target_rate, source_rate=rate, source_channels=channels, warnings=warnings)
    if limits.require_speech:
        from aqaa.audio.vad import speech_spans

        if not speech_spans(mono, target_rate):
            raise AqaaInputError(f"{path}: no speech found in the audio")
    return audio


def save_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write a 16-bit PCM wav atomically (temp file + rename): a killed writer never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path
