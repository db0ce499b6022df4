"""Audio I/O: any readable file -> validated mono 16 kHz float32, and measurements of speech."""

from aqaa.audio.io import SAMPLE_RATE, Audio, AudioLimits, load_audio, save_wav

__all__ = ["SAMPLE_RATE", "Audio", "AudioLimits", "load_audio", "save_wav"]
