"""Small pieces every training recipe shares: metrics JSONL, atomic checkpoints, key=value overrides."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def apply_overrides(cfg, overrides: list[str]):
    """`key=value` (dotted keys reach nested dataclasses), values parsed as JSON when they parse."""
    for item in overrides:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        obj = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            obj = getattr(obj, p)
        if not dataclasses.is_dataclass(obj) or parts[-1] not in {f.name for f in dataclasses.fields(obj)}:
            from aqaa.errors import AqaaInputError

            raise AqaaInputError(f"unknown setting {key!r}")
        setattr(obj, parts[-1], value)
    return cfg


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors, written to a temp file and renamed: a killed writer never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():  # tied weights share storage, which safetensors refuses: copy the second one
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.detach().clone().contiguous() if ptr in seen else v.detach().contiguous()
        seen.add(ptr)
    save_file(out, tmp)
    os.replace(tmp, path)


class Metrics:
    """Append-only JSONL; a resumed run keeps appending to the same file."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **row) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` (what a killed run logged after its last checkpoint; the resume replays them)."""
        keep = [r for r in self.rows() if r.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)

    def rows(self) -> list[dict]:
        return [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.exists() else []


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Whole (unsharded) model and optimizer state, optimizer keyed by parameter name, on the CPU. Collective when
    the model is FSDP-sharded (every rank must call it); one format whatever the process count, which is what lets
    a checkpoint saved by N processes resume in 1 and back."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    scheduler=None, extra: dict | None = None, state: tuple[dict, dict] | None = None,
                    companion_state: tuple[dict, dict] | None = None) -> None:
    """Model as safetensors, optimizer/scheduler/torch RNG as a weights-only torch file; the folder is swapped
    atomically. Recipes draw batches from an RNG seeded by (seed, step), so the data position is the step.
    `state`: (model, optimizer) state already gathered by `full_state` (FSDP). `companion_state`: the same for a
    second network trained beside the model (a GAN's discriminator), kept in the same folder so both resume at
    the same step."""
    from aqaa.paths import atomic_dir

    model_state, optim_state = state or full_state(model, optimizer)
    with atomic_dir(folder) as tmp:
        save_tensors(model_state, tmp / "model.safetensors")
        if companion_state is not None:
            save_tensors(companion_state[0], tmp / "companion.safetensors")
        torch.save({
            "optimizer": optim_state,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            **({"companion_optimizer": companion_state[1]} if companion_state is not None else {}),
        }, tmp / "state.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **(extra or {})}))


def save_checkpoint_on_main(acc, folder: Path, model, optimizer, step: int, scheduler=None,
                            companion: tuple | None = None) -> None:
    """Under accelerate (one or N processes, DDP or FSDP): every rank gathers the whole state (a collective under
    FSDP), rank 0 writes it, every rank waits; the checkpoint resumes in any number of processes. `companion`:
    (model, optimizer) of a second network saved in the same folder (see `save_checkpoint`)."""
    acc.wait_for_everyone()
    model, optimizer = acc.unwrap_model(model), getattr(optimizer, "optimizer", optimizer)
    state = full_state(model, optimizer)
    side = None
    if companion is not None:
        side = full_state(acc.unwrap_model(companion[0]), getattr(companion[1], "optimizer", companion[1]))
    if acc.is_main_process:
        save_checkpoint(folder, model, optimizer, step, scheduler, state=state, companion_state=side)
    acc.wait_for_everyone()


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None,
                    companion: tuple | None = None) -> dict:
    """Load a checkpoint into a plain or FSDP-sharded model (each rank reads the whole file and keeps its shard);
    `companion` (model, optimizer) gets the second network that `save_checkpoint` kept beside it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, load_file(folder / "model.safetensors"), options=opts)
    state = torch.load(folder / "state.pt", weights_only=True)
    if all(isinstance(k, int) for k in state["optimizer"]["state"]):  # checkpoints before full_state: by index
        optimizer.load_state_dict(state["optimizer"])
    else:
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=opts)
    if companion is not None:
        if not (folder / "companion.safetensors").exists():
            raise ValueError(f"{folder}: this checkpoint has no companion network (it was saved by another config)")
        set_model_state_dict(companion[0], load_file(folder / "companion.safetensors"), options=opts)
        set_optimizer_state_dict(companion[0], companion[1], state["companion_optimizer"], options=opts)
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return json.loads((folder / "trainer.json").read_text())


def shard_model(model: torch.nn.Module, mixed_precision: str = "no") -> torch.nn.Module:
    """FSDP2 (`torch.distributed.fsdp.fully_shard`): each decoder layer, then the whole model, sharded over all
    ranks (gloo on CPU, NCCL on GPU). Accelerate's own FSDP path refuses CPU processes, so aqaa calls torch's
    engine directly: the same code trains under torchrun on 2 CPU processes (the test) and on 8 GPUs."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if mixed_precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model



def voiced_l1(pred: torch.Tensor, target: torch.Tensor, voiced: torch.Tensor, acc) -> torch.Tensor:
    """L1 over the voiced frames of the *global* batch (this rank's sum over all ranks' voiced count, times the world
    size): DDP's gradient mean then equals one process's, which a per-rank mean would not."""
    count = acc.reduce(voiced.sum().detach(), "sum").clamp(min=1.0)
    return ((pred - target).abs() * voiced).sum() * acc.num_processes / count
