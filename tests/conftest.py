from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """A real spoken sentence (Piper joe, 16 kHz), ~2 s."""
    from aqaa.data.voices import Style, synthesize

    return synthesize("joe", "What is the capital of Japan?", Style())


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> dict:
    """A real miniature pipeline input: 6 synthesized SpokenQA dialogues + 4 sentences, a tiny tokenizer trained
    on them (12 steps) and every wav encoded to tokens. Shared by the tokenizer, LM and vocoder tests."""
    from aqaa.data.synth import synth
    from aqaa.data.tokens import encode_corpus
    from aqaa.train.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    synth(root / "data", 6, seed=5, sentences=4, text_lines=40, workers=2, progress=False)
    tok = train_tokenizer(root / "data", root / "tok", "tiny", ["steps=12"])
    tokens = encode_corpus(root / "data", tok, root / "tokens")
    return {"root": root, "data": root / "data", "tokenizer": tok, "tokens": tokens}


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus, tmp_path_factory):
    """A whole aqaa model folder from tiny, barely trained parts: real mechanics, meaningless answers."""
    from aqaa.lm.generate import Sampling
    from aqaa.serve.engine import assemble_model
    from aqaa.train.lm import stage_config, train_stage
    from aqaa.train.vocoder import train_vocoder

    root = tmp_path_factory.mktemp("model")
    lm = train_stage(stage_config("stage1", "tiny", ["steps=3", "batch=2"]), tiny_corpus["data"],
                     tiny_corpus["tokens"], root / "lm")
    voc = train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], root / "voc", "tiny", ["steps=2", "batch=2"])
    return assemble_model(root / "model", tiny_corpus["tokenizer"], lm, voc,
                          Sampling(max_groups=10, max_text_tokens=6, audio_temperature=1.0))
