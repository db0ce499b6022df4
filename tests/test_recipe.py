"""`aqaa recipe --preset tiny` from nothing to an evaluated model through the real CLI, then a re-run skips
every stage."""

from __future__ import annotations

import json
import subprocess
import sys

import torch


def test_tiny_recipe_runs_end_to_end_and_skips_when_done(tmp_path):
    cmd = [sys.executable, "-m", "aqaa.cli", "recipe", "--preset", "tiny", "--out", str(tmp_path / "r")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    states = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(states.values()) == {"done"}, states
    assert (tmp_path / "r/model/aqaa.json").exists() and (tmp_path / "r/eval/report.md").exists()
    # both SFT rounds start from the first SFT's model
    for k in (2, 3):
        folder = tmp_path / f"r/lm/sft_round{k}/sft"
        assert json.loads((folder / "config.json").read_text())["init"].endswith("lm/sft/model")
        assert (folder / "done.json").exists()
    # DPO and merge start from the soup: the first SFT model moved sft_soup of the way toward the rounds' average
    from safetensors.torch import load_file

    first, r2, r3, soup = (load_file(tmp_path / f"r/lm/{d}/model/model.safetensors")
                           for d in ("sft", "sft_round2/sft", "sft_round3/sft", "sft_soup"))
    for k in first:
        assert torch.allclose(soup[k], first[k] + 0.5 * ((r2[k] + r3[k]) / 2 - first[k]), atol=1e-6), k
    assert any(not torch.equal(r2[k], r3[k]) for k in first)
    log = json.loads((tmp_path / "r/recipe.json").read_text())
    assert set(log["wall_s"]) == set(states)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads((tmp_path / "r/recipe.json").read_text())["wall_s"] == log["wall_s"]

    # an existing codec (tokenizer + vocoder) is copied, not trained; the codec comes before the LM stages
    codec = tmp_path / "codec"
    codec.mkdir()
    (codec / "tokenizer").symlink_to(tmp_path / "r/tokenizer")
    (codec / "vocoder").symlink_to(tmp_path / "r/vocoder_round2/model")
    base = [sys.executable, "-m", "aqaa.cli", "recipe", "--preset", "tiny", "--out", str(tmp_path / "r2"),
            "--data", str(tmp_path / "r/data")]
    bad = subprocess.run(base + ["--codec", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not a codec folder" in bad.stderr and "Traceback" not in bad.stderr
    reuse = subprocess.run(base + ["--codec", str(codec), "--until", "vocoder"], capture_output=True, text=True,
                           timeout=300)
    assert reuse.returncode == 0, reuse.stderr[-3000:]
    states = json.loads(reuse.stdout.strip().splitlines()[-1])
    assert [s for s, state in states.items() if state == "done"] == ["data", "tokenizer", "tokens", "vocoder"]
    for rel in ("tokenizer/tokenizer.json", "vocoder_round2/model/vocoder.json"):
        assert (tmp_path / "r2" / rel).read_bytes() == (tmp_path / "r" / rel).read_bytes()
    assert json.loads((tmp_path / "r2/recipe.json").read_text())["codec"] == str(codec)


def test_every_named_recipe_has_valid_stage_settings():
    """A typo in a preset's overrides fails here, not an hour into a run."""
    from aqaa.train.lm import STAGES, stage_config
    from aqaa.train.recipe import RECIPES

    for name, recipe in RECIPES.items():
        for stage in STAGES:
            stage_config(stage, recipe.lm_preset, list(getattr(recipe, stage)))
        for overrides in recipe.sft_rounds:
            stage_config("sft", recipe.lm_preset, list(overrides))
    smol = RECIPES["smollm2"]  # the GPU preset: every stage and round trains the same LoRA delta over SmolLM2
    for cfg in [stage_config(s, "smollm2", getattr(smol, s)) for s in STAGES] + \
            [stage_config("sft", "smollm2", r) for r in smol.sft_rounds]:
        assert (cfg.lm.pretrained, cfg.lm.lora_rank) == ("smollm2", 32)
    assert [r[:2] for r in smol.sft_rounds] == [r[:2] for r in RECIPES["default"].sft_rounds]
    assert not smol.linguistic_init  # centroid-seeded rows start the pretrained backbone 8 nats worse
    heard = stage_config("stage1", "default", RECIPES["heard"].stage1)
    assert (heard.lm.heard_encoder, heard.lm.heard_residual, heard.heard_ctc_warmup) == (128, "linguistic", 1000)
    assert stage_config("stage1", "default", RECIPES["default"].stage1).lm.heard_encoder == 0
    sft = stage_config("sft", "default", RECIPES["heard-read"].sft)
    assert (sft.lm.heard_reading, sft.heard_hide, sft.mix["typed"]) == (True, 0.5, 0.25)
    frozen = {stage: stage_config(stage, "default", getattr(RECIPES["heard-frozen"], stage)) for stage in STAGES}
    assert [frozen[s].lm.heard_reader for s in STAGES] == [False, True, True, True]  # copied when stage 2 starts
    assert frozen["sft"].lm.heard_reading and frozen["stage1"].steps == 5100
    recall = stage_config("sft", "default", RECIPES["heard-recall"].sft)
    assert recall.steps == 500 and recall.lm.heard_reader and recall.mix["recall"] == 0.25
    assert abs(sum(recall.mix.values()) - 1.0) < 1e-9 and RECIPES["heard-recall"].stage3 == RECIPES["heard-frozen"].stage3


def test_data_made_by_an_older_synth_is_made_again(tmp_path):
    """Data and token stages count as done only for the current data version (version 2 added plain requests)."""
    from aqaa.data.synth import SYNTH_VERSION
    from aqaa.train.recipe import RECIPES, Recipe

    cfg = RECIPES["tiny"]
    recipe = Recipe("tiny", tmp_path / "r", data=tmp_path / "d")
    (tmp_path / "d").mkdir()
    (tmp_path / "r/tokens").mkdir(parents=True)
    made = {"n": cfg.n, "hearing": cfg.hearing}
    for version, expected in ((None, False), (SYNTH_VERSION, True)):
        extra = {} if version is None else {"version": version}
        (tmp_path / "d/synth.json").write_text(json.dumps(made | extra))
        (tmp_path / "r/tokens/done.json").write_text(json.dumps({"complete": True, **made, **extra}))
        assert recipe.done("data") is expected and recipe.done("tokens") is expected
    made |= {"version": SYNTH_VERSION, "answers": True}  # rendered with the answers the preset does not ask for
    (tmp_path / "d/synth.json").write_text(json.dumps(made))
    (tmp_path / "r/tokens/done.json").write_text(json.dumps({"complete": True, **made}))
    assert not recipe.done("data") and not recipe.done("tokens")
