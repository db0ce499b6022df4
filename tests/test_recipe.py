"""`aqaa recipe --preset tiny` from nothing to an evaluated model through the real CLI, then a re-run skips
every stage."""

from __future__ import annotations

import json
import subprocess
import sys


def test_tiny_recipe_runs_end_to_end_and_skips_when_done(tmp_path):
    cmd = [sys.executable, "-m", "aqaa.cli", "recipe", "--preset", "tiny", "--out", str(tmp_path / "r")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    states = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(states.values()) == {"done"}, states
    assert (tmp_path / "r/model/aqaa.json").exists() and (tmp_path / "r/eval/report.md").exists()
    log = json.loads((tmp_path / "r/recipe.json").read_text())
    assert set(log["wall_s"]) == set(states)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads((tmp_path / "r/recipe.json").read_text())["wall_s"] == log["wall_s"]


def test_every_named_recipe_has_valid_stage_settings():
    """A typo in a preset's overrides fails here, not an hour into a run."""
    from aqaa.train.lm import STAGES, stage_config
    from aqaa.train.recipe import RECIPES

    for name, recipe in RECIPES.items():
        for stage in STAGES:
            stage_config(stage, recipe.lm_preset, list(getattr(recipe, stage)))
    heard = stage_config("stage1", "default", RECIPES["heard"].stage1)
    assert (heard.lm.heard_encoder, heard.lm.heard_residual, heard.heard_ctc_warmup) == (128, "linguistic", 1000)
    assert stage_config("stage1", "default", RECIPES["default"].stage1).lm.heard_encoder == 0
