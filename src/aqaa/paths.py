"""Where aqaa keeps caches (converted weights): $AQAA_CACHE, else $XDG_CACHE_HOME/aqaa, else ~/.cache/aqaa."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def cache_dir() -> Path:
    root = os.environ.get("AQAA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "aqaa")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_dir(folder: str | Path) -> Iterator[Path]:
    """Write a folder atomically: fill the yielded temp folder; on success it replaces `folder` (the old one is
    moved aside first and removed last), so a killed writer leaves either the old folder or the new one."""
    import shutil

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
