#!/usr/bin/env bash
# Creates .venv and installs IMD Studio into it. `--dev` adds the test tools.
# Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch, torchaudio and torchvision are pinned together in pyproject.toml.
.venv/bin/python -m pip install -q -e ".${extra}"
