"""Run the default recipe's LM stages (1, 2, 3, SFT) on a GPU box that holds no audio, then the hearing probe.

A GPU machine lent for a few minutes has no TTS voices, Whisper or audio corpus: it gets a *bundle* (the SpokenQA
manifests and text, the token cache, the tokenizer's linguistic k-means) and runs exactly the recipe's LM stages on
it (`Recipe.run(until="sft")`, same configs and batches as on 2 CPU cores), times them, probes the stage-1 model's
hearing (`scripts/probe_asr.py`: test queries, held-out hearing sentences), and, while time is left, trains a longer
stage-1 arm. What comes back is packed as <= 15 MiB tar parts, the models first.

    python scripts/gpu_lm_stages.py pack --data data/spokenqa --tokenizer runs/tok --tokens runs/tokens --out .gpu
    python scripts/gpu_lm_stages.py run --bundle .gpu --work /tmp/r --out $OUT --budget-s 480   # on the GPU box

`--smoke` shrinks every stage to 2 steps (to test the script on a CPU). The heard-audio encoder from stage 1 with the
query reading from stage 3: `--extra lm.heard_encoder=128 lm.heard_ctc=1.0 heard_ctc_warmup=1000 --late-extra
lm.heard_reading=true`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pack(data: Path, tokenizer: Path, tokens: Path, out: Path) -> None:
    """Copy what the LM stages read (no audio) into `out`: data/, tokenizer/ (linguistic only), tokens/."""
    if out.exists():
        shutil.rmtree(out)
    for rel in ("train.jsonl", "valid.jsonl", "test.jsonl", "synth.json", "pretrain/sentences.jsonl",
                "pretrain/text.txt"):
        (out / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data / rel, out / "data" / rel)
    (out / "tokenizer").mkdir(parents=True)
    for name in ("tokenizer.json", "linguistic.safetensors"):
        shutil.copy2(tokenizer / name, out / "tokenizer" / name)
    (out / "tokens").mkdir()
    for name in ("tokens.jsonl", "tokens.json", "done.json"):
        shutil.copy2(tokens / name, out / "tokens" / name)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle {out}: {size / 2**20:.1f} MiB")


def save_half(model_dir: Path, dest: Path) -> None:
    """A copy of a model folder with its weights in float16 (for the trip back; the configs are unchanged)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, dest)
    weights = load_file(model_dir / "model.safetensors")
    save_file({k: v.half() for k, v in weights.items()}, dest / "model.safetensors", metadata={"format": "pt"})


def probe(model: Path, bundle: Path, tokens: Path, out: Path, source: str = "queries") -> dict:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "probe_asr.py"), "--model", str(model), "--data",
                    str(bundle / "data"), "--tokens", str(tokens), "--split", "test", "--limit", "100",
                    "--source", source, "--out", str(out)], check=True)
    got = json.loads(out.read_text())["results"][0]
    return {k: got.get(k) for k in ("wer", "transcript_nll", "prior_nll", "entity_recall", "n_entity_queries")}


def send(folder: Path, out: Path, name: str, summary: dict) -> None:
    """Pack `folder` as `out/NAME.tar.part-*` (<= 15 MiB each: what the trip back allows) and refresh the summary."""
    subprocess.run(f"tar -cf - -C {folder} . | split -b 15M - {out}/{name}.tar.part-", shell=True, check=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


def run(bundle: Path, work: Path, out: Path, budget_s: float, smoke: bool, long_steps: int,
        stage1_steps: int = 0, extra: list[str] | None = None, late_extra: list[str] | None = None) -> None:
    import torch

    from aqaa.train.recipe import Recipe

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("tokenizer", "tokens"):
        if not (work / sub).exists():
            shutil.copytree(bundle / sub, work / sub)
    recipe = Recipe("default", work, bundle / "data")
    made = json.loads((bundle / "data" / "synth.json").read_text())  # the bundle's data is what the recipe made
    recipe.cfg = dataclasses.replace(recipe.cfg, n=made["n"], hearing=made.get("hearing", 0))
    if stage1_steps:
        recipe.cfg = dataclasses.replace(recipe.cfg, stage1=[f"steps={stage1_steps}"])
    if smoke:
        small = ["steps=2", "batch=2"]
        recipe.cfg = dataclasses.replace(recipe.cfg, stage1=small, stage2=small, stage3=small, sft=small)
    extra = extra or []  # e.g. lm.heard_encoder=128: the same setting on every LM stage
    recipe.cfg = dataclasses.replace(recipe.cfg, **{k: getattr(recipe.cfg, k) + extra
                                                    for k in ("stage1", "stage2", "stage3", "sft")})
    # e.g. lm.heard_reading=true, which stage 1 cannot have: settings of stage 3 and SFT only
    recipe.cfg = dataclasses.replace(recipe.cfg, **{k: getattr(recipe.cfg, k) + (late_extra or [])
                                                    for k in ("stage3", "sft")})
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    summary: dict = {"device": device, "torch": torch.__version__, "stage1": recipe.cfg.stage1}
    lm, tokens = work / "lm", work / "tokens" / "tokens.jsonl"

    # stage 1, its hearing (unseen voices + phrasings; unseen sentences in training voices), then the model home
    recipe.run(until="stage1")
    for source in ("queries", "hearing"):
        summary[f"probe_stage1_{source}"] = probe(lm / "stage1" / "model", bundle, tokens,
                                                  out / f"probe_stage1_{source}.json", source)
    s1 = work / "ship_stage1"
    save_half(lm / "stage1" / "model", s1 / "stage1_fp16")
    shutil.copy2(lm / "stage1" / "metrics.jsonl", s1 / "metrics_stage1.jsonl")
    send(s1, out, "stage1", summary)

    # stages 2, 3 and SFT: the SFT model whole (DPO continues from it), stage 3 as the merge's base
    log = recipe.run(until="sft")
    summary["recipe_wall_s"] = {k: log["wall_s"].get(k) for k in ("stage1", "stage2", "stage3", "sft")}
    ship = work / "ship"
    save_half(lm / "stage3" / "model", ship / "stage3_fp16")  # the merge's base: half precision is plenty
    shutil.copytree(lm / "sft" / "model", ship / "sft")
    for stage in ("stage2", "stage3", "sft"):
        shutil.copy2(lm / stage / "metrics.jsonl", ship / f"metrics_{stage}.jsonl")
    send(ship, out, "recipe", summary)

    # a longer stage 1 while time is left: steps sized by the rate stage 1 just ran at
    from aqaa.train.lm import stage_config, train_stage

    rate = stage_config("stage1", "default", recipe.cfg.stage1).steps / max(1e-6, summary["recipe_wall_s"]["stage1"])
    left = budget_s - (time.perf_counter() - t_start) - 60  # the probe and packing after it
    steps = 2 if smoke else min(long_steps, int(rate * left) // 100 * 100)
    if long_steps and steps >= (2 if smoke else 2500):
        cfg = stage_config("stage1", "default", [f"steps={steps}", f"linguistic_init={work / 'tokenizer'}"] +
                           (["batch=2"] if smoke else []) + extra)
        t0 = time.perf_counter()
        train_stage(cfg, bundle / "data", tokens, work / "long")
        summary["long_stage1"] = {"steps": steps, "wall_s": round(time.perf_counter() - t0, 1),
                                  "probe": probe(work / "long" / "stage1" / "model", bundle, tokens,
                                                 out / "probe_long.json")}
        long_ship = work / "long_ship"
        save_half(work / "long" / "stage1" / "model", long_ship / "long_stage1_fp16")
        shutil.copy2(work / "long" / "stage1" / "metrics.jsonl", long_ship / "metrics_long.jsonl")
        send(long_ship, out, "long", summary)
    summary["total_s"] = round(time.perf_counter() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, required=True)
    p.add_argument("--tokens", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget-s", type=float, default=480)
    r.add_argument("--long-steps", type=int, default=8000)
    r.add_argument("--stage1-steps", type=int, default=0, help="stage 1 steps (default: the recipe's)")
    r.add_argument("--smoke", action="store_true")
    r.add_argument("--extra", nargs="*", default=[], help="key=value for every LM stage (e.g. lm.heard_encoder=128)")
    r.add_argument("--late-extra", nargs="*", default=[], help="key=value for stage 3 and SFT only "
                   "(e.g. lm.heard_reading=true)")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.data, a.tokenizer, a.tokens, a.out)
    else:
        run(a.bundle, a.work, a.out, a.budget_s, a.smoke, a.long_steps, a.stage1_steps, a.extra, a.late_extra)


if __name__ == "__main__":
    main()
