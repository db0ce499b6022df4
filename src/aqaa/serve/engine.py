"""The aqaa speech-to-speech engine: query audio -> tokens -> LM (streaming, KV cache) -> vocoder -> audio.

A model folder holds `aqaa.json` and three parts: `tokenizer/`, `lm/` (save_pretrained), `vocoder/`. A session is
one conversation: its `DecodeState` (the KV cache over every earlier turn, the assistant's own answers included)
and the history needed to rebuild that cache when the context window fills up. A user turn is either given whole
(`stream_answer(samples)`) or heard while it is spoken (`listen(chunk)` ..., then `stream_answer()`), which puts
each finished 120 ms group into the KV cache at once, so the end of the turn leaves only its last groups to do.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from aqaa.audio.limiter import Limiter
from aqaa.errors import AqaaInputError
from aqaa.eval.cascade import TurnResult
from aqaa.lm.decode import STEP_DTYPES, LlamaDecoder, decoder_for
from aqaa.lm.format import conversation_so_far, read_once, user_turn
from aqaa.lm.format import prompt as build_prompt
from aqaa.lm.generate import Generator, Sampling
from aqaa.lm.model import AudioLM
from aqaa.tokenizer.model import DualTokenizer, StreamingEncoder
from aqaa.vocoder.model import TokenVocoder

MODEL_FILE = "aqaa.json"


def assemble_model(out: str | Path, tokenizer: str | Path, lm: str | Path, vocoder: str | Path,
                   sampling: Sampling | None = None, extra: dict | None = None) -> Path:
    """Copy the three trained parts into one model folder (atomically) with `aqaa.json`; `extra` adds provenance
    keys and may not shadow the folder's own."""
    from aqaa.paths import atomic_dir

    clash = set(extra or {}) & {"tokenizer", "lm", "vocoder", "sampling"}
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} would shadow the model's own entries in {MODEL_FILE}")
    with atomic_dir(out) as tmp:
        for name, src in (("tokenizer", tokenizer), ("lm", lm), ("vocoder", vocoder)):
            shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns(".*"))
        meta = {"tokenizer": "tokenizer", "lm": "lm", "vocoder": "vocoder",
                "sampling": asdict(sampling or Sampling()), **(extra or {})}
        (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=1))
    return Path(out)


class AqaaModel:
    """The loaded parts of a model folder, shared by every session (a session adds only conversation state)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        meta = json.loads((folder / MODEL_FILE).read_text())
        self.folder = folder
        self.tokenizer = DualTokenizer.load(folder / meta["tokenizer"])
        self.lm = AudioLM.load(folder / meta["lm"])
        self.vocoder = TokenVocoder.load(folder / meta["vocoder"])
        self.sampling = Sampling(**meta.get("sampling", {}))
        # one decoder for every session, its weights packed for one-token steps: `step_dtype` "float16" (default;
        # 2 cores: whole-answer RTF 0.30 -> 0.20, answers as good) or "float32" (the training forward's exact logits)
        # ("int8" / "int4": weight-only quantized steps for a pretrained backbone, reports/decode_quantized.md)
        self.step_dtype = meta.get("step_dtype", "float16")
        if self.step_dtype not in STEP_DTYPES:
            raise ValueError(f"{folder / MODEL_FILE}: step_dtype must be one of {', '.join(STEP_DTYPES)}")
        self.decoder = decoder_for(self.lm.model)
        if isinstance(self.decoder, LlamaDecoder):
            self.decoder.pack(STEP_DTYPES[self.step_dtype])
        self.codebooks = (self.tokenizer.cfg.linguistic.codes, self.tokenizer.cfg.semantic.codes)
        if self.codebooks[0] > self.vocoder.cfg.l_codes or self.codebooks[1] > self.vocoder.cfg.s_codes:
            raise ValueError(f"{folder}: the vocoder knows fewer codes than the tokenizer makes")


@dataclass
class HeardSoFar:
    """A user turn heard while it is spoken (`AqaaSession.listen`): the streaming encoder, its tokens not yet in
    whole groups, the turn's audio ids so far, and whether they are in the LM's context already (not for a model
    that reads its queries first, nor when the conversation would overflow: those take the whole turn at its end)."""

    encoder: StreamingEncoder
    linguistic: list[int] = field(default_factory=list)
    semantic: list[int] = field(default_factory=list)
    q_ids: list[int] = field(default_factory=list)
    prefilled: bool = False
    chunk_ms: list[float] = field(default_factory=list)  # compute per `listen` call: must stay under real time


class AqaaSession:
    name = "aqaa"

    def __init__(self, model: "str | Path | AqaaModel", sampling: Sampling | None = None, warm_up: bool = True,
                 torch_threads: int | None = 1, listen_ms: int | None = None):
        """`torch_threads` is set (process-wide) at the start of every answer: with one, the LM decodes on one
        core while the vocoder worker synthesizes on the other (2 cores: whole-answer RTF 0.31-0.34 -> 0.25-0.28
        and first audio 120-143 -> 108-117 ms vs two); set at each answer because loading a CTranslate2 model
        (the Whisper encoder, an ASR judge) resets the shared OpenMP thread count. None leaves it alone.
        `listen_ms`: `answer()` hears its query in pieces of that many ms, as `listen` does while a user speaks,
        and times first audio from the end of the query (None: the whole query at once, as a file is)."""
        t0 = time.perf_counter()
        self.torch_threads, self.listen_ms = torch_threads, listen_ms
        self.model = model if isinstance(model, AqaaModel) else AqaaModel(model)
        self.tokenizer, self.lm, self.vocoder = self.model.tokenizer, self.model.lm, self.model.vocoder
        self.sampling = sampling or Sampling(**asdict(self.model.sampling))
        self.gen = Generator(self.lm, self.sampling, self.model.codebooks, self.model.decoder)
        self.sample_rate = self.vocoder.cfg.sample_rate
        self.limiter = Limiter(self.sample_rate)  # loud answers: smooth gain below full scale, not clipping
        self._voc_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aqaa-vocoder")
        self.reset()
        if warm_up:
            warm = np.sin(np.linspace(0, 2000, 8000)).astype(np.float32) * 0.1  # one-off allocations
            list(self.stream_answer(warm, max_groups=2))
            self.reset()
        self.load_s = time.perf_counter() - t0

    def reset(self) -> None:
        self.state = None
        self.heard_so_far: HeardSoFar | None = None
        self.history: list[tuple[list[int], list[int]]] = []  # (query audio ids, answer ids) per earlier turn
        reader = self.lm.reader()  # a model that reads its queries (heard_reading) reads each once a conversation
        self.reader = read_once(reader) if reader else None

    def _budget(self) -> int:
        """Context positions a conversation may fill before an answer: the rest is kept for the longest answer."""
        return self.lm.cfg.max_positions - (self.sampling.max_groups * 5 + self.sampling.max_text_tokens + 8)

    def _context(self, q_ids: list[int]) -> None:
        """Extend the conversation's KV cache by the new user turn; rebuild from recent turns when it is full."""
        v = self.lm.vocab
        new = user_turn(v, q_ids, self.reader) + [v.ctrl["assistant"]]
        budget = self._budget()
        if self.state is not None and self.state.n_past + len(new) <= budget:
            self.gen.feed(self.state, new)
            return
        history = list(self.history)
        while True:  # drop the oldest turns until the prompt fits
            ids = build_prompt(v, history, q_ids, self.reader)
            if len(ids) <= budget or not history:
                break
            history = history[1:]
        if len(ids) > budget:
            raise AqaaInputError(f"query too long for the model's context ({len(ids)} tokens > {budget})")
        self.history = history
        self.state = self.gen.feed(self.gen.new_state(), ids)

    def listen(self, chunk: np.ndarray) -> None:
        """Hear the next piece of the user's turn while it is spoken (16 kHz mono float32, any length): tokenize it
        and feed its finished 120 ms groups to the LM now; `stream_answer()` (no samples) then answers the turn.
        Why: prefill grows with the query and the conversation (a 2.4 s query costs SmolLM2 ~180 ms on 2 cores);
        heard as it comes, only the encoder's look-ahead group and the turn's closing ids are left at its end."""
        t0 = time.perf_counter()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        heard = self.heard_so_far
        if heard is None:
            heard = self.heard_so_far = HeardSoFar(self.tokenizer.start())
            heard.prefilled = self.reader is None and self._open_user_turn()
        self._take_groups(heard, *heard.encoder.step(chunk))
        heard.chunk_ms.append(1000 * (time.perf_counter() - t0))

    def _closing(self) -> list[int]:
        """The ids that end a user turn and start the answer."""
        c = self.lm.vocab.ctrl
        return [c["audio_end"], c["end_turn"], c["assistant"]]

    def _open_user_turn(self) -> bool:
        """Put `<|user|> <|audio_start|>` (after the conversation so far) in the cache; False if it cannot fit."""
        v = self.lm.vocab
        opening = [v.ctrl["user"], v.ctrl["audio_start"]]
        if self.state is None:
            opening = conversation_so_far(v, self.history, self.reader) + opening
        if (self.state.n_past if self.state else 0) + len(opening) + len(self._closing()) > self._budget():
            return False
        self.state = self.gen.feed(self.state or self.gen.new_state(), opening)
        return True

    def _take_groups(self, heard: HeardSoFar, linguistic: np.ndarray, semantic: np.ndarray,
                     closing: list[int] | None = None) -> None:
        """Move the whole groups of new tokens into the turn (and the cache, with `closing` ids after them)."""
        heard.linguistic += [int(x) for x in linguistic]
        heard.semantic += [int(x) for x in semantic]
        n = min(len(heard.linguistic) // 2, len(heard.semantic) // 3)
        ids = self.lm.vocab.audio_group_ids(heard.linguistic[: 2 * n], heard.semantic[: 3 * n]) if n else []
        del heard.linguistic[: 2 * n], heard.semantic[: 3 * n]
        heard.q_ids += ids
        ids = ids + (closing or [])
        if heard.prefilled and ids:
            if self.state.n_past + len(ids) + (0 if closing else len(self._closing())) > self._budget():
                heard.prefilled, self.state = False, None  # half a turn in the cache: rebuild it at the end
            else:
                self.gen.feed(self.state, ids)

    def _heard_turn(self) -> list[int]:
        """End the turn `listen` heard: flush the encoder, close the turn in the cache; its audio ids."""
        heard, self.heard_so_far = self.heard_so_far, None
        if heard is None:
            raise AqaaInputError("no query: stream_answer() without samples needs listen() first")
        self._take_groups(heard, *heard.encoder.step(np.zeros(0, np.float32), final=True), closing=self._closing())
        if not heard.q_ids:
            raise AqaaInputError("no query: nothing was heard")
        if not heard.prefilled:
            self._context(heard.q_ids)
        return heard.q_ids

    def stream_answer(self, samples: np.ndarray | None = None, max_groups: int | None = None,
                      on_text: Callable[[str], None] | None = None, stop=None) -> Iterator[np.ndarray]:
        """Yield answer audio chunks as soon as each 120 ms group is generated; the text goes to `on_text`.
        `samples`: the whole user turn; None: the turn `listen` heard. `stop` (a threading.Event) is barge-in:
        once set, generation ends after the current token."""
        v = self.lm.vocab
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        if samples is None:
            q_ids = self._heard_turn()
        else:
            if self.heard_so_far is not None:  # a turn half heard, then given whole: the whole one counts
                self.state = None if self.heard_so_far.prefilled else self.state
                self.heard_so_far = None
            streams = self.tokenizer.encode(samples)
            q_ids = v.audio_group_ids(streams.linguistic, streams.semantic)
            self._context(q_ids)
        voc = self.vocoder.start()
        limit = self.limiter
        limit.reset()
        saved = self.gen.sampling.max_groups
        if max_groups is not None:
            self.gen.sampling.max_groups = max_groups
        text_ids: list[int] = []
        # what the model heard: its reading of the query (heard_reading), or the transcript its rhythm writes
        heard_ids: list[int] = list(self.reader(q_ids)) if self.reader else []
        interrupted = False
        # The vocoder runs on a second thread, one group behind the LM: on 2 cores the next group's tokens are
        # generated while this one is synthesized (torch ops release the GIL). One worker keeps the groups in order.
        pending: deque[Future] = deque()
        first = True
        try:
            for ev in self.gen.answer(self.state):
                if stop is not None and stop.is_set():
                    interrupted = True
                    break
                if ev.kind == "text":
                    text_ids += ev.ids
                    if on_text:
                        on_text(v.decode_text(text_ids))
                elif ev.kind == "heard":
                    heard_ids += ev.ids
                elif ev.kind == "group":
                    pending.append(self._voc_pool.submit(voc.step, ev.linguistic, ev.semantic))
                while pending and (first or pending[0].done()):  # the first chunk is awaited: it is the latency
                    chunk = pending.popleft().result()
                    first = first and not len(chunk)
                    if len(chunk):
                        yield limit(chunk)
            while pending:
                chunk = pending.popleft().result()
                if len(chunk) and not interrupted:
                    yield limit(chunk)
        finally:
            for f in pending:
                f.cancel()
            self.gen.sampling.max_groups = saved
        self.last_text, self.last_heard = v.decode_text(text_ids), v.decode_text(heard_ids)
        if interrupted:  # the cache ends mid-answer: close the turn in the history and rebuild the cache next turn
            done = self.state.answer[: len(self.state.answer) - len(self.state.group)]
            self.history.append((q_ids, done + [v.ctrl["text_end"], v.ctrl["audio_end"], v.ctrl["end_turn"]]))
            self.state = None
            return
        tail = voc.flush()
        if len(tail):
            yield limit(tail)
        self.history.append((q_ids, list(self.state.answer)))

    @torch.inference_mode()
    def answer(self, samples: np.ndarray, sample_rate: int = 16_000) -> TurnResult:
        if sample_rate != 16_000:
            import soxr

            samples = soxr.resample(samples, sample_rate, 16_000).astype(np.float32)
        timeline: dict[str, float] = {}
        query = samples
        if self.listen_ms:  # heard while spoken: the compute of each piece is reported, first audio counts after
            step = max(1, int(16 * self.listen_ms))
            for i in range(0, len(samples), step):
                self.listen(samples[i: i + step])
            if self.heard_so_far is None:
                raise AqaaInputError("no query: empty audio")
            timeline["listen_chunk_ms_p50"] = float(np.median(self.heard_so_far.chunk_ms))
            timeline["listen_chunk_ms_max"] = max(self.heard_so_far.chunk_ms)
            query = None
        t0 = time.perf_counter()
        chunks = []
        for chunk in self.stream_answer(query):
            if not chunks:
                timeline["first_audio_ms"] = 1000 * (time.perf_counter() - t0)
            chunks.append(chunk)
        timeline["total_ms"] = 1000 * (time.perf_counter() - t0)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return TurnResult(self.last_text, np.clip(audio, -1, 1).astype(np.float32), self.sample_rate,
                          {k: round(x, 1) for k, x in timeline.items()}, query_text=self.last_heard)
