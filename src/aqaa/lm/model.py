"""The backbone: a transformers `LlamaForCausalLM` whose vocabulary holds text + 5,120 audio + control tokens.

A model folder is what `save_pretrained` writes (config.json, model.safetensors, the extended tokenizer) plus
`aqaa_lm.json` (the preset and the answer rhythm) and, for a model with the heard-audio encoder (`aqaa/lm/heard.py`),
`heard_encoder.safetensors`, so `AudioLM.load(folder)` gets everything back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from aqaa.lm.format import AnswerRhythm
from aqaa.lm.vocab import Vocab, extend_tokenizer, train_text_tokenizer


@dataclass
class LMConfig:
    name: str = "default"
    hidden: int = 256
    layers: int = 6
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 704
    max_positions: int = 2048
    text_vocab: int = 1024  # BPE size for the presets that train their own text tokenizer
    pretrained: str = ""  # "smollm2": start from the bundled SmolLM2-135M-Instruct
    tie_embeddings: bool = True
    heard_encoder: int = 0  # > 0: a BiGRU of that size reads every audio block the model hears (aqaa/lm/heard.py)
    heard_ctc: float = 0.0  # > 0: weight of the encoder's auxiliary CTC loss on ASR transcripts (training only)
    # where the encoder's output is added: "all" heard audio positions, or "linguistic" ones only (the semantic
    # tokens, which carry level, pitch and rate, then reach the LM as they are; reports/hearing_data.md)
    heard_residual: str = "all"
    # each user turn also carries the encoder's CTC reading of its audio as text (`<|audio_end|> <|asr|> reading
    # <|end_turn|>`), so the LM answers from words it is given, not only from words it must read out of the audio
    # (needs heard_encoder and heard_ctc; training and answering both compute it with the model's own encoder)
    heard_reading: bool = False
    # > 0: a read word outside the training texts' words becomes its nearest one within this normalized edit
    # distance (`aqaa.lm.heard.snap_to_lexicon`); the word list is saved beside the weights (heard_lexicon.txt)
    heard_lexicon: float = 0.0
    # (with the lexicon) the reading writes each known word in the case the training texts write it ("Russia"), so a
    # named word reaches the LM as the same tokens its answer writes
    heard_case: bool = False
    # the reading comes from a frozen copy of the encoder and of the audio rows it reads (`HeardReader`, saved as
    # heard_reader.safetensors), taken by the first stage that sets this: later stages train the live encoder
    # without moving what the model reads
    heard_reader: bool = False
    # > 0 (pretrained backbones only): train the decoder as LoRA adapters of this rank plus the new embedding rows,
    # and save only that delta over the bundled weights (`aqaa/lm/lora.py`); loading for inference merges it
    lora_rank: int = 0
    lora_alpha: float = 0.0  # 0: twice the rank
    rhythm: AnswerRhythm = field(default_factory=AnswerRhythm)

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        d = dict(d)
        d["rhythm"] = AnswerRhythm(**d.get("rhythm", {}))
        return cls(**d)


PRESETS: dict[str, LMConfig] = {
    "tiny": LMConfig("tiny", hidden=32, layers=2, heads=2, kv_heads=2, intermediate=64, max_positions=1024,
                     text_vocab=300),
    "default": LMConfig("default"),
    "smollm2": LMConfig("smollm2", hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536,
                        max_positions=8192, text_vocab=0, pretrained="smollm2"),
    # GPU sizes: same code, bigger numbers
    "medium": LMConfig("medium", hidden=768, layers=12, heads=12, kv_heads=4, intermediate=2048, text_vocab=4096),
}


class AudioLM:
    """The HF model, its extended vocabulary and the aqaa settings, kept together."""

    def __init__(self, model, vocab: Vocab, cfg: LMConfig, lexicon: list[str] | None = None):
        self.model, self.vocab, self.cfg = model, vocab, cfg
        self.lexicon = lexicon  # the words `reader` snaps its reading to (heard_lexicon)
        self.heard_reader = None  # a frozen `aqaa.lm.heard.HeardReader` (heard_reader), else the live encoder reads

    def freeze_reader(self) -> "AudioLM":
        """Take the frozen reader from the encoder as it is now (`heard_reader`); a model that has one keeps it."""
        if self.heard_reader is None:
            from aqaa.lm.heard import HeardReader

            lo, _ = self.vocab.l_range
            _, hi = self.vocab.s_range
            self.heard_reader = HeardReader.from_model(self.model, (lo, hi))
        self.cfg.heard_reader = True
        return self

    @classmethod
    def create(cls, cfg: LMConfig, text_lines: list[str] | None = None, seed: int = 0, vocab: Vocab | None = None
               ) -> "AudioLM":
        """A fresh model: a new BPE on `text_lines` (or the given `vocab`) and random weights, or SmolLM2 extended by
        the audio tokens."""
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        if cfg.pretrained == "smollm2":
            from aqaa.lm.smollm2 import load_smollm2

            model, hf_tok = load_smollm2()
            vocab = Vocab(extend_tokenizer(hf_tok))
            base_rows = model.get_input_embeddings().num_embeddings
            model.resize_token_embeddings(vocab.size, mean_resizing=True)
            if cfg.lora_rank:
                from aqaa.lm.lora import add_lora

                add_lora(model, cfg.lora_rank, cfg.lora_alpha, base_rows)
            model.train()
            return cls(model, vocab, cfg).with_heard_encoder(cfg.heard_encoder)
        if cfg.lora_rank:
            raise ValueError("lora_rank trains a delta over pretrained weights: it needs a pretrained preset (smollm2)")
        if vocab is None and not text_lines:
            raise ValueError(f"preset {cfg.name!r} trains its own text tokenizer: give it text lines")
        vocab = vocab or Vocab(extend_tokenizer(train_text_tokenizer(text_lines, cfg.text_vocab)))
        hf_cfg = LlamaConfig(
            vocab_size=vocab.size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads, intermediate_size=cfg.intermediate,
            max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
            bos_token_id=vocab.ctrl["bos"], eos_token_id=vocab.ctrl["end_turn"], pad_token_id=vocab.ctrl["pad"],
            rope_theta=10_000.0,
        )
        return cls(LlamaForCausalLM(hf_cfg), vocab, cfg).with_heard_encoder(cfg.heard_encoder)

    def with_heard_encoder(self, hidden: int) -> "AudioLM":
        """Attach the heard-audio encoder (zero-initialised output: the model's outputs do not change yet)."""
        if hidden:
            from aqaa.lm.heard import attach

            if self.cfg.heard_residual not in ("all", "linguistic"):
                raise ValueError(f"heard_residual must be all or linguistic, not {self.cfg.heard_residual!r}")
            only = self.vocab.l_range if self.cfg.heard_residual == "linguistic" else None
            attach(self.model, hidden, self.vocab.ctrl, ctc=self.cfg.heard_ctc > 0, only=only)
            self.cfg.heard_encoder = hidden
        if self.cfg.heard_reading and not (self.cfg.heard_encoder and self.cfg.heard_ctc):
            raise ValueError("heard_reading needs the heard-audio encoder with its CTC head (heard_encoder, heard_ctc)")
        if self.cfg.heard_lexicon and not self.cfg.heard_reading:
            raise ValueError("heard_lexicon corrects the reading: it needs heard_reading")
        if self.cfg.heard_case and not self.cfg.heard_lexicon:
            raise ValueError("heard_case writes the reading in the lexicon's case: it needs heard_lexicon")
        return self

    def reader(self):
        """`audio ids -> text ids` of the encoder's reading of a heard block when the model reads its queries
        (`heard_reading`), else None: what `aqaa.lm.format.user_turn` puts after the query audio."""
        if not self.cfg.heard_reading:
            return None
        from aqaa.lm.heard import heard_ctc_transcript

        self._check_lexicon()  # at once, not at the first query

        def read(audio_ids: list[int]) -> list[int]:
            with torch.inference_mode():
                text = (self.heard_reader.transcript(audio_ids) if self.heard_reader is not None
                        else heard_ctc_transcript(self.model, audio_ids))
                return self.reading_ids(text)
        return read

    def reading_ids(self, text: str, snap: bool = True) -> list[int]:
        """Text ids of `text` written as this model's reading writes what it hears (normalized; snapped to the
        lexicon and cased as configured; `snap=False` only cases): the form of a typed query, and of the reader's
        output."""
        from aqaa.lm.heard import reading_text, snap_to_lexicon

        text = reading_text(text)
        if self.cfg.heard_lexicon:
            self._check_lexicon()
            text = snap_to_lexicon(text, self.lexicon, self.cfg.heard_lexicon if snap else 0.0,
                                   cased=self.cfg.heard_case)
        return self.vocab.encode_text(text)

    def _check_lexicon(self) -> None:
        if self.cfg.heard_lexicon and not self.lexicon:
            raise ValueError("heard_lexicon is set but the model has no lexicon")

    def save(self, folder: str | Path) -> Path:
        """save_pretrained into a temp folder, then swap it in (a killed save leaves the old model intact)."""
        from aqaa.lm.heard import ENCODER_FILE, LEXICON_FILE, READER_FILE
        from aqaa.lm.lora import DELTA_FILE, delta_state, has_lora
        from aqaa.paths import atomic_dir
        from aqaa.train.common import save_tensors

        state = self.model.state_dict()
        encoder = {k: v for k, v in state.items() if ".encoder." in k}
        with atomic_dir(folder) as tmp:
            if has_lora(self.model):  # only what differs from the bundled weights; the config comes with them
                save_tensors(delta_state(self.model, self.vocab.text_size), tmp / DELTA_FILE)
            elif encoder:  # transformers' own file stays loadable by any Llama; the encoder goes beside it
                self.model.save_pretrained(tmp, state_dict={k: v for k, v in state.items() if k not in encoder})
            else:
                self.model.save_pretrained(tmp)
            if encoder:
                save_tensors(encoder, tmp / ENCODER_FILE)
            self.vocab.hf.save_pretrained(tmp)
            if self.heard_reader is not None:
                save_tensors(self.heard_reader.state_dict(), tmp / READER_FILE)
            if self.lexicon:
                (tmp / LEXICON_FILE).write_text("\n".join(self.lexicon) + "\n")
            (tmp / "aqaa_lm.json").write_text(json.dumps(asdict(self.cfg), indent=1))
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path, dtype=torch.float32, merged: bool = True) -> "AudioLM":
        """A saved model. A LoRA delta is rebuilt over the bundled base and, unless `merged=False` (a training stage
        that goes on training the adapters), folded into the weights."""
        from transformers import AutoModelForCausalLM

        from aqaa.lm.lora import DELTA_FILE

        folder = Path(folder)
        if not (folder / "aqaa_lm.json").is_file():
            from aqaa.errors import AqaaInputError

            raise AqaaInputError(f"{folder}: not an aqaa LM folder (no aqaa_lm.json)")
        cfg = LMConfig.from_dict(json.loads((folder / "aqaa_lm.json").read_text()))
        vocab = Vocab.load(folder)
        delta = folder / DELTA_FILE
        model = (_base_for_delta(cfg, vocab) if delta.is_file()
                 else AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype))
        from aqaa.lm.heard import LEXICON_FILE

        lexicon = (folder / LEXICON_FILE).read_text().split() if (folder / LEXICON_FILE).is_file() else None
        lm = cls(model, vocab, cfg, lexicon)
        if cfg.heard_encoder:
            from safetensors.torch import load_file

            from aqaa.lm.heard import ENCODER_FILE

            lm.with_heard_encoder(cfg.heard_encoder)
            missing, unexpected = model.load_state_dict(load_file(folder / ENCODER_FILE), strict=False)
            if unexpected or any(".encoder." in k for k in missing):
                raise ValueError(f"{folder / ENCODER_FILE}: does not fit the model ({unexpected or missing})")
            model.to(dtype)
        if cfg.heard_reader:
            from safetensors.torch import load_file

            from aqaa.lm.heard import READER_FILE, HeardReader

            lm.heard_reader = HeardReader.from_tensors(load_file(folder / READER_FILE), lm.vocab.l_range[0])
        if delta.is_file():
            from safetensors.torch import load_file

            from aqaa.lm.lora import load_delta

            load_delta(model, load_file(delta), vocab.text_size)
            if merged:
                lm.merge_lora()
            model.to(dtype)
        model.eval()
        return lm

    def merge_lora(self) -> "AudioLM":
        """Fold LoRA adapters into the weights: a plain model (saved in full from now on)."""
        from aqaa.lm.lora import merge_lora

        merge_lora(self.model)
        self.cfg.lora_rank = 0
        return self

    @torch.no_grad()
    def seed_linguistic_embeddings(self, centroids: torch.Tensor) -> None:
        """Start `<l_k>` at linguistic code k's k-means centroid, projected on its top principal axes to the model
        width and scaled to the embeddings' spread: codes that sound alike then start close, which ASR would
        otherwise have to discover from data."""
        emb = self.model.get_input_embeddings().weight
        c = centroids.float() - centroids.float().mean(0)
        width = min(emb.shape[1], *c.shape)
        _, _, v = torch.linalg.svd(c, full_matrices=False)
        x = torch.zeros(c.shape[0], emb.shape[1])
        x[:, :width] = c @ v[:width].T
        x = x * (emb.std() / x.std())
        lo = self.vocab.l_range[0]
        emb[lo: lo + c.shape[0]] = x.to(emb.dtype)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _base_for_delta(cfg: LMConfig, vocab: Vocab):
    """The bundled backbone a LoRA delta was trained over, resized to the saved vocabulary, adapters injected."""
    if cfg.pretrained != "smollm2" or not cfg.lora_rank:
        raise ValueError(f"a LoRA delta needs the smollm2 backbone and lora_rank, not {cfg.pretrained!r} / "
                         f"{cfg.lora_rank}")
    from aqaa.lm.lora import add_lora
    from aqaa.lm.smollm2 import load_smollm2

    model, _ = load_smollm2()
    if model.get_input_embeddings().num_embeddings != vocab.text_size:
        raise ValueError(f"the bundled backbone has {model.get_input_embeddings().num_embeddings} text rows, the saved "
                         f"vocabulary {vocab.text_size}")
    model.resize_token_embeddings(vocab.size, mean_resizing=False)
    return add_lora(model, cfg.lora_rank, cfg.lora_alpha, vocab.text_size)
