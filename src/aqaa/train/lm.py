"""`aqaa train pretrain --stage 1|2|3` and `aqaa train sft`: the LM recipe's stages as resumable steps.

Stage 1 (modality mixing) starts a fresh model (or SmolLM2 extended by the audio tokens); every later stage starts
from the previous stage's final model. Each stage writes `OUT/<stage>/`: `model/` (save_pretrained + aqaa_lm.json),
`checkpoint/` (model, optimizer, scheduler, RNG; swapped in atomically), `metrics.jsonl` and `loss.png`.

Batches are drawn by an RNG seeded with (seed, step), so the data position *is* the step: a killed run resumes
from its last checkpoint and replays exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from aqaa.data.tokens import load_tokens
from aqaa.data.voices import Style
from aqaa.lm.format import AnswerRhythm, Reader, Sequence, answer_ids, dialogue, document, read_once, typed_turn
from aqaa.lm.heard import heard_ctc_loss, mask_heard_labels
from aqaa.lm.lora import has_lora
from aqaa.lm.model import PRESETS, AudioLM, LMConfig
from aqaa.lm.vocab import Vocab
from aqaa.train.common import Metrics, apply_overrides, load_checkpoint, save_checkpoint_on_main, shard_model

STAGES = ("stage1", "stage2", "stage3", "sft")
PREVIOUS = {"stage2": "stage1", "stage3": "stage2", "sft": "stage3"}

# mixture weights per stage (parts are built by `build_parts`)
MIXES = {
    "stage1": {"text": 0.25, "audio": 0.15, "asr": 0.3, "tts": 0.3},
    "stage2": {"interleaved": 0.6, "asr": 0.2, "text": 0.1, "tts": 0.1},
    "stage3": {"single_turn": 0.7, "interleaved": 0.2, "asr": 0.1},
    "sft": {"dialogue": 0.8, "single_turn": 0.2},
}


@dataclass
class StageConfig:
    stage: str = "stage1"
    lm: LMConfig = field(default_factory=LMConfig)
    steps: int = 1000
    batch: int = 16
    max_len: int = 768
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    ckpt_every: int = 100
    log_every: int = 10
    seed: int = 0
    mix: dict = field(default_factory=dict)
    mixed_precision: str = "no"  # "bf16" on GPUs
    stop_after: int = 0  # end this run after that step (0: run to `steps`); a later run resumes
    gradient_checkpointing: bool = False
    linguistic_init: str = ""  # stage 1 of a fresh model: a tokenizer folder whose centroids seed the <l_k> rows
    fsdp: bool = False  # shard parameters, gradients and optimizer state over the processes (FSDP2) instead of DDP
    # > 0 (with lm.heard_encoder and lm.heard_ctc): that many CTC-only steps on a fresh encoder (GRU + character
    # head, the LM untouched) before the first step, so the LM meets an encoder that already reads characters
    # (measured: reports/hearing_data.md, the encoder then reads test questions at 18 % CER)
    heard_ctc_warmup: int = 0
    heard_ctc_warmup_lr: float = 2e-3
    # speech-control items also train their plain request ("Say take care.") answered in the neutral voice. Off by
    # default: it made plain requests neutral and the phrase heard more often, but controlled answers less often
    # styled, and the direction figure did not move (reports/speech_control.md)
    plain_requests: bool = False
    # (with lm.heard_reading) this share of training queries shows random linguistic codes instead of its own after
    # the reading was taken from the real ones (semantic stream kept): in training the reading and the audio say the
    # same, and the LM learned to ignore the reading (session 18: right reading, wrong answer on test voices)
    heard_hide: float = 0.0
    # this share of the audio codes the model only reads (queries, earlier turns) is swapped for a random code of
    # the same stream, drawn anew at every step: SFT memorises its 1,600 dialogues (loss 0.016) while unseen voices'
    # codes differ from the trained ones, so the LM must learn to answer through noisy codes. Measured at 0.2 on both
    # default SFT rounds: test 33.8 vs 34.2 %, memorisation barely moved (reports/default_model/session27): off
    audio_noise: float = 0.0
    # a model folder to start from instead of the previous stage's final model (a further round of a stage, e.g.
    # the recipe's `sft_rounds`, or more SFT on a shipped model)
    init: str = ""


# ---------------------------------------------------------------------------------------------- data
def _items(data_dir: Path, split: str) -> list[dict]:
    path = data_dir / f"{split}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _neutral(turn_part: dict) -> bool:
    st = turn_part.get("style") or {}
    return abs(st.get("rate", 1) - 1) < 0.15 and abs(st.get("pitch", 0)) < 1 and abs(st.get("level_db", -26) + 26) < 3


PARTS = ("text", "audio", "asr", "tts", "interleaved", "single_turn", "dialogue", "typed", "typed_control", "recall",
         "voice")
RECALL_PER_ITEM = 6  # recombined `recall` dialogues per multi-turn train item


def answer_direction(style: dict) -> str | None:
    """The control direction whose assistant style (`ANSWER_STYLES`) an answer rendering has, else None."""
    from aqaa.data.synth import ANSWER_STYLES

    for (_, direction), st in ANSWER_STYLES.items():
        if all(abs(style.get(k, getattr(Style(), k)) - getattr(st, k)) < 1e-6 for k in ("rate", "pitch", "level_db")):
            return direction
    return None


def hide_linguistic(vocab: Vocab, share: float, seed: int) -> Callable[[list[int]], list[int]]:
    """Query audio ids -> the same with every linguistic token a random code, for `share` of the queries (which ones
    and the codes are a function of the ids and `seed`, so rebuilding the parts gives the same sequences)."""
    lo, hi = vocab.l_range

    def hide(ids: list[int]) -> list[int]:
        rng = random.Random(hash((seed, *ids)))
        if rng.random() >= share:
            return ids
        return [rng.randrange(lo, hi) if lo <= i < hi else i for i in ids]
    return hide


def iter_parts(data_dir: Path, tokens, vocab: Vocab, rhythm: AnswerRhythm, split: str = "train",
               assistant_voice: str = "joe", plain_requests: bool = False, reader: Reader | None = None,
               hide: Callable[[list[int]], list[int]] | None = None, written: Callable[[str], list[int]] | None = None,
               mix: Collection[str] | None = None) -> Iterator[tuple[str, Sequence]]:
    """Every training sequence of one split as (mixture part, sequence), in a fixed order. `tokens` is any mapping
    audio path -> token row (a dict in memory, or `TokenIndex` reading rows from disk on demand). `reader`
    (`AudioLM.reader()` of a model with `heard_reading`) gives every user turn its reading; `hide`
    (`hide_linguistic`) changes the audio its dialogues show; `written` writes typed questions (`typed_dialogues`).
    `mix` (a stage's mixture parts) builds only those parts: a part's sequences are the same with or without the
    others, and a stage skips the reading and packing of what it never draws (default: all)."""
    def wanted(*names: str) -> bool:
        return mix is None or any(n in mix for n in names)

    def audio(rel: str) -> list[int]:
        row = tokens[rel]
        return vocab.audio_group_ids(row["linguistic"], row["semantic"])

    text = vocab.encode_text
    spoken: list[tuple[str, str, bool]] = []  # (audio, text, is a neutral assistant-voice rendering)
    styled: dict[tuple[str, str], str] = {}  # (answer text, control direction) -> a rendering in that style
    told: list[tuple[dict, list[tuple]]] = []  # complete multi-turn items and their turns (the `recall` part)
    asides: list[tuple] = []  # knowledge / reasoning turns (a recall dialogue's turn in between)
    for item in _items(data_dir, split):
        turns = []
        for i, turn in enumerate(item["turns"]):
            q, a = turn["query"], turn["answer"]
            if q["audio"] not in tokens or a["audio"] not in tokens:
                continue
            spoken.append((q["audio"], q["text"], False))
            spoken.append((a["audio"], a["text"], a["voice"] == assistant_voice and _neutral(a)))
            for k in ("neutral", "opposite"):
                if k in turn and turn[k]["audio"] in tokens:
                    spoken.append((turn[k]["audio"], turn[k]["text"], _neutral(turn[k])))
            if "neutral" in turn:  # a control turn: its answer and opposite renderings are styled
                for k in ("answer", "opposite"):
                    rendered = turn.get(k)
                    way = rendered and rendered["voice"] == assistant_voice and answer_direction(rendered["style"])
                    if way and rendered["audio"] in tokens:
                        styled.setdefault((rendered["text"], way), rendered["audio"])
            turns.append((audio(q["audio"]), text(a["text"]), audio(a["audio"]), text(q["text"])))
            needs_context = item["category"] == "multi_turn" and i == len(item["turns"]) - 1
            voice = item["category"] == "voice_understanding"  # a share of its own in a mixture (`voice`)
            if not needs_context and (wanted("single_turn") or voice and wanted("voice")):
                single = dialogue(vocab, turns[-1:], rhythm, reader=reader, hide=hide)
                if wanted("single_turn"):
                    yield "single_turn", single
                if voice and wanted("voice"):
                    yield "voice", single
            plain, neutral = turn.get("plain_query"), turn.get("neutral")
            if plain_requests and plain and neutral and plain["audio"] in tokens and neutral["audio"] in tokens:
                # the control words left out, the neutral rendering answers (a dialogue of its own, like its item)
                spoken.append((plain["audio"], plain["text"], False))
                asked = [(audio(plain["audio"]), text(neutral["text"]), audio(neutral["audio"]), text(plain["text"]))]
                for name in ("single_turn", "dialogue"):
                    if wanted(name):
                        yield name, dialogue(vocab, asked, rhythm, reader=reader, hide=hide)
        if len(turns) == len(item["turns"]):
            if wanted("dialogue"):
                yield "dialogue", dialogue(vocab, turns, rhythm, reader=reader, hide=hide)
            if item["category"] == "multi_turn":
                told.append((item, turns))
            elif item["category"] in ("knowledge", "reasoning"):
                asides += turns
    if split == "train" and wanted("recall"):
        for turns in recall_turns(told, asides, RECALL_PER_ITEM * len(told), seed=0):
            yield "recall", dialogue(vocab, turns, rhythm, reader=reader, hide=hide)
    sentences = data_dir / "pretrain" / "sentences.jsonl"
    for line in sentences.read_text().splitlines() if sentences.exists() else []:
        s = json.loads(line)
        if s["split"] == split and s["audio"] in tokens:
            spoken.append((s["audio"], s["text"], s["voice"] == assistant_voice))
    if split == "train" and wanted("typed"):
        yield from (("typed", seq) for seq in typed_dialogues(vocab, rhythm, spoken, audio, written))
    if split == "train" and wanted("typed_control"):
        yield from (("typed_control", seq) for seq in typed_dialogues(vocab, rhythm, spoken, audio, written,
                                                                        styled, ("speech_control",)))
    text_lines = data_dir / "pretrain" / "text.txt"
    if split == "train" and text_lines.exists() and wanted("text"):
        with text_lines.open() as fh:
            for x in fh:
                if x.strip():
                    yield "text", document(vocab, "text", text(x.rstrip("\n")))
    for rel, words, assistant in spoken if wanted("audio", "asr", "tts", "interleaved") else []:
        a_ids, t_ids = audio(rel), text(words)
        if wanted("audio"):
            yield "audio", document(vocab, "audio", audio_ids=a_ids)
        if wanted("asr"):
            yield "asr", document(vocab, "asr", t_ids, a_ids)
        if assistant and wanted("tts"):
            yield "tts", document(vocab, "tts", t_ids, a_ids)
        if assistant and wanted("interleaved"):
            yield "interleaved", document(vocab, "interleaved", t_ids, a_ids, rhythm)


def recall_turns(told: list[tuple[dict, list[tuple]]], asides: list[tuple], count: int, seed: int
                 ) -> list[list[tuple]]:
    """`count` multi-turn dialogues recombined from the split's own: a statement turn ("I own a horse." / "A horse
    is a great pet."), a knowledge or reasoning turn in between for a third of them, then a question of the same kind
    from another item, answered by a recall turn of an item that stated the same value ("You have a horse.").

    Why: each spoken multi-turn question of the split is answered once, so a model can learn its answer from the
    question's own audio and never look back (session 23: the SFT models answered 1-2 of 39 test recalls, after
    stating the right value in the first turn more often than not); here one question meets many answers, and
    only the earlier turn says which. Turns are (query audio, answer text, answer audio, query text) ids."""
    from collections import defaultdict

    by_kind: dict[str, list[tuple[str, tuple, tuple]]] = defaultdict(list)  # qtype -> (value, statement, question)
    answers: dict[tuple[str, str], list[tuple]] = defaultdict(list)  # (qtype, value) -> recall turns
    for item, turns in told:
        value = item["answer"][0]
        by_kind[item["qtype"]].append((value, turns[0], turns[-1]))
        answers[(item["qtype"], value)].append(turns[-1])
    rng, kinds, out = random.Random(seed), sorted(by_kind), []
    for _ in range(count if kinds else 0):
        kind = rng.choice(kinds)
        value, statement, _ = rng.choice(by_kind[kind])
        asked = rng.choice(by_kind[kind])[2]
        said = rng.choice(answers[(kind, value)])
        aside = [rng.choice(asides)] if asides and rng.random() < 0.35 else []
        out.append([statement, *aside, (asked[0], said[1], said[2], asked[3])])
    return out


def typed_dialogues(vocab: Vocab, rhythm: AnswerRhythm, spoken: list[tuple[str, str, bool]],
                    audio: Callable[[str], list[int]], written: Callable[[str], list[int]] | None = None,
                    styled: dict[tuple[str, str], str] | None = None,
                    categories: tuple[str, ...] = ("knowledge", "reasoning")) -> Iterator[Sequence]:
    """Knowledge and reasoning questions typed (`typed_turn`, the words as a reading writes them), each answered
    with a neutral assistant-voice rendering of its answer that the split already has. Why: a spoken training
    question reaches the LM through audio it also hears, so it never learns to answer from the words alone
    (session 19: the model answered 1 in 5 knowledge questions right even when given the exact question as its
    reading); text costs no synthesis, and the train phrasings over every entity give ~4,000 such pairs where
    the spoken split has ~1,700 questions. `written` (`AudioLM.reading_ids`) writes a question as the model's
    reading would write it (default: normalized, `reading_text`). Speech-control requests (`categories`) are
    answered by a rendering in their style (`styled`: (answer text, direction) -> audio): ~1,200 typed requests
    where the spoken split has ~300, teaching the phrase to be copied from the words read and the style taken
    from them."""
    from aqaa.data.spokenqa import typed_pairs
    from aqaa.lm.heard import reading_text

    said: dict[tuple[str, str | None], str] = {}
    for rel, words, assistant in spoken:
        if assistant:
            said.setdefault((words, None), rel)
    said.update(styled or {})
    text = vocab.encode_text
    for question, answer, direction in typed_pairs(categories):
        rel = said.get((answer, direction))
        if rel:
            seq = Sequence().add([vocab.ctrl["bos"]], False)
            asked = written(question) if written else text(reading_text(question))
            seq.add(typed_turn(vocab, asked) + [vocab.ctrl["assistant"]], False)
            yield seq.add(answer_ids(vocab, text(answer), audio(rel), rhythm, text(question)), True)


def build_parts(data_dir: Path, tokens, vocab: Vocab, rhythm: AnswerRhythm, split: str = "train",
                assistant_voice: str = "joe", plain_requests: bool = False, reader: Reader | None = None,
                hide: Callable[[list[int]], list[int]] | None = None, written: Callable[[str], list[int]] | None = None,
                mix: Collection[str] | None = None) -> dict[str, list[Sequence]]:
    """All training sequences of one split in memory, by mixture part (only the parts `mix` names; default all)."""
    parts: dict[str, list[Sequence]] = {k: [] for k in PARTS}
    reader = reader and read_once(reader)  # single-turn and dialogue sequences share queries
    for name, seq in iter_parts(data_dir, tokens, vocab, rhythm, split, assistant_voice, plain_requests, reader, hide,
                                written, mix):
        parts[name].append(seq)
    return parts


def batch_plan(sizes: dict[str, int], mix: dict[str, float], batch: int, seed: int, step: int
               ) -> list[tuple[str, int]]:
    """(part, index) of every sequence in the global batch of `step`: a pure function of (seed, step), which is
    what makes resuming exact; each rank then reads only its share."""
    rng = random.Random(seed * 1_000_003 + step)
    names = [k for k in mix if sizes.get(k)]
    weights = [mix[k] for k in names]
    plan = []
    for _ in range(batch):
        name = rng.choices(names, weights)[0]
        plan.append((name, rng.randrange(sizes[name])))  # what rng.choice(list) draws, without needing the list
    return plan


def collate(seqs: list[Sequence], pad_id: int, max_len: int) -> dict[str, torch.Tensor]:
    n = min(max_len, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), n), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        k = min(n, len(s))
        ids[i, :k] = torch.tensor(s.ids[:k])
        mask[i, :k] = 1
        lab = torch.tensor(s.ids[:k])
        lab[torch.tensor(s.loss[:k]) == 0] = -100
        labels[i, :k] = lab
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def noise_read_audio(ids: torch.Tensor, labels: torch.Tensor, vocab: Vocab, share: float,
                     gen: torch.Generator) -> torch.Tensor:
    """`ids` with `share` of the audio codes the model reads but is never trained to predict (label -100)
    replaced by random codes of their own stream (`StageConfig.audio_noise`)."""
    read_only = labels == -100
    out = ids.clone()
    for lo, hi in (vocab.l_range, vocab.s_range):
        hit = read_only & (ids >= lo) & (ids < hi) & (torch.rand(ids.shape, generator=gen) < share)
        out[hit] = torch.randint(lo, hi, (int(hit.sum()),), generator=gen)
    return out


# ---------------------------------------------------------------------------------------------- loop
def lr_at(cfg: StageConfig, step: int) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def stage_config(stage: str, preset: str, overrides: list[str] | None = None) -> StageConfig:
    from aqaa.errors import AqaaInputError

    if stage not in STAGES:
        raise AqaaInputError(f"unknown stage {stage!r}; one of {STAGES}")
    if preset not in PRESETS:
        raise AqaaInputError(f"unknown preset {preset!r}; one of {sorted(PRESETS)}")
    import copy

    cfg = StageConfig(stage=stage, lm=copy.deepcopy(PRESETS[preset]), mix=dict(MIXES[stage]))
    if preset == "smollm2":
        cfg.lr, cfg.batch = 2e-4, 8
    return apply_overrides(cfg, overrides or [])


def vocab_lines(data_dir: Path) -> list[str]:
    """The text a fresh model's BPE is trained on: the pre-training text and the train split's questions/answers."""
    lines = (data_dir / "pretrain" / "text.txt").read_text().splitlines()
    for item in _items(data_dir, "train"):
        lines += [t["query"]["text"] for t in item["turns"]] + [t["answer"]["text"] for t in item["turns"]]
    return lines


def fresh_model(lm_cfg: LMConfig, data_dir: Path, seed: int, vocab: Vocab | None = None) -> AudioLM:
    """Stage 1's starting model (the pack step builds the same vocabulary)."""
    if lm_cfg.pretrained or vocab is not None:
        return AudioLM.create(lm_cfg, seed=seed, vocab=vocab)
    return AudioLM.create(lm_cfg, vocab_lines(data_dir), seed=seed)


def _init_model(cfg: StageConfig, out: Path, data_dir: Path, vocab: Vocab | None = None) -> AudioLM:
    if cfg.stage == "stage1":
        if cfg.lm.heard_reading or cfg.lm.heard_reader:
            from aqaa.errors import AqaaInputError

            raise AqaaInputError("heard_reading and heard_reader start at a later stage: stage 1's encoder cannot "
                                 "read yet")
        lm = fresh_model(cfg.lm, data_dir, cfg.seed, vocab)
        if cfg.linguistic_init:
            from aqaa.tokenizer.model import DualTokenizer

            lm.seed_linguistic_embeddings(DualTokenizer.linguistic_centroids(cfg.linguistic_init))
        return lm
    prev = Path(cfg.init) if cfg.init else out / PREVIOUS[cfg.stage] / "model"
    if not (prev / "aqaa_lm.json").exists():
        from aqaa.errors import AqaaInputError

        raise AqaaInputError(f"{cfg.stage} starts from {prev}: " + (
            "not a model folder" if cfg.init else f"run `aqaa train pretrain` for {PREVIOUS[cfg.stage]} first"))
    lm = AudioLM.load(prev, merged=False)  # a LoRA model goes on training its adapters
    lm.cfg.name, lm.cfg.rhythm = cfg.lm.name, cfg.lm.rhythm  # the answer format is the stage's (preset + overrides)
    if cfg.lm.heard_encoder:  # a later stage may add the encoder (it starts as a no-op), its CTC head, or switch
        # where its output goes; a stage that names the encoder sets these from its own settings
        lm.cfg.heard_ctc, lm.cfg.heard_residual = cfg.lm.heard_ctc, cfg.lm.heard_residual
        lm.cfg.heard_reading, lm.cfg.heard_lexicon = cfg.lm.heard_reading, cfg.lm.heard_lexicon
        lm.cfg.heard_case = cfg.lm.heard_case
        uncased = lm.lexicon and cfg.lm.heard_case and all(w.islower() for w in lm.lexicon)  # saved before cased forms
        if cfg.lm.heard_lexicon and (not lm.lexicon or uncased):  # the words of the text the vocabulary was built on
            from aqaa.lm.heard import lexicon_words

            lm.lexicon = lexicon_words(vocab_lines(data_dir))
        trained = bool(lm.cfg.heard_encoder)
        lm.with_heard_encoder(lm.cfg.heard_encoder or cfg.lm.heard_encoder)
        if cfg.lm.heard_reader and not trained:
            from aqaa.errors import AqaaInputError

            raise AqaaInputError(f"heard_reader copies the encoder an earlier stage trained; {prev} has none")
        if cfg.lm.heard_reader:  # frozen now, from the encoder the previous stage trained (kept if it has one)
            lm.freeze_reader()
    return lm


def load_training_parts(tokens_path: str | Path, data_dir: Path) -> tuple[dict | None, Vocab | None, object]:
    """(packed parts, their vocabulary, None) for a pack folder, else (None, None, the token cache in memory)."""
    from aqaa.data.packed import is_pack, load_pack

    if is_pack(tokens_path):
        return (*load_pack(tokens_path), None)
    return None, None, load_tokens(tokens_path, data_dir)


def token_loss(model, batch: dict, acc) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, loss to log). The sum of token losses on this rank over the number of trained
    tokens on *all* ranks, times the world size: DDP's gradient averaging then gives exactly the gradient of the
    global per-token mean, so N processes train like one process with the same global batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                              ignore_index=-100, reduction="sum")
    n_global = acc.reduce((labels != -100).sum().detach(), "sum").clamp(min=1)
    logged = acc.reduce(total.detach(), "sum") / n_global
    return total * acc.num_processes / n_global, logged


def fresh_heard_encoder(lm: AudioLM) -> bool:
    """An encoder the LM has not met yet: its output layer is still all zero."""
    from aqaa.lm.heard import heard_embedding

    heard = heard_embedding(lm.model)
    return heard is not None and not heard.encoder.out.weight.any()


def warm_heard_encoder(lm: AudioLM, parts: dict, cfg: StageConfig, device) -> None:
    """CTC alone on the ASR documents, through the encoder's GRU and character head only (batches a function of
    (seed, step) as the stage's own, so every process warms up alike)."""
    from aqaa.lm.heard import heard_embedding

    heard = heard_embedding(lm.model)
    if heard is None or heard.encoder.chars is None or not parts.get("asr"):
        raise ValueError("heard_ctc_warmup needs lm.heard_encoder, lm.heard_ctc and ASR documents")
    params = [*heard.encoder.gru.parameters(), *heard.encoder.chars.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.heard_ctc_warmup_lr)
    sizes, pad = {"asr": len(parts["asr"])}, lm.vocab.ctrl["pad"]
    for step in tqdm(range(cfg.heard_ctc_warmup), desc="heard encoder CTC warm-up", unit="step"):
        plan = batch_plan(sizes, {"asr": 1.0}, cfg.batch, cfg.seed + 1, step)
        ids = collate([parts["asr"][i] for _, i in plan], pad, cfg.max_len)["input_ids"].to(device)
        loss = heard_ctc_loss(lm.model, ids, lm.vocab.decode_text)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
    lm.model.zero_grad(set_to_none=True)


def train_stage(cfg: StageConfig, data_dir: str | Path, tokens_path: str | Path, out: str | Path,
                stop_after: int | None = None) -> Path:
    """Run (or resume) one stage; returns its final model folder. `stop_after` ends the run early (tests).
    Runs as one process or under `accelerate launch` / `torchrun` (DDP, or FSDP with `fsdp=true`): each rank trains
    its share of every global batch; checkpoints hold the whole state, are written by rank 0 and load in any
    number of processes, DDP or FSDP."""
    from accelerate import Accelerator

    stop_after = stop_after or cfg.stop_after or None
    data_dir, out = Path(data_dir), Path(out)
    folder = out / cfg.stage
    final = folder / "model"
    if (final / "aqaa_lm.json").exists() and (folder / "done.json").exists():
        return final
    packed, pack_vocab, tokens = load_training_parts(tokens_path, data_dir)
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    if cfg.batch % acc.num_processes:
        raise ValueError(f"batch {cfg.batch} does not split over {acc.num_processes} processes")
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "checkpoint"
    lm = _init_model(cfg, out, data_dir, pack_vocab)  # a resume then loads the checkpoint's weights over it
    if pack_vocab is not None and lm.vocab.hf.get_vocab() != pack_vocab.hf.get_vocab():
        from aqaa.errors import AqaaInputError

        raise AqaaInputError(f"{tokens_path} was packed with another vocabulary than {cfg.stage}'s model")
    if cfg.gradient_checkpointing:
        lm.model.gradient_checkpointing_enable()
    lm.model.train()
    if packed is not None and cfg.plain_requests:
        from aqaa.errors import AqaaInputError

        raise AqaaInputError(f"{tokens_path} is a pack, made without the plain requests: plain_requests=true needs "
                             "the token cache (tokens.jsonl)")
    if packed is not None and lm.cfg.heard_reading:
        from aqaa.errors import AqaaInputError

        raise AqaaInputError(f"{tokens_path} is a pack: heard_reading reads every query with the stage's starting "
                             "model, which needs the token cache (tokens.jsonl)")
    if cfg.heard_hide and not lm.cfg.heard_reading:
        from aqaa.errors import AqaaInputError

        raise AqaaInputError("heard_hide hides the audio behind the reading: it needs lm.heard_reading=true")
    hide = hide_linguistic(lm.vocab, cfg.heard_hide, cfg.seed) if cfg.heard_hide else None
    drawn = [*cfg.mix, *(["asr"] if cfg.heard_ctc_warmup else [])]  # the CTC warm-up reads the ASR documents
    parts = packed if packed is not None else build_parts(data_dir, tokens, lm.vocab, lm.cfg.rhythm,
                                                          plain_requests=cfg.plain_requests, reader=lm.reader(),
                                                          hide=hide, written=lm.reading_ids, mix=drawn)
    sizes = {k: len(v) for k, v in parts.items()}
    if not any(sizes.get(k) for k in cfg.mix):
        raise ValueError(f"no training data for {cfg.stage} in {data_dir} with {tokens_path}")
    if cfg.heard_ctc_warmup and not (ckpt / "trainer.json").exists() and fresh_heard_encoder(lm):
        lm.model.to(acc.device)  # (a resumed run's checkpoint holds the warmed encoder; a later stage's is trained)
        warm_heard_encoder(lm, parts, cfg, acc.device)
    sharded = cfg.fsdp and acc.num_processes > 1  # FSDP over one process is the plain model
    lora = has_lora(lm.model)
    if sharded and lora:
        from aqaa.errors import AqaaInputError

        raise AqaaInputError("fsdp=true does not take LoRA adapters yet (lm.lora_rank): use DDP, the default")
    if sharded:
        shard_model(lm.model, cfg.mixed_precision)  # before the optimizer: it must hold the sharded parameters
    if acc.is_main_process:
        (folder / "config.json").write_text(json.dumps(asdict(cfg), indent=1))

    # (LoRA: the embedding's frozen base rows must not decay either; `aqaa.lm.lora.add_lora`)
    decay_it = lambda n, p: p.ndim >= 2 and not (lora and "embed_tokens" in n)  # noqa: E731
    decay = [p for n, p in lm.model.named_parameters() if decay_it(n, p)]
    no_decay = [p for n, p in lm.model.named_parameters() if not decay_it(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(cfg, s))
    metrics = Metrics(folder / "metrics.jsonl")
    step = 0
    if (ckpt / "trainer.json").exists():
        step = load_checkpoint(ckpt, lm.model, opt, sched)["step"]
        if acc.is_main_process:
            metrics.truncate_after(step)  # rows the killed run logged past its last checkpoint are replayed
    model, opt = (lm.model, opt) if sharded else acc.prepare(lm.model, opt)
    pad, rank, world = lm.vocab.ctrl["pad"], acc.process_index, acc.num_processes
    bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.stage} ({cfg.lm.name})", unit="step",
               disable=not acc.is_main_process)
    tok_count = 0
    while step < cfg.steps:
        mine = batch_plan(sizes, cfg.mix, cfg.batch, cfg.seed, step)[rank::world]  # this rank reads only its share
        batch = collate([parts[n][i] for n, i in mine], pad, cfg.max_len)
        if cfg.audio_noise:  # a pure function of (seed, step, rank), like the batch itself: resuming stays exact
            gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 64 + rank)
            batch["input_ids"] = noise_read_audio(batch["input_ids"], batch["labels"], lm.vocab, cfg.audio_noise, gen)
        batch["labels"] = mask_heard_labels(lm.model, batch["input_ids"], batch["labels"])
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        with acc.autocast():
            loss, logged = token_loss(model, batch, acc)
            ctc = heard_ctc_loss(lm.model, batch["input_ids"], lm.vocab.decode_text) if lm.cfg.heard_ctc else None
            if ctc is not None:
                loss = loss + lm.cfg.heard_ctc * ctc
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        gnorm = acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        gnorm = gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm  # a DTensor under FSDP
        opt.step()
        sched.step()
        step += 1
        tok_count += int(acc.reduce(batch["attention_mask"].sum(), "sum"))
        bar.update(1)
        bar.set_postfix(loss=f"{logged.item():.3f}")
        if acc.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps):
            metrics.log(step=step, loss=round(logged.item(), 6), lr=sched.get_last_lr()[0], grad_norm=float(gnorm),
                        tokens=tok_count, processes=world, elapsed_s=round(bar.format_dict["elapsed"], 1),
                        **({"ctc": round(float(ctc.detach()), 4)} if ctc is not None else {}))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint_on_main(acc, ckpt, model, opt, step, sched)
        if stop_after is not None and step >= stop_after:
            bar.close()
            return ckpt
    bar.close()
    acc.wait_for_everyone()
    plain = _gathered(model, lm) if sharded else acc.unwrap_model(model)
    if acc.is_main_process:
        lm.model = plain.eval()
        lm.save(final)
        (folder / "done.json").write_text(json.dumps({"steps": step, "processes": world}))
        plot_loss(metrics.rows(), folder / "loss.png", cfg.stage)
    acc.wait_for_everyone()
    return final


def _gathered(sharded_model: torch.nn.Module, lm: AudioLM) -> torch.nn.Module | None:
    """A plain CPU copy of an FSDP-sharded model on rank 0, None elsewhere (collective: every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from transformers import AutoModelForCausalLM

    state = get_model_state_dict(sharded_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return None
    plain = AutoModelForCausalLM.from_config(sharded_model.config)
    if lm.cfg.heard_encoder:
        from aqaa.lm.heard import attach

        attach(plain, lm.cfg.heard_encoder, lm.vocab.ctrl)
    plain.load_state_dict({k: v.float() for k, v in state.items()})
    return plain


def plot_loss(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set(xlabel="step", ylabel="train loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
