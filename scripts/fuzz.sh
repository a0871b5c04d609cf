#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan into
# build-fuzz/, seeds them, runs each for FUZZ_SECONDS and prints what each did.
# Not part of CI: a useful run takes minutes per target.
#
# Usage: FUZZ_SECONDS=120 scripts/fuzz.sh [TARGET...]
#   TARGET: config, utf8_vocab, completion_request, checkpoint,
#   checkpoint_archives (default: all, one after another; checkpoint_archives
#   also fuzzes LibTorch's own loader)
# Crash reproducers land in build-fuzz/artifacts/; replay one with
#   build-fuzz/fuzz/fuzz_TARGET build-fuzz/artifacts/FILE
# (checkpoint_archives: CHARRNN_FUZZ_ARCHIVES=1 build-fuzz/fuzz/fuzz_checkpoint FILE;
# CHARRNN_FUZZ_VERBOSE=1 also prints the expected errors).
# The corpus each target grows is kept in build-fuzz/corpus/TARGET, so a later
# run starts where this one stopped. Exits 1 when any target found a bug in
# charrnn (crashes inside LibTorch's loader are listed, not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

FUZZ_SECONDS=${FUZZ_SECONDS:-120}
JOBS=${JOBS:-$(nproc)}
BUILD=build-fuzz
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(config utf8_vocab completion_request checkpoint checkpoint_archives)

apt_ensure "${BUILD_PACKAGES[@]}" clang libclang-rt-14-dev

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCHARRNN_BUILD_FUZZERS=ON -DCHARRNN_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target fuzz_config fuzz_utf8_vocab fuzz_completion_request \
  fuzz_checkpoint fuzz_seed_checkpoints

# Seeds are regenerated on every run (they are small and cheap); the corpus
# is not. Nothing here comes from an outside text corpus.
SEEDS=$BUILD/seeds
rm -rf "$SEEDS"
mkdir -p "$SEEDS"/{config,utf8_vocab,completion_request,checkpoint,checkpoint_archives} "$BUILD"/artifacts "$BUILD"/logs
for t in config utf8_vocab completion_request checkpoint checkpoint_archives; do mkdir -p "$BUILD/corpus/$t"; done

# config: the shipped configs, some with --set lines after a NUL byte.
for f in configs/*.json; do
  cp "$f" "$SEEDS/config/$(basename "$f")"
  { cat "$f"; printf '\0model.hidden_size=8\ntrain.device=cpu\nsample.prime=caf\xc3\xa9'; } \
    >"$SEEDS/config/$(basename "$f" .json)-set"
done
printf '{}' >"$SEEDS/config/empty"
printf '{"model": {"cell": "gru", "num_layers": 3}, "train": {"steps": 2e3}}' >"$SEEDS/config/partial"
printf '{}\0data.val_fraction=0\ntrain.seed=-1\nsample.top_k=5' >"$SEEDS/config/set-only"

# utf8_vocab: short strings of each UTF-8 length, plus the invalid forms the
# decoder must reject (overlong, surrogate, above U+10FFFF, cut, stray bytes).
u=$SEEDS/utf8_vocab
printf 'hello world' >"$u/ascii"
printf 'caf\xc3\xa9 na\xc3\xafve' >"$u/two-byte"
printf '\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe2\x82\xac' >"$u/three-byte"
printf 'smile \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf' >"$u/four-byte"
printf '\xef\xbb\xbfbom\n\ttab\r\n' >"$u/bom-and-controls"
printf '\xc0\xaf' >"$u/overlong"
printf '\xed\xa0\x80' >"$u/surrogate"
printf '\xf4\x90\x80\x80' >"$u/above-max"
printf 'cut \xe6\x97' >"$u/truncated"
printf '\x80\xbf\xfe\xff' >"$u/stray"
printf 'h\x00\x00\x00\xe9\x00\x00\x00\x00\xd8\x00\x00' >"$u/code-points"

# completion_request: /v1/completions bodies for the target's vocabulary
# ("hello world. bad cord-\n" plus é and ’): every field, list prompts and
# stop lists, characters that fold (' – … a no-break space, a zero-width
# space, a soft hyphen, e + U+0301, \r\n), numbers at the edges of the types
# and limits, nested values and duplicated keys.
c=$SEEDS/completion_request
printf '{"prompt": "hello"}' >"$c/minimal"
printf '{"model": "m", "prompt": "hello", "max_tokens": 40, "temperature": 2, "top_p": 1, "top_k": 0,
  "n": 6, "stop": ["\\n", "lo"], "seed": 18446744073709551615, "stream": true, "echo": true, "user": "u",
  "logprobs": 0}' >"$c/every-field"
printf '{"prompt": ["hello", "world", "bad"], "n": 2, "stop": "o", "max_tokens": 0, "seed": 0}' >"$c/list-prompts"
printf '{"prompt": "cold", "stop": ["", "a", "b\\u00e9", "\\u2019"], "stream": false}' >"$c/stop-list"
printf '{"prompt": "hello", "echo": true, "logprobs": null, "user": null, "model": null}' >"$c/echo-nulls"
printf '{"prompt": "hello", "echo": false, "logprobs": 5}' >"$c/logprobs"
printf '{"prompt": ["he'"'"'ll", "a \xe2\x80\x93 b"], "temperature": 0.5}' >"$c/fold-quote-dash"
printf '{"prompt": ["e\xcc\x81", "\xc2\xa0a\xe2\x80\x8bb", "\\r\\nd\xc2\xad", "\\u2018bad\\u2019"]}' >"$c/fold-marks"
printf '{"prompt": ["w\xe2\x80\xa6", "ol\xc3\xa8"]}' >"$c/fold-ellipsis-accent"
printf '{"prompt": "a", "max_tokens": 0, "temperature": 0, "top_k": 9223372036854775807, "top_p": 1e-308,
  "seed": -1, "n": 9223372036854775807}' >"$c/edges-accepted"
printf '{"prompt": "a", "max_tokens": 18446744073709551615, "temperature": 1e308, "top_k": -1, "top_p": 0,
  "n": 9223372036854775808, "seed": 1.5}' >"$c/edges-refused"
printf '{"prompt": {"prompt": "a"}, "stop": [["a"]], "user": {"x": [1, {}]}, "n": [1]}' >"$c/nested"
printf '{"prompt": "a", "prompt": ["b", "c"], "n": 1, "n": 3, "stop": "x", "stop": null}' >"$c/duplicated-keys"
# The JSON dictionary with the request's fields and characters that fold.
cat fuzz/json.dict fuzz/completion_request.dict >"$BUILD/completion_request.dict"

# checkpoint: real, tiny checkpoints written by the library itself;
# checkpoint_archives: the model archives inside them.
"$BUILD"/fuzz/fuzz_seed_checkpoints "$SEEDS/checkpoint" "$SEEDS/checkpoint_archives"

# LibTorch leaks on malformed archives; fuzz/lsan.supp says why and what is
# still reported. Stack traces for UBSan reports, which are fatal here
# (-fno-sanitize-recover).
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1"

# where_it_crashed ARTIFACT: replays a checkpoint_archives crash and prints
# "LibTorch: ..." or "charrnn: ..." with the kind of crash and the first
# stack frame outside the sanitizers, libFuzzer, libc and the allocator.
where_it_crashed() {
  local out kind frames frame
  out=$(CHARRNN_FUZZ_ARCHIVES=1 timeout 60 "$BUILD/fuzz/fuzz_checkpoint" "$1" 2>&1 || true)
  kind=$(grep -m1 -oE 'ERROR: [A-Za-z]+: [A-Za-z -]+|runtime error: .{0,60}|^fuzz_checkpoint: .{0,80}' <<<"$out" ||
    echo "no crash on replay")
  # the first frame that names a function, else the first frame
  frames=$( (grep -E '^ +#[0-9]+ ' <<<"$out" || true) |
    grep -vE 'operator new|malloc|realloc|__interceptor|__sanitizer|libc\.so|fuzzer::|abort|raise|pthread_kill|finding' |
    sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ +//; s/ \(BuildId.*//')
  frame=$( (grep -m1 '^in ' <<<"$frames" || head -1 <<<"$frames") | cut -c1-160)
  kind=$(sed -E 's/ +$//' <<<"$kind")
  [[ $frame == in\ * ]] || frame="at ${frame:-?}"
  if grep -qE 'libtorch|libc10' <<<"$frame"; then echo "LibTorch: $kind $frame"; else echo "charrnn: $kind $frame"; fi
}

found=0
summary=()
for t in "${TARGETS[@]}"; do
  bin=$BUILD/fuzz/fuzz_$t
  env=()
  mode=()
  case $t in
    checkpoint_archives)
      # The same target fed bare model archives inside a valid checkpoint,
      # so every input reaches LibTorch's loader, which is known to crash on
      # crafted archives (docs/robustness.md). Fork mode goes on after a
      # crash, and each crash is then sorted by where it happened.
      bin=$BUILD/fuzz/fuzz_checkpoint
      env=(CHARRNN_FUZZ_ARCHIVES=1)
      mode=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
      ;;
  esac
  seeds=$SEEDS/$t
  log=$BUILD/logs/$t.log
  [ -x "$bin" ] || { echo "error: no fuzz target $t" >&2; exit 2; }
  opts=()
  case $t in
    config | checkpoint) opts=(-dict=fuzz/json.dict) ;;
    completion_request) opts=(-dict="$BUILD/completion_request.dict") ;;
  esac
  # A real checkpoint is 6-30 KB, and its archives are only reached whole:
  # let mutants be that long from the start, instead of libFuzzer's default
  # of growing the length limit slowly from a few bytes (which, in fork mode,
  # restarts with every job and never gets there).
  case $t in checkpoint*) opts+=(-max_len=32768 -len_control=0) ;; esac
  echo "== fuzz_$t for ${FUZZ_SECONDS}s (log: $log)"
  before=$(ls "$BUILD/artifacts")
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb (and with it
  # the malloc limit): a parser that allocates 2 GiB on a small input is a finding.
  set +e
  env "${env[@]}" "$bin" "$BUILD/corpus/$t" "$seeds" "${opts[@]}" "${mode[@]}" -max_total_time="$FUZZ_SECONDS" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" >"$log" 2>&1
  rc=$?
  set -e
  corpus=$(ls "$BUILD/corpus/$t" | wc -l)
  if [ ${#mode[@]} -eq 0 ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  else  # fork mode prints "#RUNS: cov: ... time: SECONDS"
    runs=$( (grep -a -oE '^#[0-9]+:' "$log" || true) | tail -1 | tr -d '#:')
    speed=$([ -n "$runs" ] && echo $((runs / FUZZ_SECONDS)) || true)
  fi
  if [ ${#mode[@]} -ne 0 ]; then
    new=$(comm -13 <(echo "$before") <(ls "$BUILD/artifacts"))
    result="$(wc -w <<<"$new") crash input(s)"
    if [ -n "$new" ]; then
      sorted=$(for a in $new; do where_it_crashed "$BUILD/artifacts/$a"; done | sort | uniq -c)
      result="$result, by place:"$'\n'"$sorted"
      grep -q ' charrnn: ' <<<"$sorted" && found=1
    fi
  elif [ $rc -eq 0 ]; then
    result="nothing found"
  else
    found=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FOUND (exit $rc): $(grep -a -m1 -E 'ERROR: |runtime error|^fuzz_[a-z0-9_]*: ' "$log" || echo see log)"
    [ -n "$artifact" ] && result="$result; reproducer: $artifact"
  fi
  summary+=("fuzz_$t: ${FUZZ_SECONDS}s, ${runs:-?} executions, ${speed:-?} exec/s, corpus ${corpus} inputs; $result")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $found
