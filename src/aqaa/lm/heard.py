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
    """Residual BiGRU: x + out(BiGRU(x)) over the embeddings of one or many heard blocks (zero-initialised out)."""

    def __init__(self, dim: int, hidden: int, layers: int = 2):
        super().__init__()
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Blocks [len_i, dim] -> encoded blocks of the same shapes, in one packed GRU call."""
        lengths = torch.tensor([len(b) for b in blocks])
        padded = nn.utils.rnn.pad_sequence(blocks, batch_first=True)
        packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=padded.shape[1])
        y = padded + self.out(h).to(padded.dtype)
        return [y[i, : len(b)] for i, b in enumerate(blocks)]


class HeardEmbedding(nn.Embedding):
    """Token embeddings, then the heard-audio encoder over each heard block of the ids."""

    def __init__(self, base: nn.Embedding, hidden: int, ctrl: dict[str, int], layers: int = 2):
        super().__init__(base.num_embeddings, base.embedding_dim, padding_idx=base.padding_idx,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight  # the same Parameter: a tied output head stays tied
        self.encoder = HeardAudioEncoder(base.embedding_dim, hidden, layers).to(base.weight.device)
        self.markers = tuple(ctrl[k] for k in ("user", "audio_start", "audio_end", "asr"))

    def spans(self, ids: torch.Tensor) -> list[list[tuple[int, int]]]:
        return [heard_spans(row, *self.markers) for row in ids.tolist()]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = super().forward(ids)
        where = [(b, s) for b, spans in enumerate(self.spans(ids)) for s in spans]
        if not where:
            return x
        encoded = self.encoder([x[b, lo:hi] for b, (lo, hi) in where])
        x = x.clone()
        for (b, (lo, hi)), y in zip(where, encoded):
            x[b, lo:hi] = y
        return x


def attach(model: nn.Module, hidden: int, ctrl: dict[str, int]) -> HeardEmbedding:
    """Give an HF causal LM the heard-audio encoder (a no-op if it has one); returns its embedding module."""
    emb = model.get_input_embeddings()
    if isinstance(emb, HeardEmbedding):
        return emb
    heard = HeardEmbedding(emb, hidden, ctrl)
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
