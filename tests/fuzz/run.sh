#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (ASan+UBSan) into BUILD_DIR and runs each for
# SECONDS, starting from its corpus in tests/fuzz/corpus/<name>. New inputs go to a scratch
# corpus under BUILD_DIR, not into the source tree. Prints executions per target.
#   tests/fuzz/run.sh [BUILD_DIR] [SECONDS]      (FUZZ_ONLY=name_fuzz runs one target)
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
CC=clang-14 CXX=clang++-14 cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMESH_FUZZ=ON -DMESH_BUILD_BENCH=OFF -DMESH_WERROR=OFF >/dev/null
targets=${FUZZ_ONLY:-$(cd "$src/tests/fuzz" && ls *_fuzz.cc | sed 's/\.cc$//')}
cmake --build "$build" -j "$(nproc)" --target $targets
for t in $targets; do
  name=${t%_fuzz}
  work="$build/fuzz-corpus/$name"; mkdir -p "$work"
  echo "== $t for ${seconds}s"
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 \
    "$work" "$src/tests/fuzz/corpus/$name" 2>&1 | grep -E "^(stat::|#[0-9]+ +DONE|==[0-9]+==|SUMMARY)" || true
  test "${PIPESTATUS[0]}" -eq 0
done
