#!/usr/bin/env bash
# Runs the linter and every test, offscreen. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
# one code style, kept by the formatter (the docs' Markdown examples are left as written)
.venv/bin/ruff format --check imd_core imd_app tests bench scripts build.spec
.venv/bin/python -m pytest "$@"
