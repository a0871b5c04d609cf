#!/usr/bin/env bash
# Builds charrnn against the LibTorch inside a pip-installed PyTorch (2.x,
# usually with CUDA) and runs the test suite there, CUDA tests included.
# Debian's LibTorch 1.13 is what scripts/test.sh builds against; this is the
# second LibTorch the code must build with, and the only way to run the CUDA
# tests (CI has no GPU, so they skip there).
#
#   scripts/cuda-check.sh [build] [test] [ctest args...]
#
# Environment:
#   PYTHON        a python3 whose torch to build against (default: python3)
#   DEPS_PREFIX   extra install prefix holding nlohmann_json, cxxopts and
#                 optionally GTest, for machines without Debian's -dev packages
#   GTEST_SOURCE  googletest sources (Debian: /usr/src/googletest), built and
#                 installed into build-cuda/gtest when no GTest is found
# The build goes to build-cuda/, so it never mixes with build/.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
build=build-cuda
phases=()
while [ $# -gt 0 ] && { [ "$1" = build ] || [ "$1" = test ]; }; do phases+=("$1"); shift; done
[ ${#phases[@]} -eq 0 ] && phases=(build test)

torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
prefixes="$torch_prefix"
[ -n "${DEPS_PREFIX:-}" ] && prefixes="$prefixes;$DEPS_PREFIX"

for phase in "${phases[@]}"; do
  case $phase in
  build)
    if [ -n "${GTEST_SOURCE:-}" ]; then
      # the tests pass std::string to GoogleTest: it must use LibTorch's string ABI
      abi=$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
      cmake -S "$GTEST_SOURCE" -B "$build/gtest-build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=$abi" \
        -DCMAKE_INSTALL_PREFIX="$PWD/$build/gtest" -DBUILD_GMOCK=OFF >/dev/null
      cmake --build "$build/gtest-build" -j "$(nproc)" --target install >/dev/null
      prefixes="$prefixes;$PWD/$build/gtest"
    fi
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    # The consumer test configures a project of its own; the environment
    # variable carries the same prefixes to it.
    export CMAKE_PREFIX_PATH="${prefixes//;/:}"
    nvcc=$(command -v nvcc || true)
    [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
    cuda_args=()
    [ -n "$nvcc" ] && cuda_args=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$(dirname "$(dirname "$nvcc")")")
    echo "== configure against $torch_prefix" >&2
    cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefixes" \
      -DCHARRNN_TORCH_PYTHON="$(command -v "$python")" "${cuda_args[@]}"
    echo "== build" >&2
    cmake --build "$build" -j "$(nproc)" -- -k 0
    ;;
  test)
    export CMAKE_PREFIX_PATH="${prefixes//;/:}"
    echo "== test" >&2
    # one thread per test process, also for the tests that never call
    # configure_threads: 16 processes with 16 OpenMP threads each thrash
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    CHARRNN_THREADS=1 ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
    ;;
  esac
done
