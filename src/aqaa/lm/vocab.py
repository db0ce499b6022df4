"""The LM vocabulary: a text tokenizer extended by the 5,120 audio tokens and a few control tokens.

Layout (SPEC): text ids first, then `<l_0>..<l_1023>`, `<s_0>..<s_4095>`, then the control tokens below (not counted
in the 5,120). The `tiny` and `default` presets train a small byte-level BPE on the project's own text (a 49 k
vocabulary would make the CPU model's softmax several times larger than its transformer); `smollm2` keeps its own.
"""

from __future__ import annotations

from pathlib import Path

from aqaa.tokenizer.interleave import L_CODES, S_CODES

CONTROL_TOKENS = [
    "<|pad|>", "<|bos|>", "<|eos|>",  # documents
    "<|user|>", "<|assistant|>", "<|end_turn|>",  # chat turns
    "<|audio_start|>", "<|audio_end|>", "<|text_end|>",  # modalities inside a turn
    "<|asr|>", "<|tts|>",  # stage-1 task markers
]


def audio_token_names() -> list[str]:
    return [f"<l_{i}>" for i in range(L_CODES)] + [f"<s_{i}>" for i in range(S_CODES)]


def train_text_tokenizer(lines: list[str], vocab_size: int):
    """Byte-level BPE (HF `tokenizers`) on the given text, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def extend_tokenizer(hf_tokenizer):
    """Append the audio tokens, then the control tokens; refuses a tokenizer that already has some of them."""
    if "<l_0>" in hf_tokenizer.get_vocab():
        raise ValueError("tokenizer already holds audio tokens")
    hf_tokenizer.add_tokens(audio_token_names(), special_tokens=True)
    hf_tokenizer.add_special_tokens({"additional_special_tokens": CONTROL_TOKENS})
    hf_tokenizer.pad_token = "<|pad|>"
    return hf_tokenizer


class Vocab:
    """Id arithmetic over an extended tokenizer: where audio starts, which ids are control tokens."""

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.audio_offset = hf_tokenizer.convert_tokens_to_ids("<l_0>")
        if hf_tokenizer.convert_tokens_to_ids(f"<s_{S_CODES - 1}>") != self.audio_offset + L_CODES + S_CODES - 1:
            raise ValueError("audio tokens are not contiguous in this tokenizer")
        self.text_size = self.audio_offset  # ids below this are text
        self.ctrl = {name.strip("<|>"): hf_tokenizer.convert_tokens_to_ids(name) for name in CONTROL_TOKENS}
        self.size = len(hf_tokenizer)

    @classmethod
    def load(cls, folder: str | Path) -> "Vocab":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder)))

    # ids of the two streams
    def l_id(self, code: int) -> int:
        return self.audio_offset + int(code)

    def s_id(self, code: int) -> int:
        return self.audio_offset + L_CODES + int(code)

    @property
    def l_range(self) -> tuple[int, int]:
        return self.audio_offset, self.audio_offset + L_CODES

    @property
    def s_range(self) -> tuple[int, int]:
        return self.audio_offset + L_CODES, self.audio_offset + L_CODES + S_CODES

    def is_text(self, i: int) -> bool:
        return i < self.text_size and i not in self.ctrl.values()

    def audio_group_ids(self, linguistic, semantic) -> list[int]:
        """Both streams as LM ids, interleaved L L S S S per 120 ms group."""
        lin, sem = list(linguistic), list(semantic)
        if len(lin) % 2 or len(sem) != 3 * (len(lin) // 2):
            raise ValueError(f"streams do not form whole groups: {len(lin)} linguistic, {len(sem)} semantic")
        out: list[int] = []
        for g in range(len(lin) // 2):
            out += [self.l_id(c) for c in lin[2 * g: 2 * g + 2]] + [self.s_id(c) for c in sem[3 * g: 3 * g + 3]]
        return out

    def split_group_ids(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """Inverse of `audio_group_ids`: LM ids of whole groups -> (linguistic codes, semantic codes)."""
        lo, _ = self.l_range
        s_lo, _ = self.s_range
        lin, sem = [], []
        for g in range(0, len(ids) - len(ids) % 5, 5):
            lin += [i - lo for i in ids[g: g + 2]]
            sem += [i - s_lo for i in ids[g + 2: g + 5]]
        return lin, sem

    def encode_text(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def decode_text(self, ids: list[int]) -> str:
        return self.hf.decode([i for i in ids if self.is_text(i)], skip_special_tokens=True).strip()
