"""Streaming answer generation: KV cache, a grammar that keeps the answer well formed, groups handed out at once.

The grammar is the chat format of `aqaa.lm.format` read as a state machine; at every step it masks the logits so
only ids that can legally come next are sampled (`<|asr|>` heard text `<|tts|>` first when the rhythm
transcribes the query; text or `<|text_end|>` in a text chunk; exactly `L L S S S` in
each audio group; `<|audio_end|>` only at a group boundary after the text ended and at least one group; then
`<|end_turn|>`). Written by hand because it is the project's own format; transformers' logits processors would need
the same state anyway.
"""

from __future__ import annotations

import copy
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Iterator

import torch

from aqaa.lm.decode import decoder_for, mask_runs
from aqaa.lm.format import AnswerRhythm
from aqaa.lm.model import AudioLM
from aqaa.lm.vocab import Vocab


@dataclass
class Sampling:
    text_temperature: float = 0.0  # 0 = greedy
    audio_temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    max_text_tokens: int = 96
    max_heard_tokens: int = 64  # the query transcript, when the rhythm writes one
    max_groups: int = 250  # 30 s of answer audio
    seed: int | None = 0


@dataclass
class GrammarState:
    phase: str = "text"  # heard_start | heard | text | chunk | tail | end | done
    heard_total: int = 0
    text_in_chunk: int = 0
    text_total: int = 0
    group_pos: int = 0  # position inside the current L L S S S group
    groups_in_chunk: int = 0
    groups_total: int = 0


class AnswerGrammar:
    def __init__(self, vocab: Vocab, rhythm: AnswerRhythm, sampling: Sampling, codebooks: tuple[int, int] | None = None):
        """`codebooks` (linguistic, semantic sizes) limits audio ids to what the tokenizer/vocoder really use."""
        self.vocab, self.rhythm, self.sampling = vocab, rhythm, sampling
        n, c = vocab.size, vocab.ctrl
        n_l, n_s = codebooks or (vocab.l_range[1] - vocab.l_range[0], vocab.s_range[1] - vocab.s_range[0])
        l_range = (vocab.l_range[0], vocab.l_range[0] + n_l)
        s_range = (vocab.s_range[0], vocab.s_range[0] + n_s)

        def mask(*ranges, ids=()) -> torch.Tensor:
            m = torch.zeros(n, dtype=torch.bool)
            for lo, hi in ranges:
                m[lo:hi] = True
            m[list(ids)] = True
            return m

        text = mask((0, vocab.text_size))
        text[list(c.values())] = False
        text[[i for i in vocab.hf.all_special_ids if i < vocab.text_size]] = False  # e.g. SmolLM2's <|im_end|>
        self.masks = {
            "asr": mask(ids=[c["asr"]]),
            "heard": text | mask(ids=[c["tts"]]),
            "tts": mask(ids=[c["tts"]]),
            "text": text | mask(ids=[c["text_end"]]),
            "text_or_audio": text | mask(l_range, ids=[c["text_end"]]),
            "text_end": mask(ids=[c["text_end"]]),
            "l": mask(l_range),
            "s": mask(s_range),
            "l_or_end": mask(l_range, ids=[c["audio_end"]]),
            "audio_end": mask(ids=[c["audio_end"]]),
            "end_turn": mask(ids=[c["end_turn"]]),
        }

    def start(self) -> GrammarState:
        return GrammarState(phase="heard_start" if self.rhythm.transcribe_query else "text")

    def allowed(self, st: GrammarState) -> torch.Tensor:
        if st.phase == "heard_start":
            return self.masks["asr"]
        if st.phase == "heard":
            return self.masks["tts" if st.heard_total >= self.sampling.max_heard_tokens else "heard"]
        if st.phase == "text":
            if st.text_total >= self.sampling.max_text_tokens:
                return self.masks["text_end"]
            return self.masks["text" if st.text_in_chunk < self.rhythm.text_chunk else "text_or_audio"]
        if st.phase in ("chunk", "tail"):
            if st.group_pos >= 2:
                return self.masks["s"]
            if st.group_pos == 1:
                return self.masks["l"]
            if st.phase == "tail":  # a spoken answer is never silent: at least one group before `<|audio_end|>`
                if st.groups_total == 0:
                    return self.masks["l"]
                return self.masks["audio_end" if st.groups_total >= self.sampling.max_groups else "l_or_end"]
            return self.masks["l"]
        if st.phase == "end":
            return self.masks["end_turn"]
        raise RuntimeError("the answer is complete")

    def advance(self, st: GrammarState, token: int) -> str:
        """Move the state past `token`; returns what it was: heard_mark | heard | text | text_end | audio | group |
        audio_end | end."""
        c = self.vocab.ctrl
        if st.phase == "heard_start":
            st.phase = "heard"
            return "heard_mark"
        if st.phase == "heard":
            if token == c["tts"]:
                st.phase = "text"
                return "heard_mark"
            st.heard_total += 1
            return "heard"
        if st.phase == "text":
            if token == c["text_end"]:
                st.phase = "tail"
                return "text_end"
            if self.vocab.l_range[0] <= token < self.vocab.l_range[1]:
                st.phase, st.group_pos, st.groups_in_chunk = "chunk", 1, 0
                return "audio"
            st.text_in_chunk += 1
            st.text_total += 1
            return "text"
        if st.phase in ("chunk", "tail"):
            if token == c["audio_end"]:
                st.phase = "end"
                return "audio_end"
            st.group_pos += 1
            if st.group_pos < 5:
                return "audio"
            st.group_pos = 0
            st.groups_total += 1
            if st.phase == "chunk":
                st.groups_in_chunk += 1
                if st.groups_in_chunk == self.rhythm.audio_chunk:
                    st.phase, st.text_in_chunk = "text", 0
            return "group"
        if st.phase == "end":
            st.phase = "done"
            return "end"
        raise RuntimeError("the answer is complete")


@dataclass
class Event:
    kind: str  # "heard" (a token of the query transcript) | "text" (one text token) | "group" (120 ms audio) | "end"
    ids: list[int]
    linguistic: list[int] = field(default_factory=list)
    semantic: list[int] = field(default_factory=list)


@dataclass
class DecodeState:
    """Everything generation remembers: the KV cache over all ids so far, the grammar, the pending group, a checksum
    of every id fed, and the conversation's own sampling generator (so what one conversation samples never moves
    another's answers)."""

    cache: object = None  # aqaa.lm.decode.KVCache (or a transformers Cache on the HF fallback path)
    n_past: int = 0
    logits: torch.Tensor | None = None
    grammar: GrammarState = field(default_factory=GrammarState)
    group: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)
    key: int = 0  # CRC-32 of all ids fed so far: with the seed, it seeds each answer's sampling
    rng: torch.Generator = field(default_factory=torch.Generator)

    def copy(self) -> "DecodeState":
        return copy.deepcopy(self)


class Generator:
    """`feed(state, ids)` extends the context (prompt, or a user turn in a conversation); `answer(state)` yields
    events until `<|end_turn|>`. The state object holds the KV cache, so a conversation is one state."""

    def __init__(self, lm: AudioLM, sampling: Sampling | None = None, codebooks: tuple[int, int] | None = None,
                 decoder=None):
        """`decoder` (of `lm.model`; stateless, so sessions may share one) defaults to a fresh `decoder_for`."""
        self.lm, self.vocab = lm, lm.vocab
        self.sampling = sampling or Sampling()
        self.grammar = AnswerGrammar(lm.vocab, lm.cfg.rhythm, self.sampling, codebooks)
        self.decoder = decoder or decoder_for(lm.model)
        self._rows = {id(m): mask_runs(m) for m in self.grammar.masks.values()}  # id runs of each grammar mask

    def new_state(self) -> DecodeState:
        state = DecodeState(cache=self.decoder.new_cache())
        if self.sampling.seed is None:  # a random conversation; with a seed, `answer` seeds `state.rng` itself
            state.rng.seed()
        return state

    def feed(self, state: DecodeState, ids: list[int], rows: list[tuple[int, int]] | None = None) -> DecodeState:
        """Extend the context by `ids`; `state.logits` is then the next token's (only over the id runs `rows`, when
        given: the rest is -inf, and the output head skips those rows)."""
        if state.n_past + len(ids) > self.lm.cfg.max_positions:
            raise ValueError(f"conversation too long: {state.n_past + len(ids)} > {self.lm.cfg.max_positions} tokens")
        state.logits = self.decoder.forward(ids, state.cache, rows)
        state.n_past += len(ids)
        state.key = zlib.crc32(array("q", ids).tobytes(), state.key)  # incremental: chunking does not change it
        return state

    def _sample(self, logits: torch.Tensor, allowed: torch.Tensor, temperature: float,
                rng: torch.Generator | None = None) -> int:
        logits = logits.masked_fill(~allowed, float("-inf"))
        if temperature <= 0:
            return int(logits.argmax())
        logits = logits / temperature
        k = min(self.sampling.top_k, int(allowed.sum()))
        vals, idx = logits.topk(k)
        probs = vals.softmax(-1)
        if self.sampling.top_p < 1:
            keep = probs.cumsum(-1) - probs < self.sampling.top_p
            probs = probs * keep
        return int(idx[torch.multinomial(probs, 1, generator=rng)])

    @torch.inference_mode()
    def transcribe(self, audio_ids: list[int], max_tokens: int = 64) -> str:
        """The LM's own stage-1 ASR task (`<|bos|>` audio `<|asr|>` -> text `<|eos|>`), greedy: a probe of how well
        the backbone hears the query, which every answer depends on."""
        from aqaa.lm.format import document

        c = self.vocab.ctrl
        prompt = document(self.vocab, "asr", [], audio_ids).ids[:-1]  # the stage-1 ASR document up to its text
        state = self.feed(self.new_state(), prompt)
        allowed = self.grammar.masks["text"].clone()
        allowed[c["text_end"]], allowed[c["eos"]] = False, True
        rows = mask_runs(allowed)
        out: list[int] = []
        while len(out) < max_tokens:
            token = self._sample(state.logits, allowed, 0.0)
            if token == c["eos"]:
                break
            out.append(token)
            self.feed(state, [token], rows)
        return self.vocab.decode_text(out)

    def answer(self, state: DecodeState) -> Iterator[Event]:
        """Generate one assistant turn from `state` (whose context must end with `<|assistant|>`).

        With a seed, the turn samples from a generator seeded by the seed and the context's checksum, so an answer is
        a function of its own conversation: an eval item gets the same answer whatever ran before it, alone or in a
        subset, streamed or whole; and different questions still draw independent samples."""
        if self.sampling.seed is not None:
            state.rng.manual_seed(zlib.crc32(state.key.to_bytes(4, "little"), self.sampling.seed & 0xFFFFFFFF))
        state.grammar, state.group, state.answer = self.grammar.start(), [], []
        while state.grammar.phase != "done":
            allowed = self.grammar.allowed(state.grammar)
            audio_next = state.grammar.phase in ("chunk", "tail")
            if state.grammar.phase == "text" and bool(allowed[self.vocab.l_range[0]]):
                # text or the next audio chunk: decided greedily, then sampled inside the chosen modality
                best = int(state.logits.masked_fill(~allowed, float("-inf")).argmax())
                audio_next = self.vocab.l_range[0] <= best < self.vocab.l_range[1]
                allowed = self.grammar.masks["l"] if audio_next else allowed & ~self.grammar.masks["l"]
            temp = self.sampling.audio_temperature if audio_next else self.sampling.text_temperature
            token = self._sample(state.logits, allowed, temp, state.rng)
            kind = self.grammar.advance(state.grammar, token)
            state.answer.append(token)
            done = state.grammar.phase == "done"  # else only the rows the grammar allows next are computed
            self.feed(state, [token], None if done else self._rows[id(self.grammar.allowed(state.grammar))])
            if kind in ("text", "heard"):
                yield Event(kind, [token])
            elif kind in ("audio", "group"):
                state.group.append(token)
                if kind == "group":
                    lin, sem = self.vocab.split_group_ids(state.group)
                    yield Event("group", state.group, lin, sem)
                    state.group = []
            elif kind == "end":
                yield Event("end", [token])


def generate_answer(gen: Generator, prompt_ids: list[int]) -> dict:
    """Whole-answer convenience: text, what it heard (when the rhythm transcribes), both streams and the answer ids."""
    state = gen.feed(gen.new_state(), prompt_ids)
    text_ids, heard_ids, lin, sem = [], [], [], []
    for ev in gen.answer(state):
        if ev.kind == "text":
            text_ids += ev.ids
        elif ev.kind == "heard":
            heard_ids += ev.ids
        elif ev.kind == "group":
            lin += ev.linguistic
            sem += ev.semantic
    return {"text": gen.vocab.decode_text(text_ids), "heard": gen.vocab.decode_text(heard_ids), "linguistic": lin,
            "semantic": sem, "ids": state.answer}
