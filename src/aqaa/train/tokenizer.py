"""`aqaa train tokenizer`: fit the linguistic k-means and train the semantic FSQ codec on synthesized speech.

Stage 1 (linguistic) is saved on its own as soon as it is fitted; stage 2 (semantic) checkpoints every
`ckpt_every` steps and a killed run resumes from the last checkpoint. Under `torchrun` / `accelerate launch`, rank 0
fits the k-means (sklearn, one process) while the others wait, and the semantic codec trains with DDP: each rank
takes its share of the same global batch, so N processes train like one and checkpoints move between them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from aqaa.audio.measure import f0_track
from aqaa.tokenizer.features import log_mel
from aqaa.tokenizer.interleave import pad_to_groups
from aqaa.tokenizer.linguistic import whisper_features
from aqaa.tokenizer.model import PRESETS, DualTokenizer, TokenizerConfig
from aqaa.train.common import (Metrics, apply_overrides, load_checkpoint, save_checkpoint_on_main, save_tensors,
                               voiced_l1)


@dataclass
class TokenizerTrainConfig:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    steps: int = 3000
    batch: int = 16
    crop_frames: int = 240  # 2.4 s
    lr: float = 2e-3
    f0_weight: float = 1.0
    voicing_weight: float = 0.2
    rate_weight: float = 0.5  # local phone-rate target (codecs with a rate head): so the codes carry speaking rate
    # codebook-usage entropy loss (LFQ-style). Off: in every setting tried it used fewer codes, not more, and
    # reconstructed worse (scripts/exp_semantic_usage.py, reports/semantic_usage.json)
    entropy_weight: float = 0.0
    entropy_temperature: float = 0.25  # softness of the level assignment the entropy is computed on
    entropy_token_term: bool = True  # also make each token sure of its code (LFQ's per-sample term)
    ckpt_every: int = 250
    log_every: int = 25
    seed: int = 0
    stop_after: int = 0  # end this run after that step (0: run to `steps`); a later run resumes
    max_files: int = 0  # 0: all


def training_wavs(data_dir: Path, splits: tuple[str, ...] = ("train",)) -> list[Path]:
    """Every rendering of the given splits (queries, answers, control variants) plus the spoken sentences."""
    paths: list[str] = []
    for split in splits:
        for line in (data_dir / f"{split}.jsonl").read_text().splitlines():
            for turn in json.loads(line)["turns"]:
                paths += [turn[k]["audio"] for k in ("query", "answer", "neutral", "opposite") if k in turn]
    sentences = data_dir / "pretrain" / "sentences.jsonl"
    if sentences.exists():
        paths += [json.loads(x)["audio"] for x in sentences.read_text().splitlines() if json.loads(x)["split"] in splits]
    return [data_dir / p for p in sorted(set(paths))]


def _load(path: Path) -> np.ndarray:
    x, rate = sf.read(path, dtype="float32")
    if rate != 16_000:
        raise ValueError(f"{path}: expected 16 kHz, got {rate}")
    return x if x.ndim == 1 else x.mean(1)


def fit_linguistic(tok: DualTokenizer, wavs: list[Path], seed: int) -> dict:
    from sklearn.cluster import MiniBatchKMeans

    feats = [whisper_features(pad_to_groups(_load(p))) for p in tqdm(wavs, desc="whisper features")]
    x = np.concatenate(feats).astype(np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-5
    k = tok.cfg.linguistic.codes
    km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, max_iter=200, random_state=seed, compute_labels=True)
    km.fit((x - mean) / std)
    tok.linguistic.mean.copy_(torch.from_numpy(mean))
    tok.linguistic.std.copy_(torch.from_numpy(std))
    tok.linguistic.centroids.copy_(torch.from_numpy(km.cluster_centers_.astype(np.float32)))
    used = np.bincount(km.labels_, minlength=k)
    return {"vectors": len(x), "inertia_per_vector": float(km.inertia_ / len(x)), "train_dead": int((used == 0).sum())}


RATE_WINDOW = 9  # linguistic tokens (540 ms) over which the local phone rate is averaged


def local_rate(linguistic: np.ndarray, n_frames: int) -> np.ndarray:
    """How often the linguistic code changes, over the last 540 ms, per 10 ms mel frame, normalized to ~N(0, 1).

    The linguistic stream shows speaking rate by how fast its phone-like codes change; this is the rate head's
    target, meant to make the semantic codes carry rate too (measured: it did not, see SemanticConfig.rate_head)."""
    changes = np.concatenate([[0.0], (linguistic[1:] != linguistic[:-1]).astype(float)])
    trailing = np.convolve(changes, np.ones(RATE_WINDOW) / RATE_WINDOW)[: len(changes)]
    per_frame = np.repeat(trailing, 6)[:n_frames]  # one linguistic token = 6 mel frames
    return ((np.pad(per_frame, (0, n_frames - len(per_frame)), mode="edge") - 0.7) / 0.2).astype(np.float32)


def usage_entropy_loss(probs: list[torch.Tensor], world: int = 1, token_term: bool = True) -> torch.Tensor:
    """LFQ's entropy loss, for FSQ: mean per-token code entropy minus the entropy of the batch-mean code
    distribution, plus ln K so that 0 is best (every token sure of its code, the batch using all K codes evenly). A
    token's code distribution is the product of its soft per-dimension level assignments. Without the per-token
    term the codec raises the batch entropy by making every token ambiguous (measured: fewer codes used, not more).
    Over N processes the mean is the global batch's (a differentiable all-reduce), so DDP trains like 1 process."""
    token_entropy = sum(-(p * torch.log(p + 1e-9)).sum(-1).mean() for p in probs) if token_term else torch.zeros(())
    joint = probs[0].flatten(0, -2)
    for p in probs[1:]:
        joint = (joint[:, :, None] * p.flatten(0, -2)[:, None, :]).flatten(1)
    mean = joint.mean(0)
    if world > 1:
        from torch.distributed.nn.functional import all_reduce

        mean = all_reduce(mean) / world
        token_entropy = all_reduce(token_entropy) / world if token_term else token_entropy
    return math.log(mean.numel()) + (mean * torch.log(mean + 1e-9)).sum() + token_entropy


def semantic_batch(data: list, cfg: TokenizerTrainConfig, step: int) -> tuple[torch.Tensor, ...]:
    """(log-mel, F0, voicing) crops of the global batch of `step`: a pure function of (seed, step), so a resumed or
    multi-process run sees the same data."""
    rng = np.random.default_rng([cfg.seed, step])
    crop = cfg.crop_frames
    mels, frame_targets = [], []
    for i in rng.integers(0, len(data), cfg.batch):
        mel, *targets = data[i]  # targets: F0, voicing[, rate], one value per mel frame
        n = mel.shape[1]
        if n > crop:
            o = int(rng.integers(0, (n - crop) // 4 + 1)) * 4
            mel, targets = mel[:, o : o + crop], [t[o : o + crop] for t in targets]
        pad = crop - mel.shape[1]
        mels.append(F.pad(mel, (0, pad), value=math.log(1e-5)))
        frame_targets.append([F.pad(t, (0, pad)) for t in targets])
    return (torch.stack(mels), *(torch.stack(t) for t in zip(*frame_targets)))


def semantic_data(tok: DualTokenizer, wavs: list[Path], progress: bool = True) -> list[tuple[torch.Tensor, ...]]:
    """(log-mel, F0, voicing[, local rate]) per file: the semantic codec's inputs and targets."""
    rate = tok.semantic.cfg.rate_head
    data = []
    for p in tqdm(wavs, desc="mel + F0" + (" + rate" if rate else ""), disable=not progress):
        x = pad_to_groups(_load(p))
        mel = log_mel(x)
        targets = list(f0_track(x, mel.shape[1], centre_offset=-512))
        if rate:
            targets.append(local_rate(tok.linguistic.quantize(whisper_features(x)), mel.shape[1]))
        data.append((mel, *map(torch.from_numpy, targets)))
    return data


def train_semantic(tok: DualTokenizer, data: list, cfg: TokenizerTrainConfig, work: Path, metrics: Metrics,
                   acc) -> None:
    codec = tok.semantic.train()
    rate = codec.cfg.rate_head
    allmel = torch.cat([d[0] for d in data], 1)
    codec.mel_mean.copy_(allmel.mean(1, keepdim=True))
    codec.mel_std.copy_(allmel.std(1, keepdim=True) + 1e-3)
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    ckpt, start = work / "semantic_ckpt", 0
    if (ckpt / "trainer.json").exists():
        start = load_checkpoint(ckpt, codec, opt, sched)["step"]
        if acc.is_main_process:
            metrics.truncate_after(start - 1)  # rows logged past the checkpoint are replayed
            print(f"resuming semantic codec training at step {start}")
    if cfg.batch % acc.num_processes:
        raise ValueError(f"batch {cfg.batch} does not split over {acc.num_processes} processes")
    model, opt = acc.prepare(codec, opt)  # DDP under torchrun; a no-op in one process
    rank, world = acc.process_index, acc.num_processes
    bar = tqdm(range(start, cfg.steps), desc="semantic codec", initial=start, total=cfg.steps,
               disable=not acc.is_main_process)
    for step in bar:
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # VQ's k-means init and code restarts: resumes exactly
        mel, f0, v, *rate_target = (t[rank::world].to(acc.device) for t in semantic_batch(data, cfg, step))
        out, idx, latent, vq_loss = model(mel, with_latent=True)
        target = (mel - codec.mel_mean) / codec.mel_std
        mel_loss = F.l1_loss(out[:, :80], target)  # equal shares: DDP's gradient mean is the global mean
        f0_loss = voiced_l1(out[:, 80], f0, v, acc)
        v_loss = F.binary_cross_entropy_with_logits(out[:, 81], v)
        loss = mel_loss + cfg.f0_weight * f0_loss + cfg.voicing_weight * v_loss + vq_loss  # commitment (VQ only)
        rate_loss = F.l1_loss(out[:, 82], rate_target[0]) if rate else torch.zeros(())
        ent_loss = usage_entropy_loss(codec.level_probabilities(latent, cfg.entropy_temperature), world,
                                                  cfg.entropy_token_term) if cfg.entropy_weight else torch.zeros(())
        loss = loss + cfg.rate_weight * rate_loss + cfg.entropy_weight * ent_loss
        opt.zero_grad()
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            logged = [acc.reduce(x.detach().to(acc.device), "mean").item()
                      for x in (loss, mel_loss, f0_loss, v_loss, rate_loss, ent_loss)]
            used = int(torch.unique(idx).numel())
            bar.set_postfix(mel=f"{logged[1]:.3f}", f0=f"{logged[2]:.3f}", codes=used)
            if acc.is_main_process:
                metrics.log(stage="semantic", step=step, loss=logged[0], mel_l1=logged[1], f0_l1=logged[2],
                            voicing_bce=logged[3], rate_l1=logged[4], usage_entropy_gap=logged[5],
                            codes_in_batch=used, lr=sched.get_last_lr()[0], time=time.time(),
                            processes=world)
        if (step + 1) % cfg.ckpt_every == 0 or step == cfg.steps - 1:
            save_checkpoint_on_main(acc, ckpt, model, opt, step + 1, sched)
        if cfg.stop_after and step + 1 >= cfg.stop_after:
            raise StopTraining
    codec.eval()


class StopTraining(Exception):
    """`stop_after` reached: the run ends after its checkpoint, without a tokenizer folder (a later run resumes)."""


def train_tokenizer(data_dir: str | Path, out_dir: str | Path, preset: str = "default",
                    overrides: list[str] | None = None) -> Path:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cfg = TokenizerTrainConfig(tokenizer=TokenizerConfig.from_dict(asdict(PRESETS[preset])))
    if preset == "tiny":
        cfg.steps, cfg.ckpt_every, cfg.batch = 30, 10, 4
    apply_overrides(cfg, overrides or [])
    if cfg.entropy_weight and cfg.tokenizer.semantic.quantizer != "fsq":
        raise ValueError("entropy_weight is the FSQ level-usage loss; the VQ codebook restarts dead codes instead "
                         "(set semantic.quantizer=fsq or entropy_weight=0)")
    torch.manual_seed(cfg.seed)
    work = out_dir.with_name(out_dir.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    (work / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    metrics = Metrics(work / "metrics.jsonl")
    wavs = training_wavs(data_dir)
    if cfg.max_files:
        wavs = wavs[: cfg.max_files]
    if not wavs:
        raise ValueError(f"{data_dir}: no training audio found (run `aqaa data synth` first)")
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available())
    tok = DualTokenizer(cfg.tokenizer)
    lin_file = work / "linguistic.safetensors"
    if not lin_file.exists() and acc.is_main_process:
        info = fit_linguistic(tok, wavs, cfg.seed)
        metrics.log(stage="linguistic", **info)
        save_tensors(tok.linguistic.state_dict(), lin_file)
    acc.wait_for_everyone()
    tok.linguistic.load_state_dict(load_file(lin_file))
    try:
        train_semantic(tok, semantic_data(tok, wavs, acc.is_main_process), cfg, work, metrics, acc)
    except StopTraining:
        return work / "semantic_ckpt"
    if acc.is_main_process:
        tok.save(out_dir)
    acc.wait_for_everyone()
    return out_dir
