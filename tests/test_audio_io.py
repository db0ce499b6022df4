"""The bad-input table (SPEC, Audio): every case gets a clear AqaaInputError or converts cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqaa.audio.io import AudioLimits, load_audio, save_wav
from aqaa.errors import AqaaInputError


def _write(path: Path, samples: np.ndarray, rate: int, **kw) -> Path:
    sf.write(path, samples, rate, **kw)
    return path


def _truncated(path: Path, speech) -> Path:
    _write(path, speech[0], speech[1], subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _header_only(path: Path, speech) -> Path:
    _write(path, speech[0], speech[1], subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:30])
    return path


def _nan(path: Path, speech) -> Path:
    x = speech[0].copy()
    x[1000:1010] = np.nan
    return _write(path, x, speech[1], subtype="FLOAT")


def _inf(path: Path, speech) -> Path:
    x = speech[0].copy()
    x[500] = np.inf
    return _write(path, x, speech[1], subtype="FLOAT")


def _long(path: Path, speech) -> Path:
    return _write(path, np.tile(speech[0], 40), speech[1], subtype="PCM_16")  # ~70 s


def _short(path: Path, speech) -> Path:
    return _write(path, speech[0][: int(0.1 * speech[1])], speech[1], subtype="PCM_16")


def _silent(path: Path, speech) -> Path:
    return _write(path, np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")


def _noise_only(path: Path, speech) -> Path:
    rng = np.random.default_rng(0)
    return _write(path, (0.001 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000, subtype="PCM_16")


def _empty(path: Path, speech) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path, speech) -> Path:
    path.write_text("this is not audio at all, just some text\n" * 20)
    return path


def _folder(path: Path, speech) -> Path:
    path.mkdir()
    return path


BAD = [
    ("empty file", _empty, "empty file"),
    ("not audio", _text, "not a readable audio file"),
    ("truncated wav", _truncated, "truncated"),
    ("header only", _header_only, "corrupt or truncated"),
    ("NaN samples", _nan, "NaN or infinite"),
    ("inf samples", _inf, "NaN or infinite"),
    ("longer than 60 s", _long, "the limit is 60 s"),
    ("shorter than 0.2 s", _short, "at least 0.2 s"),
    ("digital silence", _silent, "no speech"),
    ("faint noise, no speech", _noise_only, "no speech"),
    ("a folder", _folder, "is a folder"),
]


@pytest.mark.parametrize("case,make,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_clearly(tmp_path, speech, case, make, message):
    path = make(tmp_path / "in.wav", speech)
    with pytest.raises(AqaaInputError) as err:
        load_audio(path)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(AqaaInputError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


GOOD = [
    # (name, rate, channels, subtype/format, expect warning)
    ("16 kHz mono int16", 16000, 1, ("WAV", "PCM_16"), False),
    ("44.1 kHz stereo", 44100, 2, ("WAV", "PCM_16"), False),
    ("48 kHz float", 48000, 1, ("WAV", "FLOAT"), False),
    ("8 kHz", 8000, 1, ("WAV", "PCM_16"), False),
    ("22.05 kHz flac", 22050, 1, ("FLAC", "PCM_16"), False),
    ("ogg vorbis", 16000, 2, ("OGG", "VORBIS"), False),
    ("mp3", 16000, 1, ("MP3", "MPEG_LAYER_III"), False),
]


@pytest.mark.parametrize("name,rate,channels,fmt,_", GOOD, ids=[g[0] for g in GOOD])
def test_readable_audio_becomes_mono_16k(tmp_path, speech, name, rate, channels, fmt, _):
    import soxr

    x = soxr.resample(speech[0], speech[1], rate).astype(np.float32)
    if channels == 2:
        x = np.stack([x, 0.5 * x], axis=1)
    path = tmp_path / f"in.{fmt[0].lower()}"
    sf.write(path, x, rate, format=fmt[0], subtype=fmt[1])
    audio = load_audio(path)
    assert audio.sample_rate == 16000 and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration_s - len(speech[0]) / speech[1]) < 0.1
    assert audio.source_rate == rate and audio.source_channels == channels
    assert not audio.warnings


def test_clipping_is_a_warning_not_an_error(tmp_path, speech):
    x = np.clip(speech[0] * 40, -1, 1)
    audio = load_audio(_write(tmp_path / "clip.wav", x, speech[1], subtype="PCM_16"))
    assert audio.warnings and "clipped" in audio.warnings[0]


def test_limits_are_configurable(tmp_path, speech):
    path = _write(tmp_path / "s.wav", speech[0], speech[1], subtype="PCM_16")
    with pytest.raises(AqaaInputError, match="the limit is 1 s"):
        load_audio(path, AudioLimits(max_seconds=1.0))


def test_huge_file_is_refused_before_decoding(tmp_path, speech):
    path = _write(tmp_path / "s.wav", speech[0], speech[1], subtype="PCM_16")
    with pytest.raises(AqaaInputError, match="MiB; the limit is"):
        load_audio(path, AudioLimits(max_bytes=1000))


def test_bytes_input_and_atomic_save(tmp_path, speech):
    out = save_wav(tmp_path / "sub" / "o.wav", speech[0], speech[1])
    assert not list(out.parent.glob(".*tmp"))
    audio = load_audio(out.read_bytes())
    assert abs(audio.duration_s - len(speech[0]) / speech[1]) < 0.01


def _loud_speechlike(seconds: float = 1.5, rate: int = 16_000) -> np.ndarray:
    """A 150 Hz buzz whose level swells from quiet to 1.6 x full scale and back: what a loud answer's peaks do."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 150 * t) * 1.6 * np.sin(np.pi * t / seconds) ** 2).astype(np.float32)


def test_limiter_passes_quiet_audio_unchanged_and_keeps_loud_audio_under_its_ceiling(speech):
    from aqaa.audio.limiter import Limiter

    quiet = speech[0] / np.abs(speech[0]).max() * 0.9
    lim = Limiter()
    assert np.array_equal(np.concatenate([lim(c) for c in np.array_split(quiet, 17)]), quiet)
    x = _loud_speechlike()
    lim.reset()
    y = np.concatenate([lim(x[i: i + 1920]) for i in range(0, len(x), 1920)])  # 120 ms groups, as the engine
    assert len(y) == len(x) and np.abs(y).max() <= lim.ceiling + 1e-6
    audible = np.abs(x) > 1e-3
    gain = y / np.where(audible, x, 1.0)
    steps = np.abs(np.diff(gain))[audible[1:] & audible[:-1]]
    assert steps.max() <= lim.attack_per_ms * 1000 / 16_000 + 1e-4  # no jump: gain moves by the attack at most
    assert np.array_equal(y[:1000], x[:1000])  # before the swell nothing changes
    assert lim.gain == 1.0  # and after it the gain has recovered


def test_limiter_state_carries_the_gain_across_chunks_and_resets():
    from aqaa.audio.limiter import Limiter

    lim = Limiter()
    loud = np.full(320, 1.5, np.float32)
    assert np.abs(lim(loud)).max() <= lim.ceiling + 1e-6 and lim.gain < 0.7
    after = lim(np.full(320, 0.5, np.float32))  # 20 ms later the gain is still recovering, from where it was
    assert after[0] < 0.5 * 0.7 + 1e-3 and np.all(np.diff(after) >= 0)
    lim.reset()
    assert lim.gain == 1.0 and np.array_equal(lim(np.full(10, 0.5, np.float32)), np.full(10, 0.5, np.float32))
