#!/usr/bin/env bash
# Installs charrnn into a temporary prefix, builds tests/consumer against it
# with find_package(charrnn), and checks that the consumer generates the same
# text as the installed `charrnn generate`, from a checkpoint and an export.
#   check_consumer.sh BUILD_DIR SOURCE_DIR WORK_DIR TORCH_DIR
set -euo pipefail
build=$1 src=$2 work=$3 torch_dir=$4
rm -rf "$work"
mkdir -p "$work"
# the steps below write their output to logs; a failing step shows them all
trap 'for log in "$work"/*.log; do echo "== $log"; tail -n 40 "$log"; done' ERR
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
test -f "$work/prefix/lib/cmake/charrnn/charrnnConfig.cmake"
test -f "$work/prefix/include/charrnn/charrnn.h"
cmake -S "$src/tests/consumer" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DTorch_DIR="$torch_dir" >"$work/configure.log"
cmake --build "$work/build" -j2 >"$work/build.log"

charrnn="$work/prefix/bin/charrnn"
for i in $(seq 400); do echo "the sea and the ship sailed north into the night $i"; done >"$work/corpus.txt"
"$charrnn" train --config "$src/configs/tiny.json" --set "data.path=$work/corpus.txt" \
  --set "train.checkpoint=$work/model.pt" --set train.steps=20 --set train.device=cpu 2>"$work/train.log"
"$charrnn" export --checkpoint "$work/model.pt" --out "$work/model.ts.pt" 2>/dev/null
for model in "$work/model.pt" "$work/model.ts.pt"; do
  expected=$("$charrnn" generate --checkpoint "$model" --prime "the " --length 60 --temperature 0)
  actual=$("$work/build/consumer" "$model" "the " 60)
  if [ "$expected" != "$actual" ]; then
    echo "consumer and charrnn differ for $model:"
    echo "charrnn:  $expected"
    echo "consumer: $actual"
    exit 1
  fi
done
"$work/build/consumer" "$work/missing.pt" "the " 5 2>"$work/err.txt" && exit 1
grep -q "^error: .*missing.pt" "$work/err.txt"
echo "consumer built against the installed package and generated: $actual"
