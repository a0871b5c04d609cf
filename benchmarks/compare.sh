#!/usr/bin/env bash
# Side by side, in one run, on the same corpus and config: `charrnn bench`
# and the plain PyTorch reference (benchmarks/reference.py), then the ratios.
#
#   benchmarks/compare.sh [CONFIG] [KEY=VALUE]...   (each KEY=VALUE is passed on as --set KEY=VALUE)
#
# Defaults to configs/lstm.json (LSTM 2x256, embedding 64, batch 32 x 128) on
# data/moby-dick.txt. The reference runs with PyTorch's default threads and
# with every core, and the faster of the two is compared, so charrnn is
# measured against the reference at its best. Shared 2-core machines are
# noisy (20% from run to run was seen here), so the tools take turns for
# REPEATS rounds (default 3) and the medians are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/lstm.json}
[ $# -gt 0 ] && shift
sets=("$@")
set_args=()
for s in "${sets[@]}"; do set_args+=(--set "$s"); done
steps=${STEPS:-20}
# CHARRNN and PYTHON pick another build and Python, e.g. the LibTorch 2.x
# CUDA build of scripts/cuda-check.sh and the PyTorch it was built against.
charrnn=${CHARRNN:-./build/charrnn}
py=${PYTHON:-/usr/bin/python3}
[ -x "$charrnn" ] || { echo "error: build first (scripts/test.sh or cmake --build build)" >&2; exit 1; }
$py -c "import torch" 2>/dev/null || { echo "error: $py lacks torch; apt-get install python3-torch" >&2; exit 1; }

# Both tools on OpenBLAS's same kernels: charrnn names a better core where
# OpenBLAS's own choice lacks the CPU's AVX2 (runtime.h), which Python's
# torch does not; the reference gets the core charrnn runs.
blas=$("$charrnn" version | sed -n 's/^blas: //p')
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [[ $blas == "OpenBLAS "* ]]; then
  export OPENBLAS_CORETYPE=${blas#OpenBLAS }
fi
echo "blas: $blas for both tools" >&2

out=$(mktemp -d)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
command -v nvidia-smi >/dev/null && nvidia-smi -L >&2
for round in $(seq "${REPEATS:-3}"); do
  "$charrnn" bench --config "$config" "${set_args[@]}" --steps "$steps" --gen-chars 2000 >> "$out/charrnn.jsonl"
  $py benchmarks/reference.py --charrnn "$charrnn" --config "$config" "${set_args[@]}" --set "train.steps=$steps" --gen-chars 2000 >> "$out/ref_default.jsonl"
  $py benchmarks/reference.py --charrnn "$charrnn" --config "$config" "${set_args[@]}" --set "train.steps=$steps" --gen-chars 2000 --threads "$(nproc)" >> "$out/ref_all.jsonl"
done

$py - "$out" <<'PY'
import json, sys, os, statistics
d = sys.argv[1]
def load(name):
    return [json.loads(line) for line in open(os.path.join(d, name))]
def median(runs, key):
    return statistics.median(run[key] for run in runs)
c_runs, refs = load("charrnn.jsonl"), [load("ref_default.jsonl"), load("ref_all.jsonl")]
def best_ref(key):
    return max(median(runs, key) for runs in refs)
print(f"medians of {len(c_runs)} interleaved rounds; charrnn on {c_runs[0]['device']} ({c_runs[0].get('precision', 'fp32')}), "
      f"the reference on {refs[0][0].get('device', 'cpu')} ({refs[0][0].get('precision', 'fp32')}), torch {refs[0][0]['torch']}")
print(f"{'':28}{'charrnn':>12}{'pytorch':>12}{'ratio':>8}")
for name, key in [("train chars/s", "train_chars_per_s"), ("generate chars/s (1 stream)", "gen_chars_per_s"),
                  ("eval chars/s", "eval_chars_per_s")]:
    a, b = median(c_runs, key), best_ref(key)
    print(f"{name:28}{a:12.0f}{b:12.0f}{a / b:8.2f}")
single, batch = median(c_runs, "gen_chars_per_s"), median(c_runs, "gen_batch_chars_per_s")
print(f"batched generation, {c_runs[0]['gen_batch_streams']} streams: {batch:.0f} chars/s = {batch / single:.1f}x single-stream charrnn")
tg, sg = median(c_runs, "train_gflops"), median(c_runs, "sgemm_gflops")
print(f"train {tg:.1f} GFLOP/s = {100 * tg / sg:.0f}% of sgemm {sg:.1f} GFLOP/s")
print("reference train chars/s by threads: " + ", ".join(
    f"{runs[0]['threads']} -> {median(runs, 'train_chars_per_s'):.0f}" for runs in refs))
print("charrnn train chars/s per round: " + ", ".join(f"{r['train_chars_per_s']:.0f}" for r in c_runs))
print("reference (default threads) per round: " + ", ".join(f"{r['train_chars_per_s']:.0f}" for r in refs[0]))
PY
rm -rf "$out"
