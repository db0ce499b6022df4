"""Low-rank training of a pretrained backbone, saved as a small delta over the weights every install has.

The `smollm2` preset's weights are 270 MB in fp16: over what the package may ship (100 MB) and what a lent GPU call
returns (64 MiB). With `lora_rank` set, the decoder's linear layers train as LoRA adapters (PEFT), the audio and
control rows of the embedding (tied to the output head) train in full, the original text rows and every other base
weight stay frozen, and a model folder holds only `lora_delta.safetensors` (fp16: 5.9 MB of new rows + 0.6 MB per
adapter rank, 25 MB at rank 32): loading rebuilds the base from the bundled package and adds the delta. Inference
merges the adapters into the weights (`merge_lora`), so decoding runs the plain Llama path at the plain model's speed.
"""

from __future__ import annotations

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DELTA_FILE = "lora_delta.safetensors"
ROWS_KEY = "embed_rows"  # the embedding rows past the base vocabulary (audio + control tokens)


def add_lora(model: torch.nn.Module, rank: int, alpha: float, base_rows: int) -> torch.nn.Module:
    """Inject trainable adapters and freeze the base: only adapters, norms and the embedding rows from `base_rows` on
    train (a gradient hook zeroes the base rows' gradient; keep the embedding out of weight decay, which would
    shrink them anyway)."""
    from peft import LoraConfig, inject_adapter_in_model

    model = inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, target_modules=TARGETS, lora_dropout=0.0), model)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or "norm" in name or ".encoder." in name
    emb = model.get_input_embeddings().weight
    emb.requires_grad = True
    keep = torch.ones(emb.shape[0], 1)
    keep[:base_rows] = 0
    emb.register_hook(lambda grad: grad * keep.to(grad.device, grad.dtype))
    return model


def has_lora(model: torch.nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_parameters())


def in_delta(key: str) -> bool:
    """Whether a state-dict entry is one the delta carries: adapters and norms (the heard encoder is saved apart)."""
    return ("lora_" in key or "norm" in key) and ".encoder." not in key


def delta_state(model: torch.nn.Module, base_rows: int) -> dict[str, torch.Tensor]:
    """What differs from the base: `in_delta` entries and the new embedding rows, in float16 (their values are
    small; merged logits move by ~1e-3)."""
    state = {k: v for k, v in model.state_dict().items() if in_delta(k)}
    state[ROWS_KEY] = model.get_input_embeddings().weight[base_rows:]
    return {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}  # fp16: half the size


@torch.no_grad()
def load_delta(model: torch.nn.Module, delta: dict[str, torch.Tensor], base_rows: int) -> None:
    """Put a saved delta into a base model that has the same adapters injected (strict about names and shapes)."""
    rows = delta.pop(ROWS_KEY)
    emb = model.get_input_embeddings().weight
    if rows.shape != emb[base_rows:].shape:
        raise ValueError(f"delta has {rows.shape[0]} new embedding rows, the model {emb.shape[0] - base_rows}")
    emb[base_rows:] = rows.to(emb.dtype)
    state = model.state_dict()
    wrong = sorted(k for k in delta if k not in state or state[k].shape != delta[k].shape)
    missing = sorted(k for k in state if in_delta(k) and k not in delta)
    if wrong or missing:
        raise ValueError(f"delta does not fit the model: unexpected {wrong[:3]}, missing {missing[:3]}")
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in delta.items()}, strict=False)


@torch.no_grad()
def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every adapter into its base weight and put the plain `nn.Linear` back in its place."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "base_layer") and hasattr(module, "merge"):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.get_base_layer())
    for p in model.parameters():
        p.requires_grad = True
    return model
