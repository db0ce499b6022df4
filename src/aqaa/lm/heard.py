"""The heard-audio encoder: a residual bidirectional GRU over every audio block the model *hears*.

Why: a 2-layer BiGRU CTC probe reads the linguistic tokens at 11 % CER (reports/tokenizer.md) while the causal LM's
own ASR stays at WER 0.4-0.8: the words are in the tokens, a left-to-right stack of attention layers does not read
them out from a few thousand sentences. The user's query is complete before the answer starts, so reading it both
ways costs no latency. Blocks the model *speaks* stay plain and causal.

It lives inside the token embedding (`HeardEmbedding`, an `nn.Embedding` that keeps its `weight`, so a tied output
head stays tied): every path that calls the model with `input_ids` (training, DPO, merging, the lean decoder's
prefill of a user turn) goes through it unchanged. A heard block is found in the ids themselves: an audio block
right after `<|user|>`, or one followed by `<|asr|>` (an ASR document's input). The output layer starts at zero,
so attaching the encoder to a trained model changes nothing until it trains. Encoded positions carry no loss:
their state has read the tokens after them (`mask_heard_labels`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ENCODER_FILE = "heard_encoder.safetensors"
CHARS = " abcdefghijklmnopqrstuvwxyz'"  # the CTC head's alphabet (after `aqaa.eval.text.normalize`), blank = 0


def reading_text(text: str) -> str:
    """Text as the CTC head writes it (normalized, CHARS only): the form of a reading, and of a typed query."""
    from aqaa.eval.text import normalize

    return " ".join("".join(c for c in normalize(text) if c in CHARS).split())


def ctc_targets(text: str) -> list[int]:
    """Normalized text -> CTC labels (1-based indices into CHARS; 0 is the blank)."""
    return [CHARS.index(c) + 1 for c in reading_text(text)]


def ctc_greedy(best: list[int]) -> str:
    """Frame-wise argmax labels -> text: repeats collapsed, blanks dropped."""
    chars, prev = [], 0
    for c in best:
        if c != prev and c != 0:
            chars.append(CHARS[c - 1])
        prev = c
    return "".join(chars)


def greedy_text(char_logits: torch.Tensor) -> str:
    """[len, chars + blank] logits -> the greedy CTC text, words single-spaced."""
    return " ".join(ctc_greedy(char_logits.argmax(-1).tolist()).split())


def heard_spans(row: list[int], user: int, audio_start: int, audio_end: int, asr: int) -> list[tuple[int, int]]:
    """[start, stop) of the audio tokens of each heard block in one id row (a block cut off by the row's end, as in
    a streamed prefix, counts only once it is closed)."""
    spans, i, n = [], 0, len(row)
    while i < n:
        if row[i] != audio_start:
            i += 1
            continue
        try:
            end = row.index(audio_end, i + 1)
        except ValueError:
            break
        after = row[end + 1] if end + 1 < n else None
        if end > i + 1 and ((i > 0 and row[i - 1] == user) or after == asr):
            spans.append((i + 1, end))
        i = end + 1
    return spans


class HeardAudioEncoder(nn.Module):
    """Residual BiGRU: x + out(BiGRU(x)) over the embeddings of one or many heard blocks (zero-initialised out);
    with `ctc`, a character head on the GRU states that an auxiliary CTC loss trains on ASR transcripts."""

    def __init__(self, dim: int, hidden: int, layers: int = 2, ctc: bool = False):
        super().__init__()
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.chars = None
        if ctc:
            self.add_ctc_head()

    def add_ctc_head(self) -> None:
        self.chars = nn.Linear(self.out.in_features, len(CHARS) + 1).to(self.out.weight.device)

    def states(self, blocks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(padded blocks [N, T, dim], GRU states [N, T, 2 hidden], lengths [N]), in one packed GRU call."""
        lengths = torch.tensor([len(b) for b in blocks])
        padded = nn.utils.rnn.pad_sequence(blocks, batch_first=True)
        packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=padded.shape[1])
        return padded, h, lengths

    def forward(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Blocks [len_i, dim] -> encoded blocks of the same shapes."""
        padded, h, _ = self.states(blocks)
        y = padded + self.out(h).to(padded.dtype)
        return [y[i, : len(b)] for i, b in enumerate(blocks)]


class HeardEmbedding(nn.Embedding):
    """Token embeddings, then the heard-audio encoder over each heard block of the ids. With `only` (an id range),
    the encoder reads every heard token but changes only the positions whose ids fall in that range."""

    def __init__(self, base: nn.Embedding, hidden: int, ctrl: dict[str, int], layers: int = 2, ctc: bool = False,
                 only: tuple[int, int] | None = None):
        super().__init__(base.num_embeddings, base.embedding_dim, padding_idx=base.padding_idx,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight  # the same Parameter: a tied output head stays tied
        self.encoder = HeardAudioEncoder(base.embedding_dim, hidden, layers, ctc).to(base.weight.device)
        self.markers = tuple(ctrl[k] for k in ("user", "audio_start", "audio_end", "asr"))
        self.eos = ctrl["eos"]
        self.only = only

    def spans(self, ids: torch.Tensor) -> list[list[tuple[int, int]]]:
        return [heard_spans(row, *self.markers) for row in ids.tolist()]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = super().forward(ids)
        where = [(b, s) for b, spans in enumerate(self.spans(ids)) for s in spans]
        if not where:  # training: keep the encoder in the graph (DDP wants a gradient for every parameter, every step)
            if self.training and torch.is_grad_enabled():
                x = x + 0.0 * sum(p.sum() for p in self.encoder.parameters())
            return x
        encoded = self.encoder([x[b, lo:hi] for b, (lo, hi) in where])
        out = x.clone()
        for (b, (lo, hi)), y in zip(where, encoded):
            if self.only is not None:
                keep = (ids[b, lo:hi] >= self.only[0]) & (ids[b, lo:hi] < self.only[1])
                y = torch.where(keep[:, None], y, x[b, lo:hi])
            out[b, lo:hi] = y
        return out


def attach(model: nn.Module, hidden: int, ctrl: dict[str, int], ctc: bool = False,
           only: tuple[int, int] | None = None) -> HeardEmbedding:
    """Give an HF causal LM the heard-audio encoder (if it has one: only the CTC head and `only` may change);
    returns its embedding module."""
    emb = model.get_input_embeddings()
    if isinstance(emb, HeardEmbedding):
        if ctc and emb.encoder.chars is None:
            emb.encoder.add_ctc_head()
        emb.only = only
        return emb
    heard = HeardEmbedding(emb, hidden, ctrl, ctc=ctc, only=only)
    model.set_input_embeddings(heard)
    return heard


def heard_embedding(model: nn.Module) -> HeardEmbedding | None:
    emb = model.get_input_embeddings()
    return emb if isinstance(emb, HeardEmbedding) else None


def mask_heard_labels(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Labels with the encoded positions set to -100 (no-op without an encoder)."""
    heard = heard_embedding(model)
    if heard is None:
        return labels
    labels = labels.clone()
    for b, spans in enumerate(heard.spans(input_ids)):
        for lo, hi in spans:
            labels[b, lo:hi] = -100
    return labels


def heard_ctc_loss(model: nn.Module, input_ids: torch.Tensor, decode_text) -> torch.Tensor | None:
    """CTC of the encoder's character head against the transcript of every ASR document's heard block (the text
    between `<|asr|>` and `<|eos|>`, decoded by `decode_text` and normalized); None without a CTC head.

    Why: trained through the LM's loss alone, the encoder learned slowly (reports/hearing_data.md); a 2-layer BiGRU
    trained by CTC reads these tokens at 11 % CER. This gives the encoder that direct signal; the LM's own output
    head is left alone (a CTC loss through the tied head failed: reports/asr_probe.md)."""
    heard = heard_embedding(model)
    if heard is None or heard.encoder.chars is None:
        return None
    asr = heard.markers[3]
    blocks, targets = [], []
    x = nn.functional.embedding(input_ids, heard.weight)
    user = heard.markers[0]
    for b, row in enumerate(input_ids.tolist()):
        for lo, hi in heard_spans(row, *heard.markers):
            if hi + 1 >= len(row) or row[hi + 1] != asr or (lo >= 2 and row[lo - 2] == user):
                continue  # a user turn's `<|asr|>` text is the encoder's own reading, not a transcript
            text = row[hi + 2:]
            text = text[: text.index(heard.eos)] if heard.eos in text else text
            chars = ctc_targets(decode_text(text))
            if 0 < len(chars) <= hi - lo:
                blocks.append(x[b, lo:hi])
                targets.append(torch.tensor(chars))
    head = heard.encoder.chars
    if not blocks:  # keep every parameter in the graph (DDP expects gradients for all of them)
        return sum(p.sum() for p in head.parameters()) * 0.0
    _, h, lengths = heard.encoder.states(blocks)
    logp = head(h).float().log_softmax(-1).transpose(0, 1)
    return nn.functional.ctc_loss(logp, torch.cat(targets).to(logp.device), lengths,
                                  torch.tensor([len(t) for t in targets]), zero_infinity=True)


@torch.no_grad()
def heard_ctc_transcript(model: nn.Module, audio_ids: list[int]) -> str:
    """Greedy CTC reading of one heard block by the encoder's character head (a probe of what the encoder hears)."""
    heard = heard_embedding(model)
    if heard is None or heard.encoder.chars is None:
        raise ValueError("the model has no heard-audio encoder with a CTC head")
    _, h, _ = heard.encoder.states([heard.weight[torch.tensor(audio_ids, device=heard.weight.device)]])
    return greedy_text(heard.encoder.chars(h[0]))


READER_FILE = "heard_reader.safetensors"


class HeardReader(nn.Module):
    """A frozen copy of what reads a query: the audio rows of the token embedding and the encoder's GRU and
    character head, as they were when the copy was taken.

    Why: the reading (`heard_reading`) is made by the encoder, and the encoder reads the LM's own audio embeddings;
    every later stage moves both and the reading gets worse (session 22, heard-read recipe, `scripts/probe_asr.py`
    on the 200 test questions, greedy CTC: CER 0.155 / 0.156 / 0.165 / 0.192 and entities 6 / 3 / 5 / 0 of 34 after
    stage 1 / 2 / 3 / SFT), and each stage trains on readings of its starting model's encoder but answers with its
    own. A copy keeps the best reading, and training and answering read alike."""

    def __init__(self, rows: torch.Tensor, offset: int, hidden: int, layers: int = 2):
        super().__init__()
        self.register_buffer("rows", rows.detach().float().clone())
        self.offset = offset
        self.gru = nn.GRU(rows.shape[1], hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.chars = nn.Linear(2 * hidden, len(CHARS) + 1)
        self.to(rows.device).requires_grad_(False)

    @classmethod
    def from_model(cls, model: nn.Module, audio_range: tuple[int, int]) -> "HeardReader":
        """A copy of `model`'s encoder and audio embedding rows `audio_range` as they are now."""
        heard = heard_embedding(model)
        if heard is None or heard.encoder.chars is None:
            raise ValueError("the model has no heard-audio encoder with a CTC head to copy")
        gru = heard.encoder.gru
        reader = cls(heard.weight[audio_range[0]:audio_range[1]], audio_range[0], gru.hidden_size, gru.num_layers)
        reader.gru.load_state_dict(gru.state_dict())
        reader.chars.load_state_dict(heard.encoder.chars.state_dict())
        return reader.float()

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], offset: int) -> "HeardReader":
        """The reader `state_dict()` saved (sizes read off the tensors)."""
        layers = sum(k.startswith("gru.weight_ih_l") and not k.endswith("_reverse") for k in tensors)
        reader = cls(tensors["rows"], offset, tensors["gru.weight_hh_l0"].shape[1], layers)
        reader.load_state_dict(tensors)
        return reader

    @torch.no_grad()
    def char_logits(self, audio_ids: list[int]) -> torch.Tensor:
        """[len, chars + blank] of one heard block."""
        x = self.rows[torch.tensor(audio_ids, device=self.rows.device) - self.offset]
        return self.chars(self.gru(x[None])[0][0])

    def transcript(self, audio_ids: list[int]) -> str:
        """Greedy CTC reading of one heard block, as `heard_ctc_transcript` reads it with the live encoder."""
        return greedy_text(self.char_logits(audio_ids))


LEXICON_FILE = "heard_lexicon.txt"


def lexicon_words(lines: list[str]) -> list[str]:
    """The words of the training texts (normalized), most frequent first (ties in `snap_to_lexicon` go to the
    commoner word), each in the case it is mostly written in inside a sentence ("Russia", "I", "seventy"): the form
    a cased reading (`heard_case`) writes it in."""
    from collections import Counter

    from aqaa.eval.text import normalize

    counts, forms = Counter(), Counter()
    for line in lines:
        words = normalize(line).split()
        counts.update(words)
        written = normalize(line, lower=False).split()
        if len(written) == len(words):
            forms.update(zip(words[1:], written[1:]))  # a sentence's first word is capitalised whatever it is
    form = {}
    for (word, written), _ in forms.most_common():
        form.setdefault(word, written)
    return [form.get(w, w) for w, _ in counts.most_common()]


def snap_to_lexicon(text: str, lexicon: list[str], max_distance: float, cased: bool = False) -> str:
    """Each read word outside the lexicon becomes its nearest lexicon word when their normalized edit distance is at
    most `max_distance` (else it stays as read); `cased` writes every lexicon word in the lexicon's case. Why: the
    greedy CTC reading misses entities by a letter ("grece", "kyive", "acra"), and a model only knows the words it
    was trained on; a closed-vocabulary correction is what a lexicon does in any CTC decoder, here on the greedy path
    so it costs microseconds (rapidfuzz). Why the case: a lowercase "russia" is other tokens than the "Russia" the
    answer writes, so copying a named word from the question into the answer is one step harder."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    keys = [w.lower() for w in lexicon]
    written = dict(zip(keys, lexicon))
    out = []
    for word in text.split():
        best = None if word in written else process.extractOne(
            word, keys, scorer=Levenshtein.normalized_distance, score_cutoff=max_distance)
        word = best[0] if best else word
        out.append(written.get(word, word) if cased else word)
    return " ".join(out)
