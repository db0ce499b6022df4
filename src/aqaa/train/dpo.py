"""`aqaa train dpo`: preference pairs built from the generator (and optionally the model's own samples), trained
with TRL's DPOTrainer on token ids.

Pairs (prompt = the user's audio turn): chosen is the reference answer (right content, the asked-for style, audio
that says the text). Rejected is one of
  - wrong content: another question's answer (text and audio);
  - ignored control instruction: the right text with the *neutral* rendering's audio (speech-control items);
  - audio that does not say the text: the right text with another answer's audio;
  - the model's own sample whose text channel misses the accepted answer (`self_samples` > 0).
TRL tokenizes string prompts; ours are already ids (audio tokens have no text form worth round-tripping), so
`TokenDPOTrainer` hands TRL the ids as they are and keeps everything else of DPOTrainer (loss, reference model,
collator, checkpoints; Trainer reloads its checkpoints with `weights_only=True`).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from aqaa.data.tokens import load_tokens
from aqaa.lm.format import answer_ids, prompt
from aqaa.lm.model import AudioLM
from aqaa.train.common import apply_overrides
from aqaa.train.lm import _items

REJECT_KINDS = ("wrong_content", "ignored_control", "audio_mismatch", "own_sample")


@dataclass
class DPOSettings:
    steps: int = 300
    batch: int = 4
    grad_accum: int = 2
    lr: float = 5e-6
    beta: float = 0.1
    max_length: int = 1024
    save_every: int = 50
    log_every: int = 10
    seed: int = 0
    self_samples: int = 0  # model samples to judge and add as rejected answers
    kinds: tuple = REJECT_KINDS
    # "auto": bf16 autocast where the hardware computes in bf16 (GPUs, CPUs with AVX512-BF16 / AMX: 1.6x faster
    # than fp32 on this project's 2-core machine), fp32 elsewhere; TRL's own default is bf16 everywhere, which a
    # CPU without bf16 units only emulates
    mixed_precision: str = "auto"


def dpo_precision(setting: str) -> str:
    """"bf16", "fp16" or "no" for a `DPOSettings.mixed_precision` setting ("auto" asks the hardware)."""
    import torch

    if setting != "auto":
        if setting not in ("bf16", "fp16", "no"):
            raise ValueError(f"mixed_precision must be auto, bf16, fp16 or no, not {setting!r}")
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"


def build_pairs(data_dir: Path, tokens: dict, lm: AudioLM, split: str = "train", seed: int = 0,
                kinds=REJECT_KINDS) -> list[dict]:
    """Well-formed pairs: `prompt_ids` ends with `<|assistant|>`; chosen and rejected are whole answer turns."""
    v, rhythm = lm.vocab, lm.cfg.rhythm
    rng = random.Random(seed)

    def audio(rel):
        row = tokens[rel]
        return v.audio_group_ids(row["linguistic"], row["semantic"])

    turns = []
    for item in _items(data_dir, split):
        for i, turn in enumerate(item["turns"]):
            if item["category"] == "multi_turn" and i == len(item["turns"]) - 1:
                continue  # needs its context: left to SFT
            q, a = turn["query"], turn["answer"]
            if q["audio"] in tokens and a["audio"] in tokens:
                turns.append((item, turn))
    pairs, reader = [], lm.reader()
    for item, turn in turns:
        q, a = turn["query"], turn["answer"]
        p = prompt(v, [], audio(q["audio"]), reader)
        text, a_audio, heard = v.encode_text(a["text"]), audio(a["audio"]), v.encode_text(q["text"])
        chosen = answer_ids(v, text, a_audio, rhythm, heard)
        other_item, other = rng.choice(turns)
        while other["answer"]["text"] == a["text"] and len(turns) > 1:
            other_item, other = rng.choice(turns)
        o_text, o_audio = v.encode_text(other["answer"]["text"]), audio(other["answer"]["audio"])
        if "wrong_content" in kinds:
            pairs.append({"prompt_ids": p, "chosen_ids": chosen,
                          "rejected_ids": answer_ids(v, o_text, o_audio, rhythm, heard),
                          "kind": "wrong_content", "id": item["id"]})
        if "ignored_control" in kinds and turn.get("control") and turn.get("neutral", {}).get("audio") in tokens:
            pairs.append({"prompt_ids": p, "chosen_ids": chosen,
                          "rejected_ids": answer_ids(v, text, audio(turn["neutral"]["audio"]), rhythm, heard),
                          "kind": "ignored_control", "id": item["id"]})
        if "audio_mismatch" in kinds:
            pairs.append({"prompt_ids": p, "chosen_ids": chosen,
                          "rejected_ids": answer_ids(v, text, o_audio, rhythm, heard),
                          "kind": "audio_mismatch", "id": item["id"]})
    return pairs


def own_sample_pairs(lm: AudioLM, data_dir: Path, tokens: dict, n: int, seed: int = 0) -> list[dict]:
    """The model answers n training queries; answers the eval's judge calls wrong become rejected."""
    from aqaa.eval.judge import judge_answer
    from aqaa.lm.generate import Generator, Sampling

    v, rhythm = lm.vocab, lm.cfg.rhythm
    gen = Generator(lm, Sampling(text_temperature=1.0, audio_temperature=0.8, max_groups=60, seed=seed))
    items = [it for it in _items(data_dir, "train") if it["category"] != "multi_turn"]
    random.Random(seed).shuffle(items)
    pairs = []
    for item in items[:n]:
        turn = item["turns"][-1]
        if turn["query"]["audio"] not in tokens or turn["answer"]["audio"] not in tokens:
            continue
        q = tokens[turn["query"]["audio"]]
        p = prompt(v, [], v.audio_group_ids(q["linguistic"], q["semantic"]), lm.reader())
        state = gen.feed(gen.new_state(), p)
        text_ids = [e.ids[0] for e in gen.answer(state) if e.kind == "text"]
        said = v.decode_text(text_ids)
        if item["answer"] and not judge_answer(item, said, said)["answer_correct"]:
            a = tokens[turn["answer"]["audio"]]
            chosen = answer_ids(v, v.encode_text(turn["answer"]["text"]),
                                v.audio_group_ids(a["linguistic"], a["semantic"]), rhythm,
                                v.encode_text(turn["query"]["text"]))
            pairs.append({"prompt_ids": p, "chosen_ids": chosen, "rejected_ids": list(state.answer),
                          "kind": "own_sample", "id": item["id"]})
    return pairs


def train_dpo(sft_model: str | Path, data_dir: str | Path, tokens_path: str | Path, out: str | Path,
              overrides: list[str] | None = None) -> Path:
    """DPO from the SFT model; resumes from the Trainer's last checkpoint; writes OUT/model."""
    import torch
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOConfig, DPOTrainer

    class TokenDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # already prompt_ids / chosen_ids / rejected_ids

    cfg = apply_overrides(DPOSettings(), overrides or [])
    data_dir, out = Path(data_dir), Path(out)
    final = out / "model"
    if (out / "done.json").exists() and (final / "aqaa_lm.json").exists():
        return final
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1, default=list))
    lm = AudioLM.load(sft_model)
    tokens = load_tokens(tokens_path, data_dir)
    pairs = build_pairs(data_dir, tokens, lm, "train", cfg.seed, cfg.kinds)
    if cfg.self_samples:
        lm.model.eval()
        pairs += own_sample_pairs(lm, data_dir, tokens, cfg.self_samples, cfg.seed)
    val = build_pairs(data_dir, tokens, lm, "valid", cfg.seed, cfg.kinds)
    counts = {k: sum(p["kind"] == k for p in pairs) for k in REJECT_KINDS}
    (out / "pairs.json").write_text(json.dumps({"train": counts, "valid": len(val)}))
    keep = ("prompt_ids", "chosen_ids", "rejected_ids")
    train_ds = Dataset.from_list([{k: p[k] for k in keep} for p in pairs]).shuffle(seed=cfg.seed)
    val_ds = Dataset.from_list([{k: p[k] for k in keep} for p in val]) if val else None
    lm.model.train()
    precision = dpo_precision(cfg.mixed_precision)
    args = DPOConfig(
        output_dir=str(out / "trainer"), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, beta=cfg.beta, max_length=cfg.max_length,
        logging_steps=cfg.log_every, save_steps=cfg.save_every, save_total_limit=2, report_to=[], seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), remove_unused_columns=False, lr_scheduler_type="cosine",
        warmup_steps=min(20, cfg.steps // 10), eval_strategy="steps" if val_ds is not None else "no",
        eval_steps=max(10, cfg.steps // 5), per_device_eval_batch_size=cfg.batch, save_only_model=False,
        disable_tqdm=False, bf16=precision == "bf16", fp16=precision == "fp16",
    )
    trainer = TokenDPOTrainer(model=lm.model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                              processing_class=lm.vocab.hf)
    last = get_last_checkpoint(str(out / "trainer")) if (out / "trainer").is_dir() else None
    trainer.train(resume_from_checkpoint=last)  # DDP under torchrun / accelerate launch (the Trainer's accelerate)
    if trainer.is_world_process_zero():
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trainer.state.log_history))
        lm.model = trainer.accelerator.unwrap_model(trainer.model).eval()
        lm.save(final)
        (out / "done.json").write_text(json.dumps({"steps": cfg.steps, "pairs": counts, "precision": precision,
                                                   "processes": trainer.accelerator.num_processes}))
    trainer.accelerator.wait_for_everyone()
    return final
