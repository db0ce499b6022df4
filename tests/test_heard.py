"""The heard-audio encoder (`aqaa.lm.heard`): it finds the blocks the model hears (user turns, ASR inputs) and only
those, reads them both ways, starts as a no-op, survives save/load beside a plain transformers file, gives the lean
decoder the training forward's logits, masks its own positions from the loss, and trains through the stages, DPO
and merging."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aqaa.lm.decode import HFDecoder, LlamaDecoder
from aqaa.lm.format import audio_block, document, user_turn
from aqaa.lm.heard import ENCODER_FILE, heard_ctc_loss, heard_embedding, heard_spans, mask_heard_labels
from aqaa.lm.model import PRESETS, AudioLM

LINES = ["What is the capital of Japan?", "The capital of Japan is Tokyo.", "Seven plus five is twelve."] * 5


def tiny(encoder: int = 0) -> AudioLM:
    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=encoder), LINES, seed=3)
    lm.model.eval()
    return lm


def audio(lm: AudioLM, groups: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return lm.vocab.audio_group_ids(torch.randint(0, 1024, (2 * groups,), generator=g).tolist(),
                                    torch.randint(0, 4096, (3 * groups,), generator=g).tolist())


def conversation(lm: AudioLM) -> tuple[list[int], tuple[int, int], tuple[int, int]]:
    """<bos> user turn <assistant> spoken block: ids, the heard span, the spoken span."""
    c = lm.vocab.ctrl
    heard, spoken = audio(lm, 3, 0), audio(lm, 2, 1)
    ids = [c["bos"], *user_turn(lm.vocab, heard), c["assistant"], *audio_block(lm.vocab, spoken)]
    lo = ids.index(c["audio_start"]) + 1
    lo2 = len(ids) - len(spoken) - 1
    return ids, (lo, lo + len(heard)), (lo2, lo2 + len(spoken))


def perturb(lm: AudioLM) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        heard_embedding(lm.model).encoder.out.weight.normal_(0, 0.5)


def test_finds_heard_blocks_only():
    lm = tiny()
    c, v = lm.vocab.ctrl, lm.vocab
    ids, heard, spoken = conversation(lm)
    markers = (c["user"], c["audio_start"], c["audio_end"], c["asr"])
    assert heard_spans(ids, *markers) == [heard]  # the assistant's spoken block is not heard
    asr = document(v, "asr", v.encode_text("hello"), audio(lm, 2, 2)).ids
    tts = document(v, "tts", v.encode_text("hello"), audio(lm, 2, 3)).ids
    assert heard_spans(asr, *markers) == [(2, 2 + 10)] and heard_spans(tts, *markers) == []
    assert heard_spans(ids[: heard[1]], *markers) == []  # a block not closed yet is not read


def test_starts_as_a_no_op_and_reads_the_heard_block_both_ways():
    plain, lm = tiny(), tiny(encoder=16)
    ids, (lo, hi), (slo, shi) = conversation(lm)
    x = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(x).logits, plain.model(x).logits)  # zero-initialised output
        perturb(lm)
        emb = lm.model.get_input_embeddings()
        later = x.clone()
        later[0, hi - 1] = ids[hi - 2]  # change the heard block's last token
        moved = (emb(later) - emb(x)).abs().sum(-1)[0]
        assert moved[lo] > 0  # ... and its first position moves: read backwards too
        assert moved[:lo].sum() == 0 and moved[hi:].sum() == 0
        spoken = x.clone()
        spoken[0, shi - 1] = ids[shi - 2]  # a spoken block stays plain and causal
        assert (emb(spoken) - emb(x)).abs().sum(-1)[0, : shi - 1].sum() == 0


def test_linguistic_residual_leaves_the_semantic_tokens_as_they_are(tmp_path):
    """heard_residual=linguistic: the encoder reads both streams but changes only the linguistic positions, so the
    semantic tokens (level, pitch, rate) reach the LM untouched; a later stage can switch it on a saved model."""
    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_residual="linguistic"), LINES,
                        seed=3)
    lm.model.eval()
    perturb(lm)
    ids, (lo, hi), _ = conversation(lm)
    x = torch.tensor([ids])
    emb = lm.model.get_input_embeddings()
    with torch.no_grad():
        moved = (emb(x) - torch.nn.Embedding.forward(emb, x)).abs().sum(-1)[0]
    l_lo, l_hi = lm.vocab.l_range
    is_l = torch.tensor([l_lo <= i < l_hi for i in ids])
    assert (moved[lo:hi] > 0).tolist() == is_l[lo:hi].tolist()  # L L S S S: only the Ls move
    assert moved[:lo].sum() == 0 and moved[hi:].sum() == 0
    with torch.no_grad():  # the semantic positions still inform the linguistic ones (the GRU reads both)
        later = x.clone()
        s_pos = next(i for i in range(lo, hi) if not is_l[i])
        later[0, s_pos] = lm.vocab.s_id(7) if ids[s_pos] != lm.vocab.s_id(7) else lm.vocab.s_id(8)
        assert (emb(later) - emb(x)).abs().sum(-1)[0, lo:hi][is_l[lo:hi]].sum() > 0
    back = AudioLM.load(lm.save(tmp_path / "m"))
    back.model.eval()
    assert back.cfg.heard_residual == "linguistic"
    with torch.no_grad():
        torch.testing.assert_close(back.model(x).logits, lm.model(x).logits)
    lm.cfg.heard_residual = "all"
    lm.with_heard_encoder(16)
    with torch.no_grad():
        assert ((emb(x) - torch.nn.Embedding.forward(emb, x)).abs().sum(-1)[0, lo:hi] > 0).all()


def test_every_encoder_parameter_gets_a_gradient_even_without_heard_audio():
    """DDP expects a gradient for every parameter every step: a batch with nothing heard still reaches the encoder."""
    lm = tiny(encoder=16)
    lm.model.train()
    v = lm.vocab
    tts = document(v, "tts", v.encode_text("hello"), audio(lm, 2, 3)).ids
    lm.model(input_ids=torch.tensor([tts]), labels=torch.tensor([tts])).loss.backward()
    assert all(p.grad is not None for p in heard_embedding(lm.model).encoder.parameters())


def test_saves_beside_a_plain_llama_and_loads_back(tmp_path):
    from safetensors.torch import load_file

    lm = tiny(encoder=16)
    perturb(lm)
    lm.save(tmp_path / "m")
    assert (tmp_path / "m" / ENCODER_FILE).exists()
    assert not any(".encoder." in k for k in load_file(tmp_path / "m" / "model.safetensors"))
    back = AudioLM.load(tmp_path / "m")
    assert back.cfg.heard_encoder == 16
    assert back.model.lm_head.weight is back.model.get_input_embeddings().weight  # still tied
    x = torch.tensor([conversation(lm)[0]])
    with torch.no_grad():
        torch.testing.assert_close(back.model(x).logits, lm.model(x).logits)


def test_lean_decoder_matches_the_training_forward():
    lm = tiny(encoder=16)
    perturb(lm)
    ids, _, _ = conversation(lm)
    cut = ids.index(lm.vocab.ctrl["assistant"]) + 1
    lean, hf = LlamaDecoder(lm.model), HFDecoder(lm.model)
    c1, c2 = lean.new_cache(), hf.new_cache()
    torch.testing.assert_close(lean.forward(ids[:cut], c1), hf.forward(ids[:cut], c2), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        full = lm.model(torch.tensor([ids])).logits[0]
    for i in range(cut, len(ids)):  # the answer, token by token, as generation feeds it
        torch.testing.assert_close(lean.forward([ids[i]], c1), full[i], atol=1e-4, rtol=1e-4)


def test_encoded_positions_carry_no_loss():
    lm = tiny(encoder=16)
    ids, (lo, hi), _ = conversation(lm)
    labels = torch.tensor([ids])
    masked = mask_heard_labels(lm.model, labels, labels)
    assert (masked[0, lo:hi] == -100).all() and (masked[0, :lo] == labels[0, :lo]).all()
    assert (masked[0, hi:] == labels[0, hi:]).all()
    assert mask_heard_labels(tiny().model, labels, labels) is labels


def test_ctc_head_reads_asr_transcripts_only():
    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_ctc=1.0), LINES, seed=3)
    v = lm.vocab
    asr = document(v, "asr", v.encode_text("Tokyo is big"), audio(lm, 4, 2)).ids
    tts = document(v, "tts", v.encode_text("Tokyo is big"), audio(lm, 4, 3)).ids
    n = max(len(asr), len(tts))
    pad = lambda ids: ids + [v.ctrl["pad"]] * (n - len(ids))  # noqa: E731
    loss = heard_ctc_loss(lm.model, torch.tensor([pad(asr), pad(tts)]), v.decode_text)
    loss.backward()
    enc = heard_embedding(lm.model).encoder
    assert loss.item() > 1.0 and enc.chars.weight.grad.abs().sum() > 0 and enc.gru.weight_ih_l0.grad.abs().sum() > 0
    none = heard_ctc_loss(lm.model, torch.tensor([tts]), v.decode_text)  # nothing to read: zero, still a graph
    assert none.item() == 0.0 and none.requires_grad
    assert heard_ctc_loss(tiny(encoder=16).model, torch.tensor([asr]), v.decode_text) is None  # no CTC head


def test_trains_through_stages_dpo_and_merge(tiny_corpus, tmp_path):
    """A later stage adds the encoder to a stage-1 model, trains it (its output layer leaves zero), and DPO and the
    merge carry it along."""
    from aqaa.train.dpo import train_dpo
    from aqaa.train.lm import stage_config, train_stage
    from aqaa.train.merge import merge_and_select

    args = (tiny_corpus["data"], tiny_corpus["tokens"], tmp_path)
    base = train_stage(stage_config("stage1", "tiny", ["steps=2", "batch=2"]), *args)
    sft = train_stage(stage_config("stage2", "tiny", ["steps=4", "batch=2", "lr=1e-2", "lm.heard_encoder=8",
                                                   "lm.heard_ctc=0.5", "heard_ctc_warmup=3", 'mix={"asr": 1.0}']),
                      *args)
    lm = AudioLM.load(sft)
    assert lm.cfg.heard_encoder == 8 and heard_embedding(lm.model).encoder.out.weight.abs().sum() > 0
    assert heard_embedding(lm.model).encoder.chars is not None
    assert "ctc" in (tmp_path / "stage2" / "metrics.jsonl").read_text().splitlines()[-1]
    try:
        dpo = train_dpo(sft, tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "dpo",
                        ["steps=2", "batch=2", "grad_accum=1", "save_every=2", "log_every=1"])
    finally:  # TRL leaves a process-wide accelerate state (its own precision) that later stages in this process reject
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(True)
    assert (dpo / ENCODER_FILE).exists()
    merged = merge_and_select(sft, dpo, base, tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "merge", limit=2)
    out = AudioLM.load(merged)
    assert out.cfg.heard_encoder == 8 and (merged / ENCODER_FILE).exists()


def test_ctc_warm_up_trains_the_encoder_alone(tiny_corpus):
    from aqaa.data.tokens import load_tokens
    from aqaa.train.lm import build_parts, collate, stage_config, warm_heard_encoder

    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_ctc=1.0), LINES, seed=3)
    parts = build_parts(tiny_corpus["data"], load_tokens(tiny_corpus["tokens"], tiny_corpus["data"]), lm.vocab,
                        lm.cfg.rhythm)
    ids = collate(parts["asr"][:4], lm.vocab.ctrl["pad"], 768)["input_ids"]
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    with torch.no_grad():
        start = heard_ctc_loss(lm.model, ids, lm.vocab.decode_text).item()
    warm_heard_encoder(lm, parts, stage_config("stage1", "tiny", ["heard_ctc_warmup=30", "batch=4"]), "cpu")
    with torch.no_grad():
        assert heard_ctc_loss(lm.model, ids, lm.vocab.decode_text).item() < start
    after = lm.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".encoder.gru." in k or ".encoder.chars." in k for k in changed)


def test_a_reading_follows_the_query_audio_as_input_only():
    """`heard_reading`: the user turn carries the encoder's reading after its audio (no loss), the encoder still
    hears the block, and the CTC head does not train on the model's own reading."""
    from aqaa.lm.format import dialogue, read_once

    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_ctc=1.0, heard_reading=True),
                        LINES, seed=3)
    v, c = lm.vocab, lm.vocab.ctrl
    q, a_text, a_audio = audio(lm, 3, 0), v.encode_text("Tokyo is big"), audio(lm, 2, 1)
    calls = []
    fake = v.encode_text("tokyo")
    reader = read_once(lambda ids: calls.append(ids) or fake)
    seq = dialogue(v, [(q, a_text, a_audio), (q, a_text, a_audio)], lm.cfg.rhythm, reader=reader)
    end = seq.ids.index(c["audio_end"])
    assert seq.ids[end + 1: end + 4 + len(fake)] == [c["asr"], *fake, c["end_turn"], c["assistant"]]
    assert not any(seq.loss[: end + 4 + len(fake)]) and len(calls) == 1  # input only; read once
    assert heard_spans(seq.ids, *heard_embedding(lm.model).markers)[0] == (seq.ids.index(c["audio_start"]) + 1, end)
    ctc = heard_ctc_loss(lm.model, torch.tensor([seq.ids]), v.decode_text)
    assert ctc.item() == 0.0  # a user turn's reading is no transcript to learn from
    read = lm.reader()(q)  # the real reader: the encoder's greedy CTC reading, as text ids
    assert v.encode_text(v.decode_text(read)) == read and tiny(encoder=16).reader() is None
    with pytest.raises(ValueError, match="heard_reading needs"):
        AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_reading=True), LINES, seed=3)


def test_heard_reading_trains_from_a_later_stage_and_answers(tiny_corpus, tmp_path, speech):
    """Stage 1 cannot read yet; SFT switches the reading on, the saved model keeps it, and the engine answers with
    it (`last_heard` is the reading)."""
    from aqaa.errors import AqaaInputError
    from aqaa.lm.generate import Sampling
    from aqaa.serve.engine import AqaaSession, assemble_model
    from aqaa.lm.heard import LEXICON_FILE, lexicon_words
    from aqaa.train.lm import stage_config, train_stage, vocab_lines
    from aqaa.train.vocoder import train_vocoder

    args = (tiny_corpus["data"], tiny_corpus["tokens"], tmp_path)
    enc = ["lm.heard_encoder=8", "lm.heard_ctc=0.5"]
    with pytest.raises(AqaaInputError, match="later stage"):
        train_stage(stage_config("stage1", "tiny", ["steps=2", "batch=2", *enc, "lm.heard_reading=true"]), *args)
    train_stage(stage_config("stage1", "tiny", ["steps=2", "batch=2", *enc]), *args)
    for stage in ("stage2", "stage3"):
        train_stage(stage_config(stage, "tiny", ["steps=1", "batch=2"]), *args)
    sft = train_stage(stage_config("sft", "tiny", ["steps=2", "batch=2", *enc, "lm.heard_reading=true",
                                                "lm.heard_lexicon=0.34"]), *args)
    lm = AudioLM.load(sft)
    assert lm.cfg.heard_reading and lm.reader() is not None
    assert lm.lexicon == lexicon_words(vocab_lines(tiny_corpus["data"])) and (sft / LEXICON_FILE).is_file()
    voc = train_vocoder(tiny_corpus["data"], tiny_corpus["tokens"], tmp_path / "voc", "tiny", ["steps=1", "batch=2"])
    model = assemble_model(tmp_path / "model", tiny_corpus["tokenizer"], sft, voc,
                           Sampling(max_groups=4, max_text_tokens=4, audio_temperature=1.0))
    s = AqaaSession(model)
    samples, _ = speech
    s.answer(samples)
    streams = s.tokenizer.encode(samples)
    q_ids = lm.vocab.audio_group_ids(streams.linguistic, streams.semantic)
    assert s.last_heard == lm.vocab.decode_text(lm.reader()(q_ids))
    n = s.state.n_past
    s.answer(samples)  # the second turn's prompt holds its reading too
    assert s.state.n_past > n + len(q_ids) + 2


def test_a_reading_snaps_to_the_lexicon_only_when_close():
    """`heard_lexicon`: a word off by a letter becomes the known word (ties to the commoner one); a known word, or
    one too far from every known word, stays as read; without a lexicon the option refuses to run."""
    from aqaa.lm.heard import heard_ctc_transcript, lexicon_words, snap_to_lexicon

    lexicon = lexicon_words(["What is the capital of Greece?", "Kyiv is the capital of Ukraine.", "cat cat", "car"])
    assert lexicon[:2] == ["is", "the"] and lexicon.index("cat") < lexicon.index("car")
    assert snap_to_lexicon("what is the capitl of grece kyive", lexicon, 0.34) == "what is the capital of greece kyiv"
    assert snap_to_lexicon("cax zebra", lexicon, 0.34) == "cat zebra"
    assert snap_to_lexicon("grece", lexicon, 0.1) == "grece"
    # `heard_case`: every known word in the case the texts write it inside a sentence (a first word tells nothing)
    assert "Greece" in lexicon and "Ukraine" in lexicon and "what" in lexicon and "kyiv" in lexicon
    assert snap_to_lexicon("what is the capitl of grece kyive", lexicon, 0.34, cased=True) == \
        "what is the capital of Greece kyiv"
    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_ctc=1.0, heard_reading=True,
                                            heard_lexicon=0.34), LINES, seed=3)
    with pytest.raises(ValueError, match="no lexicon"):
        lm.reader()
    lm.lexicon = lexicon_words(LINES)
    q = audio(lm, 3, 0)
    assert lm.reader()(q) == lm.vocab.encode_text(snap_to_lexicon(heard_ctc_transcript(lm.model, q), lm.lexicon, 0.34))
    lm.cfg.heard_case = True
    assert lm.reading_ids("What is the capital of Grece?", snap=False) == lm.vocab.encode_text(
        snap_to_lexicon("what is the capital of grece", lm.lexicon, 0.0, cased=True))
    with pytest.raises(ValueError, match="needs heard_lexicon"):
        AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_ctc=1.0, heard_reading=True,
                                           heard_case=True), LINES, seed=3)


def test_hidden_audio_keeps_the_reading_of_the_real_audio():
    """`heard_hide`: a hidden query shows random linguistic codes (its semantic tokens kept), its reading is still
    that of the real audio, and the same query is hidden the same way every time the parts are built."""
    from aqaa.lm.format import dialogue
    from aqaa.train.lm import hide_linguistic

    lm = AudioLM.create(dataclasses.replace(PRESETS["tiny"], heard_encoder=16, heard_ctc=1.0, heard_reading=True),
                        LINES, seed=3)
    v, c = lm.vocab, lm.vocab.ctrl
    hide = hide_linguistic(v, 1.0, seed=0)
    q = audio(lm, 6, 0)
    shown = hide(q)
    lo, hi = v.l_range
    assert shown == hide(q) and shown != q and len(shown) == len(q)
    assert [i for i in shown if not lo <= i < hi] == [i for i in q if not lo <= i < hi]  # semantic stream kept
    assert hide_linguistic(v, 0.0, seed=0)(q) == q
    seen = []
    seq = dialogue(v, [(q, v.encode_text("yes"), audio(lm, 2, 1))], lm.cfg.rhythm,
                   reader=lambda ids: seen.append(ids) or v.encode_text("hi"), hide=hide)
    start = seq.ids.index(c["audio_start"])
    assert seen == [q] and seq.ids[start + 1: start + 1 + len(q)] == shown


def test_a_frozen_reader_reads_as_the_stage_it_was_copied_from(tiny_corpus, tmp_path):
    """`heard_reader`: the stage that sets it copies the encoder and audio rows the previous stage trained; it and
    every later stage read with that copy while the live encoder trains on; the copy is saved and loaded with the
    model. Stage 1, or a stage whose starting model has no trained encoder, refuses it."""
    from aqaa.errors import AqaaInputError
    from aqaa.lm.heard import READER_FILE, HeardReader
    from aqaa.train.lm import stage_config, train_stage

    args = (tiny_corpus["data"], tiny_corpus["tokens"], tmp_path)
    enc = ["batch=2", "lr=1e-2", "lm.heard_encoder=8", "lm.heard_ctc=0.5", 'mix={"asr": 1.0}']
    with pytest.raises(AqaaInputError, match="later stage"):
        train_stage(stage_config("stage1", "tiny", ["steps=2", *enc, "lm.heard_reader=true"]), *args)
    stage1 = train_stage(stage_config("stage1", "tiny", ["steps=2", *enc]), *args)
    first = AudioLM.load(stage1)
    q = audio(first, 4, 7)
    copy = HeardReader.from_model(first.model, (first.vocab.l_range[0], first.vocab.s_range[1]))
    heard = heard_embedding(first.model)
    _, h, _ = heard.encoder.states([heard.weight[torch.tensor(q)]])
    assert torch.allclose(copy.char_logits(q), heard.encoder.chars(h[0]), atol=1e-5)  # the copy reads as the model

    stage2 = train_stage(stage_config("stage2", "tiny", ["steps=3", *enc, "lm.heard_reader=true"]), *args)
    stage3 = train_stage(stage_config("stage3", "tiny", ["steps=2", *enc, "lm.heard_reader=true",
                                                         "lm.heard_reading=true"]), *args)
    for folder in (stage2, stage3):
        lm = AudioLM.load(folder)
        assert lm.cfg.heard_reader and (folder / READER_FILE).is_file()
        assert torch.allclose(lm.heard_reader.char_logits(q), copy.char_logits(q), atol=1e-5)
        moved = heard_embedding(lm.model).encoder.gru.weight_hh_l0
        assert not torch.allclose(moved, heard.encoder.gru.weight_hh_l0)  # the live encoder trained on
    reading = lm.reader()(q)
    assert lm.vocab.decode_text(reading) == lm.vocab.decode_text(lm.reading_ids(copy.transcript(q)))

    bare = tmp_path / "bare"
    train_stage(stage_config("stage1", "tiny", ["steps=1", "batch=2"]), tiny_corpus["data"], tiny_corpus["tokens"],
                bare)
    with pytest.raises(AqaaInputError, match="earlier stage trained"):
        train_stage(stage_config("stage2", "tiny", ["steps=1", *enc, "lm.heard_reader=true"]), tiny_corpus["data"],
                    tiny_corpus["tokens"], bare)
