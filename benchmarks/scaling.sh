#!/usr/bin/env bash
# Distributed training throughput on this machine: the same config trained
# by 1 and by 2 processes (charrnn launch), each process with one thread and
# the same per-process batch, and for context 1 process with every core.
# Prints the chars/s each run reports (all ranks together) and the speed-up.
#
#   benchmarks/scaling.sh [CONFIG]     (STEPS=30, DATA=data/moby-dick.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/default.json}
steps=${STEPS:-30}
data=${DATA:-data/moby-dick.txt}
[ -x build/charrnn ] || { echo "error: build first (scripts/test.sh or cmake --build build)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $config on $data, $steps steps"

run() {  # NAME THREADS NPROC
  local log="$out/$1.log"
  CHARRNN_THREADS=$2 ./build/charrnn launch --nproc "$3" -- train --config "$config" \
    --set data.path="$data" --set train.steps="$steps" --set train.eval_every=1000000 \
    --set train.eval_max_chars=4096 --set train.checkpoint="$out/$1/model.pt" > "$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
  sed -n 's/^done: .* s, \([0-9.]*\) chars\/s.*/\1/p' "$log"
}
one=$(run one_process_one_thread 1 1)
two=$(run two_processes_one_thread_each 1 2)
all=$(run one_process_all_cores "$(nproc)" 1)
printf '%-40s %10s chars/s\n' "1 process, 1 thread" "$one" "2 processes, 1 thread each" "$two" \
  "1 process, $(nproc) threads (the default)" "$all"
awk -v a="$one" -v b="$two" 'BEGIN { printf "speed-up of 2 processes over 1: %.2fx\n", b / a }'
