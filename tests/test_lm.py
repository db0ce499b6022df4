"""Backbone LM on tiny configs: vocabulary layout, chat format, constrained streaming generation, exact resume,
the stage chain, and the pretrained SmolLM2 path (bundled GGUF -> extended -> trained -> save/load)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from aqaa.lm.format import AnswerRhythm, answer_ids, dialogue
from aqaa.lm.generate import AnswerGrammar, Generator, GrammarState, Sampling, generate_answer
from aqaa.lm.model import PRESETS, AudioLM
from aqaa.lm.vocab import CONTROL_TOKENS
from aqaa.train.lm import build_parts, collate, fresh_model, noise_read_audio, stage_config, train_stage

LINES = ["What is the capital of Japan?", "The capital of Japan is Tokyo.", "Seven plus five is twelve."] * 5


@pytest.fixture(scope="module")
def tiny_lm() -> AudioLM:
    lm = AudioLM.create(PRESETS["tiny"], LINES)
    lm.model.eval()
    return lm


def test_vocabulary_is_text_then_5120_audio_then_controls(tiny_lm):
    v = tiny_lm.vocab
    assert v.audio_offset == v.text_size == 300
    assert v.l_range == (300, 300 + 1024) and v.s_range == (300 + 1024, 300 + 5120)
    assert sorted(v.ctrl.values()) == list(range(300 + 5120, 300 + 5120 + len(CONTROL_TOKENS)))
    assert v.hf.convert_ids_to_tokens(v.s_id(4095)) == "<s_4095>"
    assert tiny_lm.model.get_input_embeddings().num_embeddings == v.size
    assert v.decode_text(v.encode_text("The capital of Japan is Tokyo.")) == "The capital of Japan is Tokyo."
    assert v.split_group_ids(v.audio_group_ids([1, 2, 3, 4], [5, 6, 7, 8, 9, 10])) == ([1, 2, 3, 4], [5, 6, 7, 8, 9, 10])


def test_answer_interleaves_text_ahead_of_whole_groups(tiny_lm):
    v = tiny_lm.vocab
    text = v.encode_text("The capital of Japan is Tokyo.")
    audio = v.audio_group_ids(list(range(40)), list(range(60)))  # 20 groups
    ids = answer_ids(v, text, audio, AnswerRhythm(text_chunk=2, audio_chunk=4))
    assert ids[:2] == text[:2] and v.l_range[0] <= ids[2] < v.l_range[1]
    assert ids[-2:] == [v.ctrl["audio_end"], v.ctrl["end_turn"]]
    assert [i for i in ids if v.is_text(i)] == text  # all text, in order
    assert [i for i in ids if i >= v.audio_offset and i < v.s_range[1]] == audio  # all audio, in order
    assert ids.index(v.ctrl["text_end"]) < len(ids) - 2
    seq = dialogue(v, [(audio[:10], text, audio)], AnswerRhythm())
    user_part = seq.ids.index(v.ctrl["assistant"]) + 1
    assert not any(seq.loss[:user_part]) and all(seq.loss[user_part:])  # loss on the answer only


def test_generation_is_well_formed_streams_groups_and_forks(tiny_lm):
    v = tiny_lm.vocab
    gen = Generator(tiny_lm, Sampling(text_temperature=1.0, audio_temperature=1.0, max_groups=12,
                                      max_text_tokens=10, seed=1))
    prompt = [v.ctrl["bos"], v.ctrl["user"], v.ctrl["audio_start"], *v.audio_group_ids([1, 2], [3, 4, 5]),
              v.ctrl["audio_end"], v.ctrl["end_turn"], v.ctrl["assistant"]]
    state = gen.feed(gen.new_state(), prompt)
    fork = state.copy()
    events = list(gen.answer(state))
    assert events[-1].kind == "end" and state.answer[-2:] == [v.ctrl["audio_end"], v.ctrl["end_turn"]]
    groups = [e for e in events if e.kind == "group"]
    assert 1 <= len(groups) <= 12
    for e in groups:
        assert len(e.ids) == 5 and len(e.linguistic) == 2 and len(e.semantic) == 3
        assert all(v.l_range[0] <= i < v.l_range[1] for i in e.ids[:2])
        assert all(v.s_range[0] <= i < v.s_range[1] for i in e.ids[2:])
    assert sum(e.kind == "text" for e in events) <= 10
    # the copied state continues independently; greedy decoding from two copies agrees
    greedy = Generator(tiny_lm, Sampling(text_temperature=0, audio_temperature=0, max_groups=6, max_text_tokens=4))
    a, b = fork.copy(), fork.copy()
    assert [e.ids for e in greedy.answer(a)] == [e.ids for e in greedy.answer(b)]
    assert generate_answer(greedy, prompt)["ids"] == a.answer


def test_grammar_never_ends_a_silent_answer(tiny_lm):
    v = tiny_lm.vocab
    grammar = AnswerGrammar(v, AnswerRhythm(), Sampling())
    st = GrammarState(phase="tail")
    assert not grammar.allowed(st)[v.ctrl["audio_end"]]  # text ended, no group yet: audio must follow
    for token in v.audio_group_ids([1, 2], [3, 4, 5]):
        grammar.advance(st, token)
    assert st.groups_total == 1 and grammar.allowed(st)[v.ctrl["audio_end"]]


def test_sampling_is_per_conversation_so_an_answer_ignores_other_conversations(tiny_lm):
    """The eval answers items one after another on one Generator: an item's sampled answer must not depend on what
    ran before it (a shared generator made 13 of 39 multi-turn answers change when run as a subset)."""
    v = tiny_lm.vocab
    sampling = Sampling(text_temperature=1.0, audio_temperature=1.0, max_groups=8, max_text_tokens=6, seed=7)
    gen = Generator(tiny_lm, sampling)

    def prompt(lin: list[int], sem: list[int]) -> list[int]:
        return [v.ctrl["bos"], v.ctrl["user"], v.ctrl["audio_start"], *v.audio_group_ids(lin, sem),
                v.ctrl["audio_end"], v.ctrl["end_turn"], v.ctrl["assistant"]]

    first = generate_answer(gen, prompt([1, 2], [3, 4, 5]))["ids"]
    generate_answer(gen, prompt([9, 8], [7, 6, 5]))  # another conversation samples in between
    assert generate_answer(gen, prompt([1, 2], [3, 4, 5]))["ids"] == first
    answers = {tuple(generate_answer(Generator(tiny_lm, dataclasses.replace(sampling, seed=s)),
                                     prompt([1, 2], [3, 4, 5]))["ids"]) for s in range(4)}
    assert len(answers) > 1  # the seed still matters
    # without a seed, a copied state carries its randomly seeded generator: both copies sample the same continuation
    unseeded = Generator(tiny_lm, dataclasses.replace(sampling, seed=None))
    state = unseeded.feed(unseeded.new_state(), prompt([1, 2], [3, 4, 5]))
    a, b = state.copy(), state.copy()
    assert [e.ids for e in unseeded.answer(a)] == [e.ids for e in unseeded.answer(b)]


def test_transcribe_writes_only_text_and_stops_at_eos(tiny_lm, monkeypatch):
    v = tiny_lm.vocab
    gen = Generator(tiny_lm)
    audio = v.audio_group_ids([1, 2, 3, 4], [5, 6, 7, 8, 9, 10])
    seen: list[list[int]] = []
    forward = gen.decoder.forward

    def spy(ids, cache, rows=None):
        seen.append(list(ids))
        return forward(ids, cache, rows)

    monkeypatch.setattr(gen.decoder, "forward", spy)
    text = gen.transcribe(audio, max_tokens=5)
    assert seen[0] == [v.ctrl["bos"], v.ctrl["audio_start"], *audio, v.ctrl["audio_end"], v.ctrl["asr"]]
    assert all(v.is_text(t[0]) for t in seen[1:]) and len(seen) - 1 <= 5  # only text ids are fed back
    assert text == gen.transcribe(audio, max_tokens=5)  # greedy

    def eos_first(ids, cache, rows=None):  # a model that ends at once transcribes nothing
        logits = forward(ids, cache, rows)
        logits[v.ctrl["eos"]] = 1e4
        return logits

    monkeypatch.setattr(gen.decoder, "forward", eos_first)
    assert gen.transcribe(audio) == ""


def test_transcribing_rhythm_writes_what_it_heard_first(tiny_lm):
    v, rhythm = tiny_lm.vocab, AnswerRhythm(transcribe_query=True)
    heard, text = v.encode_text("What is the capital of Japan?"), v.encode_text("Tokyo.")
    audio = v.audio_group_ids(list(range(20)), list(range(30)))
    ids = answer_ids(v, text, audio, rhythm, heard)
    assert ids[: len(heard) + 2] == [v.ctrl["asr"], *heard, v.ctrl["tts"]]
    assert ids[len(heard) + 2:] == answer_ids(v, text, audio, AnswerRhythm())  # then the plain answer
    with pytest.raises(ValueError, match="heard_ids"):
        answer_ids(v, text, audio, rhythm)
    seq = dialogue(v, [(audio[:10], text, audio, heard)], rhythm)
    assert seq.ids[seq.ids.index(v.ctrl["assistant"]) + 1] == v.ctrl["asr"]
    # generation follows the same grammar: the transcript comes as "heard" events, never as the answer's text
    lm = AudioLM(tiny_lm.model, v, dataclasses.replace(tiny_lm.cfg, rhythm=rhythm))
    gen = Generator(lm, Sampling(text_temperature=1.0, audio_temperature=1.0, max_groups=4, max_text_tokens=6,
                                 max_heard_tokens=5, seed=3))
    prompt = [v.ctrl["bos"], v.ctrl["user"], v.ctrl["audio_start"], *audio[:10], v.ctrl["audio_end"],
              v.ctrl["end_turn"], v.ctrl["assistant"]]
    out = generate_answer(gen, prompt)
    n_heard = out["ids"].index(v.ctrl["tts"]) - 1
    assert out["ids"][0] == v.ctrl["asr"] and 0 <= n_heard <= 5
    assert all(v.is_text(i) for i in out["ids"][1: n_heard + 1])
    assert out["heard"] == v.decode_text(out["ids"][1: n_heard + 1])
    assert out["ids"][-2:] == [v.ctrl["audio_end"], v.ctrl["end_turn"]]


def test_linguistic_embeddings_start_at_the_tokenizer_centroids(tiny_corpus):
    from aqaa.tokenizer.model import DualTokenizer
    from aqaa.train.lm import _init_model

    centroids = DualTokenizer.load(tiny_corpus["tokenizer"]).linguistic.centroids
    cfg = stage_config("stage1", "tiny", [f"linguistic_init={tiny_corpus['tokenizer']}"])
    seeded = _init_model(cfg, tiny_corpus["root"], tiny_corpus["data"])
    plain = _init_model(stage_config("stage1", "tiny"), tiny_corpus["root"], tiny_corpus["data"])
    lo, n = seeded.vocab.l_range[0], centroids.shape[0]
    a, b = seeded.model.get_input_embeddings().weight, plain.model.get_input_embeddings().weight
    assert torch.equal(a[:lo], b[:lo]) and torch.equal(a[lo + n:], b[lo + n:])  # only the used <l_k> rows move

    def distances(x):
        return torch.pdist(x.detach().float())

    d_seed, d_cent = distances(a[lo: lo + n]), distances(centroids)
    assert torch.corrcoef(torch.stack([d_seed, d_cent]))[0, 1] > 0.9  # the acoustic neighbourhoods carry over
    assert abs(a[lo: lo + n].std() / b[lo: lo + n].std() - 1) < 0.1  # at the scale of the other embeddings


def _losses(folder) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]


def test_killed_stage_resumes_with_the_same_loss_curve(tiny_corpus, tmp_path):
    args = dict(data_dir=tiny_corpus["data"], tokens_path=tiny_corpus["tokens"])
    over = ["steps=16", "batch=4", "ckpt_every=5", "log_every=1", "warmup=3", "audio_noise=0.2"]  # the noise replays too
    whole = train_stage(stage_config("stage1", "tiny", over), out=tmp_path / "a", **args)
    assert (whole / "aqaa_lm.json").exists()
    # "kill" at step 13: the checkpoint is at 10, rows 11-13 were logged by the dead run and must be replayed
    train_stage(stage_config("stage1", "tiny", over), out=tmp_path / "b", stop_after=13, **args)
    assert json.loads((tmp_path / "b/stage1/checkpoint/trainer.json").read_text())["step"] == 10
    train_stage(stage_config("stage1", "tiny", over), out=tmp_path / "b", **args)
    a, b = _losses(tmp_path / "a/stage1"), _losses(tmp_path / "b/stage1")
    assert [s for s, _ in b] == [s for s, _ in a] == list(range(1, 17))
    assert [x for _, x in b] == pytest.approx([x for _, x in a], abs=1e-5)
    assert (tmp_path / "b/stage1/loss.png").exists()


def test_stages_chain_to_sft(tiny_corpus, tmp_path):
    args = dict(data_dir=tiny_corpus["data"], tokens_path=tiny_corpus["tokens"], out=tmp_path)
    for stage in ("stage1", "stage2", "stage3", "sft"):
        # the answer format is each stage's own: stage 3 on switches to the transcribing rhythm
        late = ["lm.rhythm.transcribe_query=true"] if stage in ("stage3", "sft") else []
        final = train_stage(stage_config(stage, "tiny", ["steps=3", "batch=2", *late]), **args)
        assert (final / "model.safetensors").exists()
    assert not AudioLM.load(tmp_path / "stage2" / "model").cfg.rhythm.transcribe_query
    lm = AudioLM.load(tmp_path / "sft" / "model")
    assert lm.cfg.rhythm.transcribe_query
    parts = build_parts(tiny_corpus["data"], json_tokens(tiny_corpus["tokens"]), lm.vocab, lm.cfg.rhythm)
    assert parts["dialogue"] and parts["single_turn"] and parts["tts"] and parts["asr"]
    assert all(lm.vocab.ctrl["asr"] in seq.ids for seq in parts["dialogue"])
    from aqaa.errors import AqaaInputError

    with pytest.raises(AqaaInputError):
        train_stage(stage_config("stage2", "tiny", ["steps=1"]), tiny_corpus["data"], tiny_corpus["tokens"],
                    tmp_path / "empty")


def test_typed_questions_are_answered_by_the_spoken_answers_the_split_has(tiny_lm):
    """The `typed` part: a knowledge question as text alone, in the reading's form, answered with the audio of a
    neutral assistant-voice rendering of its answer; answers with no such rendering give no sequence."""
    from aqaa.train.lm import typed_dialogues

    v = tiny_lm.vocab
    said = [v.l_id(1), v.l_id(2), v.s_id(3), v.s_id(4), v.s_id(5)] * 3
    spoken = [("a/peru.wav", "The capital of Peru is Lima.", True),
              ("q/kenya.wav", "The capital of Kenya is Nairobi.", False)]
    seqs = list(typed_dialogues(v, tiny_lm.cfg.rhythm, spoken, lambda rel: said))
    assert seqs and len(seqs) <= 5  # the train phrasings of "capital" asked about Peru
    for seq in seqs:
        c = v.ctrl
        turn_end = seq.ids.index(c["end_turn"])
        assert seq.ids[:3] == [c["bos"], c["user"], c["asr"]] and c["audio_start"] not in seq.ids[:turn_end]
        question = v.decode_text(seq.ids[3:turn_end])
        assert "peru" in question and question == question.lower() and "?" not in question
        assert not any(seq.loss[:turn_end + 2]) and all(seq.loss[turn_end + 2:])  # loss on the answer only
        assert said[:5] == [i for i in seq.ids if v.l_range[0] <= i < v.s_range[1]][:5]
        assert "Lima" in v.decode_text([i for i in seq.ids[turn_end:] if v.is_text(i)])


def test_a_plain_request_is_answered_by_the_neutral_rendering(tiny_lm, tmp_path):
    """A control item's plain request (no control words) becomes a dialogue of its own whose answer is the neutral
    rendering's audio, so the words, not the phrase, decide the style."""
    from aqaa.train.lm import iter_parts

    def part(name, text, k):
        return {"audio": f"audio/x/{name}.wav", "text": text, "voice": "joe",
                "style": {"rate": 0.72 if name == "a0" else 1.0, "pitch": 0.0, "level_db": -26.0}, "k": k}

    turn = {"query": part("q0", "Say take care slowly.", 1), "answer": part("a0", "Take care.", 2),
            "neutral": part("a0_neutral", "Take care.", 3), "opposite": part("a0_opposite", "Take care.", 4),
            "plain_query": part("q0_plain", "Say take care.", 5), "control": {"axis": "rate", "direction": "slow"}}
    item = {"id": "x", "category": "speech_control", "turns": [turn]}
    (tmp_path / "train.jsonl").write_text(json.dumps(item) + "\n")
    tokens = {p["audio"]: {"linguistic": [p["k"]] * 2, "semantic": [p["k"]] * 3}
              for p in turn.values() if isinstance(p, dict) and "audio" in p}
    v = tiny_lm.vocab
    parts = iter_parts(tmp_path, tokens, v, AnswerRhythm(), plain_requests=True)
    seqs = [seq for name, seq in parts if name == "single_turn"]
    assert len(seqs) == 2
    plain = seqs[1].ids
    assert v.l_id(5) in plain and v.l_id(3) in plain  # heard the plain request, answers with the neutral audio
    assert v.l_id(1) not in plain and v.l_id(2) not in plain
    without = [name for name, _ in iter_parts(tmp_path, tokens, v, AnswerRhythm())]  # the default
    assert without.count("single_turn") == 1 and without.count("dialogue") == 1


def json_tokens(path):
    from aqaa.data.tokens import read_tokens

    return read_tokens(path)


def test_smollm2_trains_through_the_stage_entry_points(tiny_corpus, tmp_path):
    """SmolLM2-135M (bundled GGUF) extended by the audio tokens, then stage 1 and stage 2 through `train_stage`:
    stage 2 starts from the trained stage-1 model (its first loss is below stage 1's first) and the model round-trips."""
    from aqaa.train.lm import stage_config, train_stage

    lm = AudioLM.create(PRESETS["smollm2"])
    v = lm.vocab
    assert v.audio_offset == 49152 and v.size == 49152 + 5120 + len(CONTROL_TOKENS)
    assert lm.model.get_input_embeddings().num_embeddings >= v.size
    over = ["steps=3", "batch=2", "max_len=256", "warmup=1", "lr=3e-4", "log_every=1", "ckpt_every=3",
            'mix={"single_turn": 1.0}', "seed=3"]
    args = (tiny_corpus["data"], tiny_corpus["tokens"], tmp_path)
    first = train_stage(stage_config("stage1", "smollm2", over), *args)
    train_stage(stage_config("stage2", "smollm2", over[:-1] + ["seed=4"]), *args)
    rows = lambda s: [json.loads(x)["loss"] for x in (tmp_path / s / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows("stage2")[0] < rows("stage1")[0]  # stage 2 starts where stage 1 ended
    back = AudioLM.load(first)
    assert back.vocab.audio_offset == 49152 and back.cfg.pretrained == "smollm2"
    parts = build_parts(tiny_corpus["data"], json_tokens(tiny_corpus["tokens"]), back.vocab, back.cfg.rhythm)
    x = collate(parts["single_turn"][:1], v.ctrl["pad"], 64)["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(back.model(x).logits).all()


@pytest.mark.parametrize("args", [
    ["train", "pretrain", "--stage", "1", "--preset", "nope", "--data", "D", "--tokens", "T", "--out", "O"],
    ["train", "sft", "--data", "/nonexistent", "--tokens", "/nonexistent", "--out", "O"],
    ["recipe", "--preset", "nope", "--status"],
])
def test_training_commands_refuse_bad_arguments_clearly(args, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "aqaa.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("aqaa: error:") and "Traceback" not in r.stderr



def test_recall_dialogues_make_the_earlier_turn_decide_the_answer(tiny_lm, tmp_path):
    """The `recall` part recombines the split's multi-turn items: a question meets answers of several values, and
    each answer states the value its dialogue's first turn stated."""
    from aqaa.train.lm import iter_parts

    items, tokens = [], {}
    for k, pet in enumerate(["horse", "cat", "dog"]):
        turns = []
        for t, (q, a) in enumerate([(f"I own a {pet}.", f"A {pet} is a great pet."), ("What pet do I have?",
                                                                                     f"You have a {pet}.")]):
            code = 10 * k + 2 * t + 1  # one code per clip: the ids say which clip a turn shows
            part = {"query": {"audio": f"q{k}{t}.wav", "text": q, "voice": "x"},
                    "answer": {"audio": f"a{k}{t}.wav", "text": a, "voice": "joe"}}
            tokens[f"q{k}{t}.wav"] = {"linguistic": [code] * 2, "semantic": [code] * 3}
            tokens[f"a{k}{t}.wav"] = {"linguistic": [code + 1] * 2, "semantic": [code + 1] * 3}
            turns.append(part)
        items.append({"id": f"m{k}", "category": "multi_turn", "qtype": "remember_pet", "answer": [pet],
                      "turns": turns})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    v = tiny_lm.vocab
    recalls = [seq for name, seq in iter_parts(tmp_path, tokens, v, AnswerRhythm()) if name == "recall"]
    assert len(recalls) == 6 * len(items)
    answers_of_question = {}
    for seq in recalls:
        stated = next(k for k in range(3) if v.l_id(10 * k + 1) in seq.ids)  # the statement's clip
        asked = next(k for k in range(3) if v.l_id(10 * k + 3) in seq.ids)  # the question's clip
        answered = [k for k in range(3) if v.l_id(10 * k + 4) in seq.ids]  # the recall answer's clip
        assert answered == [stated]
        assert ["horse", "cat", "dog"][stated] in v.decode_text([i for i in seq.ids if v.is_text(i)])
        answers_of_question.setdefault(asked, set()).add(stated)
    assert max(len(s) for s in answers_of_question.values()) > 1


def test_typed_control_requests_are_answered_in_their_style(tiny_lm):
    """A typed speech-control request is answered by a rendering in the style its words ask for, and only by one."""
    from aqaa.data.spokenqa import CONTROL_WORDS
    from aqaa.train.lm import answer_direction, typed_dialogues

    v = tiny_lm.vocab
    fast = [v.l_id(1), v.l_id(2), v.s_id(3), v.s_id(4), v.s_id(5)]
    styled = {("Take care.", "fast"): "a/fast.wav"}
    seqs = list(typed_dialogues(v, tiny_lm.cfg.rhythm, [], lambda rel: fast, styled=styled,
                                categories=("speech_control",)))
    assert seqs
    fast_words = [w.replace(",", "") for w in CONTROL_WORDS[("rate", "fast")]]
    for seq in seqs:
        question = v.decode_text(seq.ids[3:seq.ids.index(v.ctrl["end_turn"])])
        assert "take care" in question and any(w in question for w in fast_words)
        assert fast[0] in seq.ids
    assert answer_direction({"rate": 1.4, "pitch": 0.0, "level_db": -26.0}) == "fast"
    assert answer_direction({"rate": 1.0, "pitch": 0.0, "level_db": -16.0}) == "loud"
    assert answer_direction({"rate": 1.0, "pitch": 0.0, "level_db": -26.0}) is None


def test_voice_questions_have_a_part_of_their_own(tiny_lm, tmp_path):
    """`voice` holds the single-turn voice-understanding sequences (so a mixture can weigh them), nothing else."""
    from aqaa.train.lm import iter_parts

    def turn(k, q, a):
        return {"query": {"audio": f"q{k}.wav", "text": q, "voice": "x"},
                "answer": {"audio": f"a{k}.wav", "text": a, "voice": "joe"}}

    items = [{"id": "v", "category": "voice_understanding", "turns": [turn(0, "Am I loud or quiet?",
                                                                           "You are speaking loudly.")]},
             {"id": "k", "category": "knowledge", "turns": [turn(1, "What color is snow?", "Snow is white.")]}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    tokens = {f"{x}{k}.wav": {"linguistic": [k + 1] * 2, "semantic": [k + 1] * 3} for x in "qa" for k in range(2)}
    parts = list(iter_parts(tmp_path, tokens, tiny_lm.vocab, AnswerRhythm()))
    voice = [seq for name, seq in parts if name == "voice"]
    singles = [seq for name, seq in parts if name == "single_turn"]
    assert len(voice) == 1 and len(singles) == 2 and voice[0].ids == singles[0].ids


def test_a_mixture_builds_only_its_parts(tiny_corpus):
    """`build_parts(mix=...)` builds the named parts exactly as the full build does and leaves the others empty
    (a stage reads and packs only what it draws)."""
    lm = fresh_model(PRESETS["tiny"], tiny_corpus["data"], 0)
    tokens = json_tokens(tiny_corpus["tokens"])
    full = build_parts(tiny_corpus["data"], tokens, lm.vocab, lm.cfg.rhythm)
    some = build_parts(tiny_corpus["data"], tokens, lm.vocab, lm.cfg.rhythm, mix=["dialogue", "voice", "tts"])
    assert full["single_turn"] and full["asr"] and full["typed"]  # what the mixture leaves out exists
    for name, seqs in some.items():
        if name in ("dialogue", "voice", "tts"):
            assert seqs and [s.ids for s in seqs] == [s.ids for s in full[name]], name
        else:
            assert not seqs, name


def test_a_stage_can_start_from_any_model_folder(tiny_lm, tmp_path):
    """`init` starts a stage from a given model (a further SFT round) instead of the previous stage's; a folder that
    holds no model is a clear error."""
    from aqaa.errors import AqaaInputError
    from aqaa.train.lm import _init_model

    tiny_lm.save(tmp_path / "given")
    lm = _init_model(stage_config("sft", "tiny", [f"init={tmp_path / 'given'}"]), tmp_path / "run", tmp_path)
    assert torch.equal(lm.model.get_input_embeddings().weight, tiny_lm.model.get_input_embeddings().weight)
    with pytest.raises(AqaaInputError, match="not a model folder"):
        _init_model(stage_config("sft", "tiny", [f"init={tmp_path}"]), tmp_path / "run", tmp_path)


def test_audio_noise_swaps_only_read_audio_codes_within_their_stream(tiny_lm):
    v = tiny_lm.vocab
    text = v.encode_text("The capital of Japan is Tokyo.")
    query = v.audio_group_ids(list(range(200)), list(range(300)))
    answer = v.audio_group_ids(list(range(40)), list(range(60)))
    batch = collate([dialogue(v, [(query, text, answer)], AnswerRhythm())], v.ctrl["pad"], 2048)
    ids, labels = batch["input_ids"], batch["labels"]
    noisy = noise_read_audio(ids, labels, v, 0.3, torch.Generator().manual_seed(0))
    changed = noisy != ids
    assert not changed[labels != -100].any()  # the answer, which is trained, stays as it is
    assert 0.2 < changed.sum().item() / len(query) < 0.4
    lo, hi = v.l_range
    assert torch.equal((noisy >= lo) & (noisy < hi), (ids >= lo) & (ids < hi))  # each code keeps its stream
    assert torch.equal(noisy, noise_read_audio(ids, labels, v, 0.3, torch.Generator().manual_seed(0)))


def test_smollm2_lora_trains_and_saves_only_its_delta(tiny_corpus, tmp_path):
    """`lm.lora_rank`: stage 1 and 2 train adapters + the new embedding rows; the folder holds the delta alone (no
    full weights), the base text rows stay the bundled ones, stage 2 goes on from stage 1's adapters, and the merged
    model (plain Linears, for decoding) gives the unmerged model's logits."""
    from aqaa.lm.lora import DELTA_FILE
    from aqaa.lm.smollm2 import load_smollm2
    from aqaa.train.lm import stage_config, train_stage

    with pytest.raises(ValueError, match="pretrained"):
        AudioLM.create(dataclasses.replace(PRESETS["tiny"], lora_rank=4), ["some text"] * 10)
    over = ["steps=2", "batch=2", "max_len=256", "warmup=1", "lr=1e-3", "log_every=1", "ckpt_every=2",
            'mix={"single_turn": 1.0}', "seed=3", "lm.lora_rank=4"]
    args = (tiny_corpus["data"], tiny_corpus["tokens"], tmp_path)
    first = train_stage(stage_config("stage1", "smollm2", over), *args)
    second = train_stage(stage_config("stage2", "smollm2", over[:-2] + ["seed=4", "lm.lora_rank=4"]), *args)
    rows = lambda s: [json.loads(x)["loss"] for x in (tmp_path / s / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows("stage2")[0] < rows("stage1")[0]
    for folder in (first, second):
        assert (folder / DELTA_FILE).is_file() and not (folder / "model.safetensors").exists()
        assert (folder / DELTA_FILE).stat().st_size < 10e6  # new rows 5.9 MB + 4 ranks of adapters
    lm = AudioLM.load(second, merged=False)
    base, _ = load_smollm2()
    n = lm.vocab.text_size
    assert torch.equal(lm.model.get_input_embeddings().weight[:n], base.get_input_embeddings().weight)
    parts = build_parts(tiny_corpus["data"], json_tokens(tiny_corpus["tokens"]), lm.vocab, lm.cfg.rhythm)
    x = collate(parts["single_turn"][:1], lm.vocab.ctrl["pad"], 64)["input_ids"]
    merged = AudioLM.load(second)
    assert type(merged.model.model.layers[0].self_attn.q_proj) is torch.nn.Linear and merged.cfg.lora_rank == 0
    with torch.no_grad():
        assert (lm.model(x).logits - merged.model(x).logits).abs().max() < 1e-3
    from aqaa.train.merge import folder_state  # what merge reads as the stage-3 base: the merged weights

    state = folder_state(second)
    assert state.keys() == merged.model.state_dict().keys()
    assert all(torch.equal(v, state[k]) for k, v in merged.model.state_dict().items())
    from safetensors.torch import load_file

    trained = [v for k, v in load_file(second / DELTA_FILE).items() if "lora_B" in k]
    assert len(trained) == 30 * 7 and all(v.abs().sum() > 0 for v in trained)  # zero at the start: they trained
