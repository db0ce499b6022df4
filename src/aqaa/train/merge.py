"""`aqaa train merge`: merge SFT and DPO checkpoints (linear, SLERP, TIES); merge settings chosen on validation.

Linear and TIES use PEFT's task-vector merge functions (`peft.utils.merge_utils`): task vectors are the
checkpoints minus a base (the stage-3 model for TIES, the SFT model for linear). SLERP is written here: no installed
library offers it for whole state dicts (mergekit would bring its own YAML pipeline and dependencies).
Selection: each candidate answers the validation queries; the text channel's answer accuracy decides, the mean
token loss of the reference answers breaks ties between merges. The SFT model itself is a candidate (`linear` at
t 0) and wins accuracy ties, so a DPO that does not help is left out rather than merged in (session 14: DPO + TIES
scored 23.5 % on test where its SFT model scored 24.5 %, and the shipped model had to stop at SFT outside the
recipe).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aqaa.lm.model import AudioLM


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation of two tensors viewed as vectors (linear when they are nearly parallel)."""
    va, vb = a.flatten().double(), b.flatten().double()
    na, nb = va.norm(), vb.norm()
    if na < eps or nb < eps:
        return torch.lerp(a, b, t)
    cos = torch.clamp((va / na) @ (vb / nb), -1.0, 1.0)
    theta = torch.arccos(cos)
    if theta.abs() < 1e-4:
        return torch.lerp(a, b, t)
    s = torch.sin(theta)
    out = (torch.sin((1 - t) * theta) / s) * va + (torch.sin(t * theta) / s) * vb
    return out.reshape(a.shape).to(a.dtype)


def merge_states(method: str, sft: dict, dpo: dict, base: dict | None = None, t: float = 0.5,
                 density: float = 0.7) -> dict:
    """Merged state dict. linear: sft + t (dpo - sft); slerp: per tensor; ties: base + TIES(sft - base, dpo - base)."""
    from peft.utils.merge_utils import task_arithmetic, ties

    out = {}
    for k, a in sft.items():
        b = dpo[k]
        if not a.is_floating_point() or method == "linear" and t == 0:
            out[k] = a
        elif method == "linear":
            out[k] = a + task_arithmetic([b - a], torch.tensor([t]))
        elif method == "slerp":
            out[k] = slerp(a, b, t)
        elif method == "ties":
            if base is None:
                raise ValueError("TIES needs a base checkpoint (the stage-3 model)")
            c = base[k]
            out[k] = c + ties([a - c, b - c], torch.tensor([1.0 - t, t]) * 2, density=density)
        else:
            raise ValueError(f"unknown merge method {method!r}; linear | slerp | ties")
    return out


SFT_ITSELF = {"method": "linear", "t": 0.0}  # the SFT model, bit for bit (`merge_states`)


def candidates() -> list[dict]:
    return ([SFT_ITSELF] + [{"method": "linear", "t": t} for t in (0.25, 0.5, 0.75)]
            + [{"method": "slerp", "t": t} for t in (0.25, 0.5, 0.75)]
            + [{"method": "ties", "t": 0.5, "density": d} for d in (0.5, 0.8)])


def pick(results: list[dict]) -> dict:
    """The best candidate: answer accuracy first; on a tie the SFT model itself, else the lower reference loss.
    Why the SFT model on ties: a loss tie-break chose merges that scored lower on test (session 25: TIES at equal
    validation accuracy, 32.2 vs 34.2 %; reports/default_model/session25/dpo_merge.md)."""
    return max(results, key=lambda r: (r["accuracy"], r["candidate"] == SFT_ITSELF, -r["loss"]))


def validation_score(lm: AudioLM, data_dir: Path, tokens: dict, limit: int = 40) -> dict:
    """Text-channel answer accuracy on validation queries (greedy; the eval's judge) and the mean loss of reference
    answers."""
    from aqaa.eval.judge import judge_answer
    from aqaa.lm.format import dialogue
    from aqaa.lm.generate import Generator, Sampling
    from aqaa.train.lm import _items, collate

    v = lm.vocab
    gen = Generator(lm, Sampling(text_temperature=0.0, audio_temperature=0.0, max_groups=2, max_text_tokens=24))
    hits, n, losses = 0, 0, []
    for item in _items(data_dir, "valid")[:limit]:
        turns = []
        for turn in item["turns"]:
            q, a = tokens.get(turn["query"]["audio"]), tokens.get(turn["answer"]["audio"])
            if q is None or a is None:
                break
            turns.append((v.audio_group_ids(q["linguistic"], q["semantic"]), v.encode_text(turn["answer"]["text"]),
                          v.audio_group_ids(a["linguistic"], a["semantic"]), v.encode_text(turn["query"]["text"])))
        if len(turns) != len(item["turns"]):
            continue
        seq = dialogue(v, turns, lm.cfg.rhythm, train_all_answers=False, reader=lm.reader())
        with torch.no_grad():
            losses.append(float(lm.model(**collate([seq], v.ctrl["pad"], 4096)).loss))
        if item["answer"]:
            ids = seq.ids[: len(seq.ids) - sum(seq.loss)]  # everything before the last answer
            state = gen.feed(gen.new_state(), ids)
            text = [e.ids[0] for e in gen.answer(state) if e.kind == "text"]
            said = v.decode_text(text)
            hits += bool(judge_answer(item, said, said)["answer_correct"])
            n += 1
    return {"accuracy": hits / max(n, 1), "loss": sum(losses) / max(len(losses), 1), "n": n}


def folder_state(folder: str | Path) -> dict[str, torch.Tensor]:
    """A model folder's weights: transformers' file plus the heard-audio encoder's where there is one; a LoRA
    delta's folder (`lm.lora_rank`, no full weights) gives its base with the delta merged in, as `AudioLM.load`."""
    from safetensors.torch import load_file

    from aqaa.lm.heard import ENCODER_FILE
    from aqaa.lm.lora import DELTA_FILE

    if (Path(folder) / DELTA_FILE).exists():
        return dict(AudioLM.load(folder).model.state_dict())  # a model of its own: no copy needed
    state = load_file(Path(folder) / "model.safetensors")
    if (Path(folder) / ENCODER_FILE).exists():
        state.update(load_file(Path(folder) / ENCODER_FILE))
    return state


def merge_and_select(sft_dir: str | Path, dpo_dir: str | Path, base_dir: str | Path, data_dir: str | Path,
                     tokens_path: str | Path, out: str | Path, limit: int = 40) -> Path:
    from aqaa.data.tokens import load_tokens

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokens = load_tokens(tokens_path, data_dir)
    sft = AudioLM.load(sft_dir)
    sft_state = {k: v.clone() for k, v in sft.model.state_dict().items()}
    dpo_state, base_state = folder_state(dpo_dir), folder_state(base_dir)
    for state in (dpo_state, base_state):
        if "lm_head.weight" in sft_state and "lm_head.weight" not in state:  # tied: stored once, as the embedding
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        for k in sft_state.keys() - state.keys():  # an encoder added after the base: its task vector starts there
            if ".encoder." not in k:
                raise ValueError(f"merge: {k} is missing from one of the models")
            state[k] = sft_state[k]
    results_path = out / "selection.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {json.dumps(r["candidate"], sort_keys=True) for r in results}
    for cand in candidates():
        key = json.dumps(cand, sort_keys=True)
        if key in done:
            continue
        merged = merge_states(cand["method"], sft_state, dpo_state, base_state, cand["t"], cand.get("density", 0.7))
        sft.model.load_state_dict(merged)
        sft.model.eval()
        results.append({"candidate": cand, **validation_score(sft, Path(data_dir), tokens, limit)})
        results_path.write_text(json.dumps(results, indent=1))  # resumable: finished candidates are kept
    best = pick(results)
    cand = best["candidate"]
    sft.model.load_state_dict(merge_states(cand["method"], sft_state, dpo_state, base_state, cand["t"],
                                           cand.get("density", 0.7)))
    sft.model.eval()
    sft.save(out / "model")
    (out / "done.json").write_text(json.dumps({"best": best}))
    return out / "model"


def soup(first_dir: str | Path, round_dirs: list[str | Path], t: float, out: str | Path) -> Path:
    """The first model moved `t` of the way toward the uniform average of the rounds' models (all fine-tuned from
    the first), saved to `out/model` with `out/done.json`. Why: a further SFT round learns what it was weighed for
    (multi-turn recall, voice questions) and forgets some generality (held-out phrasings); averaging rounds and
    interpolating toward the first keeps most of each (reports/default_model/session24, session25)."""
    out = Path(out)
    first = AudioLM.load(first_dir)
    state = {k: v.clone() for k, v in first.model.state_dict().items()}
    rounds = [AudioLM.load(d).model.state_dict() for d in round_dirs]
    mean = {k: v if not v.is_floating_point() else sum(r[k] for r in rounds) / len(rounds)
            for k, v in rounds[0].items()}
    first.model.load_state_dict(merge_states("linear", state, mean, t=t))
    first.save(out / "model")
    (out / "done.json").write_text(json.dumps({"first": str(first_dir), "rounds": [str(d) for d in round_dirs],
                                               "t": t}))
    return out / "model"
