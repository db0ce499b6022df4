#!/usr/bin/env bash
# The project's test command: install (idempotent), then the whole suite. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
