#!/usr/bin/env bash
# Runs the benchmark programs built under BUILD_DIR/tests/bench and prints their figures.
#   tests/bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build-release}
type=$(grep -E '^CMAKE_BUILD_TYPE:' "$build/CMakeCache.txt" | cut -d= -f2)
echo "benchmarks: build $build ($type), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
[ "$type" = Release ] || echo "warning: not a Release build; figures are not comparable"
b="$build/tests/bench"
echo "== bench_admin_http"; "$b/bench_admin_http"
echo "== bench_gossip_sim (1,000 nodes, virtual time)"
"$b/bench_gossip_sim" --nodes 1000 --loss 0 --settle 60 --observe 40
"$b/bench_gossip_sim" --nodes 1000 --loss 0.1 --settle 60 --observe 40
echo "== bench_gossip_processes (50 real meshd)"; "$b/bench_gossip_processes" --nodes 50 --repeat 3
echo "== bench_serf_processes (50 real meshd)"; "$b/bench_serf_processes" --nodes 50 --events 30 --queries 30
echo "== bench_catalog_processes (50 real meshd)"; "$b/bench_catalog_processes" --nodes 50 --changes 20
echo "== bench_catalog_sim (10,000 nodes, virtual time)"; "$b/bench_catalog_sim" --nodes 10000 --instances 10 --change 0.01
echo "== bench_policy_processes (50 real meshd)"; "$b/bench_policy_processes" --nodes 50 --publishes 20
echo "== bench_policy_sim (10,000 nodes, virtual time)"
"$b/bench_policy_sim" --nodes 10000 --documents 100 --loss 0
"$b/bench_policy_sim" --nodes 10000 --documents 100 --loss 0.1
echo "== bench_proxy (meshd pair vs HAProxy and nginx pairs, TLS between, 1 kB responses)"
"$b/bench_proxy" --seconds 10 --max-requests 150000 --svg "$build/proxy-bench-http1.svg"
echo "== bench_proxy --compare-policy (bare meshd vs a 20-rule Route and every traffic filter)"
"$b/bench_proxy" --compare-policy --seconds 10 --max-requests 150000
echo "== bench_policy_micro (each traffic filter's cost per request, in-process)"; "$b/bench_policy_micro"
echo "== bench_ratelimit_mesh (a mesh-wide rate limit over 5 and 20 real meshd)"
"$b/bench_ratelimit_mesh" --nodes 5,20 --seconds 20
