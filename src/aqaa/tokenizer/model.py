"""DualTokenizer: both streams together, saved as a folder (`tokenizer.json` + two safetensors files).

Offline: `encode(samples)`. Streaming: `start()` returns a `StreamingEncoder` whose explicit state holds the mel
tail, the semantic encoder's left context and the audio window the Whisper encoder re-reads; `step(chunk)`
returns the tokens of every 120 ms group that became final.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from aqaa.tokenizer.features import HOP, MelState, log_mel
from aqaa.tokenizer.interleave import (
    GROUP_SAMPLES, L_PER_GROUP, S_PER_GROUP, SAMPLE_RATE, interleave, n_groups, pad_to_groups,
)
from aqaa.tokenizer.linguistic import LinguisticConfig, LinguisticQuantizer, whisper_features
from aqaa.tokenizer.semantic import DOWNSAMPLE, SemanticCodec, SemanticConfig

LINGUISTIC_FILE = "linguistic.safetensors"

FRAMES_PER_GROUP = GROUP_SAMPLES // HOP  # 12 mel frames
MAX_WHISPER_GROUPS = 240  # 28.8 s: Whisper's encoder takes at most 30 s


@dataclass
class TokenizerConfig:
    linguistic: LinguisticConfig = field(default_factory=LinguisticConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    stream_context_groups: int = 16  # audio the Whisper encoder re-reads when streaming (1.92 s)
    stream_lookahead_groups: int = 1  # groups of right context before a linguistic token is final (120 ms)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        semantic = {"quantizer": "fsq", **d["semantic"]}  # saved before VQ existed: FSQ
        return cls(LinguisticConfig(**d["linguistic"]), SemanticConfig(**semantic),
                   d.get("stream_context_groups", 16), d.get("stream_lookahead_groups", 1))


PRESETS = {
    "default": TokenizerConfig(),
    "tiny": TokenizerConfig(LinguisticConfig(codes=32), SemanticConfig(codebook_size=64, channels=32, layers=2,
                                                           rate_head=True)),
}


@dataclass
class TokenStreams:
    linguistic: np.ndarray
    semantic: np.ndarray
    duration_s: float
    l_codes: int = 1024

    def interleaved(self) -> list[int]:
        return interleave(self.linguistic, self.semantic, self.l_codes)

    def to_dict(self) -> dict:
        return {"linguistic": self.linguistic.tolist(), "semantic": self.semantic.tolist(),
                "interleaved": self.interleaved(), "duration_s": round(self.duration_s, 4)}


DEFAULT_TOKENIZER = Path(__file__).resolve().parent.parent / "assets" / "default" / "tokenizer"


def load_default_tokenizer(folder: str | Path | None = None) -> "DualTokenizer":
    """The tokenizer in `folder`, else the one shipped with the default model."""
    from aqaa.errors import AqaaInputError

    if folder is None and not DEFAULT_TOKENIZER.is_dir():
        raise AqaaInputError("no tokenizer is shipped yet: train one (`aqaa train tokenizer`) and pass --tokenizer DIR")
    return DualTokenizer.load(folder or DEFAULT_TOKENIZER)


class DualTokenizer:
    def __init__(self, cfg: TokenizerConfig):
        self.cfg = cfg
        self.linguistic = LinguisticQuantizer(cfg.linguistic)
        self.semantic = SemanticCodec(cfg.semantic).eval()

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Atomic: written to a temp folder, then renamed over `folder`."""
        from aqaa.paths import atomic_dir

        with atomic_dir(folder) as tmp:
            save_file({k: v.contiguous() for k, v in self.linguistic.state_dict().items()},
                      tmp / LINGUISTIC_FILE)
            save_file({k: v.contiguous() for k, v in self.semantic.state_dict().items()}, tmp / "semantic.safetensors")
            (tmp / "tokenizer.json").write_text(json.dumps(asdict(self.cfg), indent=1))
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> "DualTokenizer":
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            from aqaa.errors import AqaaInputError

            raise AqaaInputError(f"{folder}: not a tokenizer folder (no tokenizer.json)")
        tok = cls(TokenizerConfig.from_dict(json.loads((folder / "tokenizer.json").read_text())))
        tok.linguistic.load_state_dict(load_file(folder / LINGUISTIC_FILE))
        tok.semantic.load_state_dict(load_file(folder / "semantic.safetensors"))
        return tok

    @staticmethod
    def linguistic_centroids(folder: str | Path) -> torch.Tensor:
        """The linguistic k-means centroids alone (codes x feature dim): no codec, Whisper or VQ package needed."""
        return load_file(Path(folder) / LINGUISTIC_FILE)["centroids"]

    # ------------------------------------------------------------------ offline
    def encode_linguistic(self, padded: np.ndarray) -> np.ndarray:
        win = MAX_WHISPER_GROUPS * GROUP_SAMPLES
        feats = [whisper_features(padded[i : i + win]) for i in range(0, len(padded), win)]
        return self.linguistic.quantize(np.concatenate(feats))

    @torch.no_grad()
    def encode_semantic(self, padded: np.ndarray) -> np.ndarray:
        return self.semantic.encode(log_mel(padded)[None])[0].numpy()

    def encode(self, samples: np.ndarray) -> TokenStreams:
        padded = pad_to_groups(np.asarray(samples, np.float32))
        return TokenStreams(self.encode_linguistic(padded), self.encode_semantic(padded),
                            len(samples) / SAMPLE_RATE, self.cfg.linguistic.codes)

    def start(self) -> "StreamingEncoder":
        return StreamingEncoder(self)


@dataclass
class EncoderState:
    """Everything a streaming encoder remembers between chunks; copy it to fork a stream, replace it to reset."""

    mel: MelState = field(default_factory=MelState)
    mel_frames: torch.Tensor = field(default_factory=lambda: torch.zeros(80, 0))  # semantic left context + new
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # whole groups not yet final + context
    context_groups: int = 0  # how many groups at the start of `audio` are context only
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # < one group
    samples_seen: int = 0


class StreamingEncoder:
    def __init__(self, tok: DualTokenizer):
        self.tok = tok
        self.state = EncoderState()
        rf = tok.semantic.receptive_frames
        self._sem_context = -(-rf // FRAMES_PER_GROUP) * FRAMES_PER_GROUP  # whole groups of left context

    def reset(self) -> None:
        self.state = EncoderState()

    def copy(self) -> "StreamingEncoder":
        other = StreamingEncoder(self.tok)
        other.state = copy.deepcopy(self.state)
        return other

    @torch.no_grad()
    def _semantic(self, groups: np.ndarray) -> np.ndarray:
        st = self.state
        new = st.mel.step(groups)
        buf = torch.cat([st.mel_frames, new], dim=1)
        codes = self.tok.semantic.encode(buf[None])[0]
        st.mel_frames = buf[:, -self._sem_context:] if buf.shape[1] > self._sem_context else buf
        return codes[-(new.shape[1] // DOWNSAMPLE):].numpy()

    def _linguistic(self, final: bool) -> np.ndarray:
        """Encode the audio window; return tokens of groups that are final (all but the look-ahead ones)."""
        st, cfg = self.state, self.tok.cfg
        total = len(st.audio) // GROUP_SAMPLES
        ready = total - st.context_groups - (0 if final else cfg.stream_lookahead_groups)
        if ready <= 0:
            return np.zeros(0, np.int64)
        codes = self.tok.linguistic.quantize(whisper_features(st.audio))
        out = codes[L_PER_GROUP * st.context_groups : L_PER_GROUP * (st.context_groups + ready)]
        keep_from = max(0, st.context_groups + ready - cfg.stream_context_groups)
        st.audio = st.audio[keep_from * GROUP_SAMPLES :]
        st.context_groups = st.context_groups + ready - keep_from
        return out

    def step(self, chunk: np.ndarray, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Feed samples; returns (linguistic, semantic) tokens that became final. `final=True` pads and flushes."""
        st = self.state
        chunk = np.asarray(chunk, np.float32)
        st.samples_seen += len(chunk)
        buf = np.concatenate([st.pending, chunk])
        if final and len(buf) % GROUP_SAMPLES:
            buf = np.pad(buf, (0, GROUP_SAMPLES - len(buf) % GROUP_SAMPLES))
        if final and st.samples_seen == len(chunk) == 0:
            buf = np.zeros(GROUP_SAMPLES, np.float32)
        whole = len(buf) // GROUP_SAMPLES * GROUP_SAMPLES
        groups, st.pending = buf[:whole], buf[whole:]
        sem = self._semantic(groups) if whole else np.zeros(0, np.int64)
        st.audio = np.concatenate([st.audio, groups])
        lin = self._linguistic(final)
        return lin, sem


def stream_encode(tok: DualTokenizer, samples: np.ndarray, chunk: int) -> TokenStreams:
    """Encode `samples` through the streaming encoder in `chunk`-sample pieces (for tests and benchmarks)."""
    enc = tok.start()
    lin, sem = [], []
    for i in range(0, len(samples), chunk):
        a, b = enc.step(samples[i : i + chunk])
        lin.append(a)
        sem.append(b)
    a, b = enc.step(np.zeros(0, np.float32), final=True)
    lin.append(a)
    sem.append(b)
    n = n_groups(len(samples))
    return TokenStreams(np.concatenate(lin)[: L_PER_GROUP * n], np.concatenate(sem)[: S_PER_GROUP * n],
                        len(samples) / SAMPLE_RATE, tok.cfg.linguistic.codes)
