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
