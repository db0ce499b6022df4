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


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    scheduler=None, extra: dict | None = None) -> None:
    """Model as safetensors, optimizer/scheduler/torch RNG as a weights-only torch file; the folder is swapped
    atomically. Recipes draw batches from an RNG seeded by (seed, step), so the data position is the step."""
    from aqaa.paths import atomic_dir

    with atomic_dir(folder) as tmp:
        save_tensors(model.state_dict(), tmp / "model.safetensors")
        torch.save({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
        }, tmp / "state.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **(extra or {})}))


def save_checkpoint_on_main(acc, folder: Path, model, optimizer, step: int, scheduler=None) -> None:
    """Under accelerate (one or N processes): rank 0 writes the plain model + optimizer, every rank waits, so the
    checkpoint resumes in any number of processes."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        save_checkpoint(folder, acc.unwrap_model(model), getattr(optimizer, "optimizer", optimizer), step, scheduler)
    acc.wait_for_everyone()


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None) -> dict:
    model.load_state_dict(load_file(folder / "model.safetensors"))
    state = torch.load(folder / "state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return json.loads((folder / "trainer.json").read_text())
