#!/usr/bin/env bash
# Builds the one-folder app bundle dist/imd-app/ with PyInstaller, then smoke-tests it.
# Usage: bash scripts/build_app.sh   (after `bash scripts/setup.sh --dev`)
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller build.spec
echo "bundle size: $(du -sh dist/imd-app | cut -f1)"
dist/imd-app/imd-app --version
QT_QPA_PLATFORM=offscreen dist/imd-app/imd-app --self-test
