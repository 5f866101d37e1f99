#!/usr/bin/env bash
# Builds the one-folder app bundle dist/imd-app/ with PyInstaller, then smoke-tests it.
#
# Usage: bash scripts/build_app.sh        (after `bash scripts/setup.sh --dev`)
# Environment:
#   IMD_DIST=DIR       where the bundle goes (default dist; the bundle is DIR/imd-app)
#   IMD_WORK=DIR       PyInstaller's work folder (default build/pyinstaller)
#   IMD_PYTHON=PATH    the Python whose packages are bundled (default .venv/bin/python);
#                      point it at a venv with CPU-only torch wheels for a small bundle
#   IMD_RESOURCES=DIR  resources folder for the smoke test (default: the ones in the bundle)
#   IMD_SKIP_SMOKE=1   build only
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${IMD_PYTHON:-.venv/bin/python}"
DIST="${IMD_DIST:-dist}"
WORK="${IMD_WORK:-build/pyinstaller}"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath "$WORK" build.spec
end=$(date +%s)
echo "build time: $((end - start)) s"
echo "bundle size: $(du -sh "$DIST/imd-app" | cut -f1) ($(du -sb "$DIST/imd-app" | cut -f1) bytes) in $DIST/imd-app"
if [ "${IMD_SKIP_SMOKE:-0}" = "1" ]; then
    exit 0
fi
"$DIST/imd-app/imd-app" --version
QT_QPA_PLATFORM=offscreen "$DIST/imd-app/imd-app" --self-test
