"""The chat format: how turns, text and audio become one id sequence (and which ids carry loss).

    <|bos|>
    <|user|> <|audio_start|> L L S S S ... <|audio_end|> <|end_turn|>
    <|assistant|> t t [4 audio groups] t t [4 audio groups] ... t <|text_end|> [rest of the audio] <|audio_end|> <|end_turn|>
    <|user|> ...

With `transcribe_query` the assistant first writes what it heard, in the stage-1 task markers, then answers:
    <|assistant|> <|asr|> heard query text <|tts|> t t [4 audio groups] ... <|end_turn|>
(an inner transcript, as SpeechGPT's chain of modality: the answer is then conditioned on text the model itself
wrote, which stage-1 ASR trains on every voice; the user hears only what follows `<|tts|>`.)
A model with `heard_reading` instead gives each user turn its heard-audio encoder's reading, as in an ASR document:
    <|user|> <|audio_start|> L L S S S ... <|audio_end|> <|asr|> reading <|end_turn|>
(input only, no loss; `reader` below is `AudioLM.reader()`, the same function in training and answering.)
A typed query is the reading alone: `<|user|> <|asr|> text <|end_turn|>`.

The assistant's answer interleaves its text and its audio with a fixed rhythm (`text_chunk` text tokens, then
`audio_chunk` groups of `L L S S S`), so the text runs ahead of the speech it is spoken in — the transcript is
written before it is said, as in Step-Audio-AQAA. When the text is almost spent (or the audio is), the rest of the
text follows at once, then `<|text_end|>` and the remaining audio. Stage-1 documents use the task markers:
    text:  <|bos|> text <|eos|>
    audio: <|bos|> <|audio_start|> groups <|audio_end|> <|eos|>
    asr:   <|bos|> <|audio_start|> groups <|audio_end|> <|asr|> text <|eos|>
    tts:   <|bos|> <|tts|> text <|audio_start|> groups <|audio_end|> <|eos|>
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from aqaa.lm.vocab import Vocab


@dataclass
class AnswerRhythm:
    text_chunk: int = 2  # text tokens per step of the rhythm
    audio_chunk: int = 4  # 120 ms groups per step (480 ms)
    transcribe_query: bool = False  # answers start with `<|asr|> heard text <|tts|>` (see the module docstring)


@dataclass
class Sequence:
    """Ids and a parallel loss mask (1 = the model is trained to predict this id)."""

    ids: list[int] = field(default_factory=list)
    loss: list[int] = field(default_factory=list)

    def add(self, ids: list[int], train: bool) -> "Sequence":
        self.ids += ids
        self.loss += [int(train)] * len(ids)
        return self

    def __len__(self) -> int:
        return len(self.ids)


def answer_ids(vocab: Vocab, text_ids: list[int], audio_ids: list[int], rhythm: AnswerRhythm,
               heard_ids: list[int] | None = None) -> list[int]:
    """The assistant turn body (after `<|assistant|>`), through `<|end_turn|>`; `heard_ids` (the query's text) is
    required when the rhythm transcribes the query."""
    c = vocab.ctrl
    out: list[int] = []
    if rhythm.transcribe_query:
        if heard_ids is None:
            raise ValueError("this rhythm transcribes the query: give the query text (heard_ids)")
        out += [c["asr"], *heard_ids, c["tts"]]
    groups = [audio_ids[i: i + 5] for i in range(0, len(audio_ids), 5)]
    t, g = 0, 0
    while t < len(text_ids):
        out += text_ids[t: t + rhythm.text_chunk]
        t += rhythm.text_chunk
        if t < len(text_ids) and len(groups) - g > rhythm.audio_chunk:
            for grp in groups[g: g + rhythm.audio_chunk]:
                out += grp
            g += rhythm.audio_chunk
        else:
            out += text_ids[t:]
            break
    out.append(c["text_end"])
    for grp in groups[g:]:
        out += grp
    return out + [c["audio_end"], c["end_turn"]]


def audio_block(vocab: Vocab, audio_ids: list[int]) -> list[int]:
    return [vocab.ctrl["audio_start"], *audio_ids, vocab.ctrl["audio_end"]]


Reader = Callable[[list[int]], list[int]]  # query audio ids -> text ids of the model's reading of them


def read_once(reader: Reader) -> Reader:
    """`reader` remembering what it read: a query is read once, however many sequences or prompts hold it."""
    seen: dict[tuple[int, ...], list[int]] = {}

    def read(audio_ids: list[int]) -> list[int]:
        key = tuple(audio_ids)
        if key not in seen:
            seen[key] = reader(audio_ids)
        return seen[key]
    return read


def user_turn(vocab: Vocab, audio_ids: list[int], reader: Reader | None = None,
              hide: Callable[[list[int]], list[int]] | None = None) -> list[int]:
    """`hide` (training only) changes the audio the turn shows after its reading was taken from the real one."""
    reading = [vocab.ctrl["asr"], *reader(audio_ids)] if reader else []
    shown = hide(audio_ids) if hide else audio_ids
    return [vocab.ctrl["user"], *audio_block(vocab, shown), *reading, vocab.ctrl["end_turn"]]


def typed_turn(vocab: Vocab, text_ids: list[int]) -> list[int]:
    """A query given as text alone, in the reading's place (`<|user|> <|asr|> text <|end_turn|>`): the typed
    questions of the `typed` training part (`aqaa.train.lm`), which teach the answer to follow the words read."""
    return [vocab.ctrl["user"], vocab.ctrl["asr"], *text_ids, vocab.ctrl["end_turn"]]


def dialogue(vocab: Vocab, turns: list[tuple], rhythm: AnswerRhythm, train_all_answers: bool = True,
             reader: Reader | None = None, hide: Callable[[list[int]], list[int]] | None = None) -> Sequence:
    """turns: (query audio ids, answer text ids, answer audio ids[, query text ids]). Loss on the assistant's
    answers only (every answer, or only the last when `train_all_answers` is False)."""
    seq = Sequence().add([vocab.ctrl["bos"]], False)
    for i, (q_audio, a_text, a_audio, *heard) in enumerate(turns):
        seq.add(user_turn(vocab, q_audio, reader, hide) + [vocab.ctrl["assistant"]], False)
        seq.add(answer_ids(vocab, a_text, a_audio, rhythm, heard[0] if heard else None),
                train_all_answers or i == len(turns) - 1)
    return seq


def conversation_so_far(vocab: Vocab, history: list[tuple[list[int], list[int]]], reader: Reader | None = None
                        ) -> list[int]:
    """`<|bos|>` and the earlier (query audio, full answer ids) turns: what precedes a new user turn."""
    ids = [vocab.ctrl["bos"]]
    for q_audio, a_ids in history:
        ids += user_turn(vocab, q_audio, reader) + [vocab.ctrl["assistant"]] + a_ids
    return ids


def prompt(vocab: Vocab, history: list[tuple[list[int], list[int]]], query_audio: list[int],
           reader: Reader | None = None) -> list[int]:
    """Ids to feed before generating an answer: earlier (query audio, full answer ids) turns, then the new query."""
    turn = user_turn(vocab, query_audio, reader)
    return conversation_so_far(vocab, history, reader) + turn + [vocab.ctrl["assistant"]]


def document(vocab: Vocab, kind: str, text_ids: list[int] | None = None, audio_ids: list[int] | None = None,
             rhythm: AnswerRhythm | None = None) -> Sequence:
    """Stage-1/2 documents (all ids carry loss except the first)."""
    c = vocab.ctrl
    if kind == "text":
        body = [*text_ids, c["eos"]]
    elif kind == "audio":
        body = [*audio_block(vocab, audio_ids), c["eos"]]
    elif kind == "asr":
        body = [*audio_block(vocab, audio_ids), c["asr"], *text_ids, c["eos"]]
    elif kind == "tts":
        body = [c["tts"], *text_ids, *audio_block(vocab, audio_ids), c["eos"]]
    elif kind == "interleaved":
        plain = replace(rhythm or AnswerRhythm(), transcribe_query=False)  # no query here to transcribe
        body = [c["assistant"], *answer_ids(vocab, text_ids, audio_ids, plain)]
    else:
        raise ValueError(f"unknown document kind {kind!r}")
    return Sequence().add([c["bos"]], False).add(body, True)
