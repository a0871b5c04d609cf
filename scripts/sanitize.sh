#!/usr/bin/env bash
# Builds charrnn and its tests with AddressSanitizer and UndefinedBehaviorSanitizer
# (the "asan" preset in CMakePresets.json, into build-asan/) and runs the unit
# tests under them. Not part of CI: docs/robustness.md says what it costs.
# Usage: scripts/sanitize.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

apt_ensure "${BUILD_PACKAGES[@]}"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
# The test preset selects the unit tests and sets UBSAN_OPTIONS (and
# CHARRNN_THREADS=1, as scripts/test.sh does).
ctest --preset asan -j "$(nproc)" "$@"
