"""Where aqaa keeps caches (converted weights): $AQAA_CACHE, else $XDG_CACHE_HOME/aqaa, else ~/.cache/aqaa."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("AQAA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "aqaa")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
