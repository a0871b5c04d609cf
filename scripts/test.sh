#!/usr/bin/env bash
# Installs what is missing (Debian 12), builds charrnn and its tests, and runs
# the whole suite through ctest. Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

apt_ensure "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
ensure_npm
build_charrnn
# Each test process uses one LibTorch thread so that two tests can share the
# two cores without their thread pools fighting.
CHARRNN_THREADS=1 ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
