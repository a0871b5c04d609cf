#!/usr/bin/env bash
# From a fresh Debian 12 machine to generated text: installs what is missing,
# builds, fetches the default corpus (Moby-Dick), trains configs/default.json
# (about 5 minutes on 2 cores) and prints a sample from the best checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

apt_ensure "${BUILD_PACKAGES[@]}"
build_charrnn charrnn
scripts/get-data.sh moby-dick
./build/charrnn train --config configs/default.json "$@"
echo
echo "=== sample from models/default.best.pt ==="
./build/charrnn generate --checkpoint models/default.best.pt --prime "Call me Ishmael. " --length 600 --temperature 0.7 --seed 1
