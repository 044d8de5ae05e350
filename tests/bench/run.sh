#!/usr/bin/env bash
# Runs every benchmark program built under BUILD_DIR/tests/bench and prints their figures.
# Programs that need extra arguments or peers (issue-specific benchmarks) have their own
# scripts in this folder and are listed here as they land.
#   tests/bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build-release}
type=$(grep -E '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2)
echo "benchmarks: build $build ($type), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
[ "$type" = Release ] || echo "warning: not a Release build; figures are not comparable"
for b in "$build"/tests/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b"
done
