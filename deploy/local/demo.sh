#!/usr/bin/env bash
# The local demo: three meshd nodes on their own loopback addresses (127.0.2.1-3 unless
# DEMO_SUBNET says otherwise), each shown with `meshcli status`, then stopped with SIGTERM.
# Stops by itself; exits non-zero if any step fails. Needs a build: MESH_BIN=build (default).
#   deploy/local/demo.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${MESH_BIN:-build}
[[ $bin = /* ]] || bin="$root/$bin"
meshd="$bin/node/meshd"
meshcli="$bin/cli/meshcli"
subnet=${DEMO_SUBNET:-127.0.2}
nodes=(alpha beta gamma)

for b in "$meshd" "$meshcli"; do
  [ -x "$b" ] || { echo "demo: $b is missing: run 'make build' first" >&2; exit 1; }
done

work=$(mktemp -d /tmp/mesh-demo-XXXXXX)
pids=()
cleanup() {
  # Whatever happened, leave no node running.
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting ${#nodes[@]} meshd nodes on $subnet.1-${#nodes[@]} (logs in $work)"
for i in "${!nodes[@]}"; do
  n=$((i + 1)); name=${nodes[$i]}; addr="$subnet.$n"
  "$meshd" --node-name "$name" --cluster demo --bind "$addr:7946" --admin "$addr:15000" \
    --data-dir "$work/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
  echo "  $name: pid $! gossip $addr:7946 admin $addr:15000"
done

for i in "${!nodes[@]}"; do
  addr="$subnet.$((i + 1))"
  for _ in $(seq 100); do
    curl -fsS "http://$addr:15000/healthz" >/dev/null 2>&1 && break
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "demo: ${nodes[$i]} exited:"; cat "$work/${nodes[$i]}.log"; exit 1; }
    sleep 0.05
  done
  curl -fsS "http://$addr:15000/healthz" >/dev/null
done

for i in "${!nodes[@]}"; do
  addr="$subnet.$((i + 1))"
  step "meshcli --node $addr:15000 status"
  "$meshcli" --node "$addr:15000" status
done

step "A few of ${nodes[0]}'s metrics (GET /metrics)"
curl -fsS "http://$subnet.1:15000/metrics" | grep -E '^(mesh_build_info\{|(mesh_node_uptime_seconds|process_resident_memory_bytes|process_cpu_seconds_total) )'

step "Stopping every node with SIGTERM"
for i in "${!nodes[@]}"; do kill -TERM "${pids[$i]}"; done
status=0
for i in "${!nodes[@]}"; do
  if wait "${pids[$i]}"; then
    echo "  ${nodes[$i]}: exited 0"
  else
    rc=$?; echo "  ${nodes[$i]}: exited $rc"; status=1
  fi
done
pids=()
[ $status -eq 0 ] && step "Demo finished" || step "Demo failed"
exit $status
