"""Reading token files for `aqaa detokenize` and finding the shipped vocoder."""

from __future__ import annotations

import json
from pathlib import Path

from aqaa.errors import AqaaInputError
from aqaa.tokenizer.interleave import deinterleave
from aqaa.vocoder.model import TokenVocoder

DEFAULT_VOCODER = Path(__file__).resolve().parent.parent / "assets" / "default" / "vocoder"


def load_default_vocoder(folder: str | Path | None = None) -> TokenVocoder:
    if folder is None and not DEFAULT_VOCODER.is_dir():
        raise AqaaInputError("no vocoder is shipped yet: train one (`aqaa train vocoder`) and pass --vocoder DIR")
    return TokenVocoder.load(folder or DEFAULT_VOCODER)


def read_tokens_json(path: str | Path) -> tuple[list[int], list[int], float | None]:
    """SPEC token JSON: `linguistic` + `semantic` lists (or only `interleaved`), optional `duration_s`."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AqaaInputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AqaaInputError(f"{path}: not a token JSON file ({err})") from None
    if not isinstance(d, dict):
        raise AqaaInputError(f"{path}: expected a JSON object with linguistic/semantic tokens")
    try:
        if "linguistic" in d and "semantic" in d:
            lin, sem = [int(x) for x in d["linguistic"]], [int(x) for x in d["semantic"]]
        elif "interleaved" in d:
            lin, sem = deinterleave(d["interleaved"])
        else:
            raise AqaaInputError(f"{path}: needs `linguistic` and `semantic` (or `interleaved`) token lists")
    except (TypeError, ValueError) as err:
        raise AqaaInputError(f"{path}: bad token lists ({err})") from None
    if not lin or len(lin) % 2 or len(sem) != len(lin) // 2 * 3:
        raise AqaaInputError(f"{path}: {len(lin)} linguistic / {len(sem)} semantic tokens are not whole 120 ms groups")
    duration = d.get("duration_s")
    return lin, sem, float(duration) if duration is not None else None
