#!/usr/bin/env bash
# The recurrent product's kernels side by side on one core: charrnn's tiles
# (each instruction set this CPU runs), OpenBLAS through LibTorch, libxsmm,
# BLIS and oneDNN (installed here for the comparison only). Prints the CPU
# with the figures.
#
#   benchmarks/kernels.sh [ROUNDS] [SECONDS_PER_MEASUREMENT]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
apt_ensure "${BUILD_PACKAGES[@]}" "${KERNEL_BENCH_PACKAGES[@]}"
build_charrnn charrnn_kernel_bench
lscpu | grep -E '^(Model name|Flags):' >&2
# oneDNN and BLIS use OpenMP: one thread, like each part of the batch split
OMP_NUM_THREADS=1 ./build/charrnn_kernel_bench "$@"
