from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """A real spoken sentence (Piper joe, 16 kHz), ~2 s."""
    from aqaa.data.voices import Style, synthesize

    return synthesize("joe", "What is the capital of Japan?", Style())
