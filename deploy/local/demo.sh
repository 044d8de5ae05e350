#!/usr/bin/env bash
# The local demo: three meshd nodes on their own loopback addresses (127.0.2.1-3 unless
# DEMO_SUBNET says otherwise) form one gossip cluster with encryption on, each shown with
# `meshcli status`; a user event and a query go to every member; a service registered on one
# node reaches every catalog; signed policy reaches every node; a request crosses two proxies
# over mTLS (node identities from `meshcli ca init` / `cert issue`); then one node is killed to
# show failure detection (its instances are marked at once), and one leaves gracefully; the rest
# stop with SIGTERM.
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
helpers=()  # processes that are not nodes (the demo's app)
cleanup() {
  # Whatever happened, leave no node or helper running.
  for pid in "${pids[@]}" "${helpers[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A gossip key, as `serf keygen` makes them: 32 random bytes, base64.
key=$(head -c 32 /dev/urandom | base64)
# The operator's policy signing key: nodes trust its public half.
"$meshcli" keygen --out "$work/operator" >/dev/null
step "A trust domain (meshcli ca init) and a certificate for each node (meshcli cert issue)"
"$meshcli" ca init --trust-domain demo.mesh --out "$work/ca"
for name in "${nodes[@]}"; do "$meshcli" cert issue --ca "$work/ca" --node "$name" --out "$work/$name-tls"; done
step "Starting ${#nodes[@]} meshd nodes on $subnet.1-${#nodes[@]}, encrypted gossip, proxies on :15001/:15006 (logs in $work)"
for i in "${!nodes[@]}"; do
  n=$((i + 1)); name=${nodes[$i]}; addr="$subnet.$n"
  join=(); [ "$n" -gt 1 ] && join=(--join "$subnet.1:7946")
  "$meshd" --node-name "$name" --cluster demo --bind "$addr:7946" --admin "$addr:15000" \
    --data-dir "$work/$name" --encrypt "$key" --policy-trusted-key "$work/operator.pub" --query-handler 'load=cat /proc/loadavg' \
    --tls-dir "$work/$name-tls" --outbound "$addr:15001" --inbound "$addr:15006" --workers 1 "${join[@]}" >"$work/$name.log" 2>&1 &
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

members_alive() { curl -fsS "http://$1:15000/v1/members" | grep -c '"state": "alive"' || true; }
state_of() { "$meshcli" --node "$1:15000" members | awk -v n="$2" '$1 == n {print $3}'; }
wait_for() {  # wait_for SECONDS COMMAND...: polls until the command succeeds
  local until=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $until ] || return 1; sleep 0.1; done
}
all_joined() { for i in "${!nodes[@]}"; do [ "$(members_alive "$subnet.$((i + 1))")" = "${#nodes[@]}" ] || return 1; done; }
wait_for 15 all_joined || { echo "demo: the nodes did not form one cluster"; exit 1; }

step "meshcli --node $subnet.2:15000 members   (every node sees the same members)"
"$meshcli" --node "$subnet.2:15000" members

step "meshcli --node $subnet.1:15000 event deploy reviews-v2   (a user event to every member)"
"$meshcli" --node "$subnet.1:15000" event deploy reviews-v2
got_event() { curl -fsS "http://$subnet.3:15000/v1/events" | grep -q '"deploy"'; }
wait_for 5 got_event || { echo "demo: the event did not arrive"; exit 1; }
echo "  ${nodes[2]} received it:"; "$meshcli" --node "$subnet.3:15000" events

step "meshcli query load   (every member answers with its --query-handler: cat /proc/loadavg)"
"$meshcli" --node "$subnet.1:15000" query load --timeout 2s

step "Register a service on ${nodes[2]} (PUT /v1/agent/services/reviews-1): every node's catalog has it"
# The app behind it: a static page served on gamma's address.
mkdir -p "$work/reviews-app" && echo "reviews, answered by the app on ${nodes[2]}" >"$work/reviews-app/index.html"
if curl -s --max-time 1 "http://$subnet.3:9080/" >/dev/null 2>&1; then
  echo "demo: something already listens on $subnet.3:9080" >&2; exit 1
fi
python3 -m http.server 9080 --bind "$subnet.3" --directory "$work/reviews-app" >"$work/reviews-app.log" 2>&1 &
helpers+=($!)
curl -fsS -X PUT "http://$subnet.3:15000/v1/agent/services/reviews-1" \
  -d '{"name": "reviews", "port": 9080, "labels": {"version": "v2"}, "checks": [{"ttl": "1h"}]}' >/dev/null
curl -fsS -X PUT "http://$subnet.3:15000/v1/agent/checks/reviews-1:0?status=passing" -d 'ready' >/dev/null
reviews_seen() { "$meshcli" --node "$subnet.1:15000" service reviews 2>/dev/null | grep -q passing; }
wait_for 10 reviews_seen || { echo "demo: the service did not reach ${nodes[0]}"; exit 1; }
"$meshcli" --node "$subnet.1:15000" services
"$meshcli" --node "$subnet.1:15000" service reviews

step "Signed policy: validate, sign and publish a Route and its DestinationPolicy; wait until every node holds them"
cat >"$work/reviews.yaml" <<'YAML'
kind: DestinationPolicy
metadata: {name: reviews}
spec:
  service: reviews
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
    - match: [{headers: {x-user: {exact: tester}}}]
      route: [{destination: {service: reviews, subset: v2}}]
    - route:
        - {destination: {service: reviews, subset: v1}, weight: 90}
        - {destination: {service: reviews, subset: v2}, weight: 10}
      timeout: 2s
      retries: {attempts: 2, retryOn: [5xx, connect-failure]}
YAML
"$meshcli" policy validate "$work/reviews.yaml"
"$meshcli" --node "$subnet.2:15000" policy publish "$work/reviews.yaml" --key "$work/operator.key" --wait
for i in "${!nodes[@]}"; do
  echo "  ${nodes[$i]}: $("$meshcli" --node "$subnet.$((i + 1)):15000" policy list | awk '$1 == "Route" {print $1 "/" $2 " version " $3 " digest " $4}')"
done
"$meshcli" --node "$subnet.1:15000" policy status Route/reviews
echo "  A document signed by a key the nodes do not trust is refused:"
"$meshcli" keygen --out "$work/intruder" >/dev/null
if "$meshcli" --node "$subnet.3:15000" policy publish "$work/reviews.yaml" --key "$work/intruder.key"; then
  echo "demo: an untrusted signature was accepted"; exit 1
fi

step "A request through the mesh: app -> ${nodes[0]}'s outbound listener (Host: reviews) -> mTLS -> ${nodes[2]}'s inbound -> the app"
through_mesh() { curl -fsS -H 'Host: reviews' "http://$subnet.1:15001/" 2>/dev/null | grep -q answered; }
wait_for 10 through_mesh || { echo "demo: no answer through the mesh:"; curl -sS -H 'Host: reviews' "http://$subnet.1:15001/"; cat "$work/reviews-app.log"; exit 1; }
curl -sS -H 'Host: reviews' "http://$subnet.1:15001/"
echo "  ${nodes[0]} routes reviews to: $(curl -fsS "http://$subnet.1:15000/v1/proxy" | grep -o '"via": "[^"]*"' | head -1)"
step "The same over HTTP/2: nghttp (h2c, prior knowledge) -> ${nodes[0]} -> h2 over mTLS -> ${nodes[2]} -> the HTTP/1.1 app"
nghttp -v -H ':authority: reviews' "http://$subnet.1:15001/" 2>&1 | grep -E 'recv \(stream_id=[0-9]+\) (:status|x-seen)|answered|Application protocol' || true
echo "  An unknown service gets a 503 that says so:"
curl -sS -H 'Host: ratings' "http://$subnet.1:15001/" || true
echo "  And a peer without the mesh's certificate gets nothing from ${nodes[2]}'s inbound listener:"
if curl -sk --max-time 3 "https://$subnet.3:15006/" >/dev/null 2>&1; then echo "demo: the inbound listener answered without a client certificate"; exit 1; fi
echo "  refused (TLS 1.3, client certificate required)"
curl -fsS "http://$subnet.1:15000/metrics" | grep -E '^mesh_proxy_(requests_total\{direction="outbound",service="reviews"|tls_handshakes_total\{side="client")'

step "A few of ${nodes[0]}'s metrics (GET /metrics)"
curl -fsS "http://$subnet.1:15000/metrics" | grep -E '^(mesh_build_info\{|mesh_gossip_members\{state="alive"\}|(mesh_node_uptime_seconds|process_resident_memory_bytes|process_cpu_seconds_total|mesh_gossip_probes_total) )'

step "kill -9 ${nodes[2]}: the others detect the failure (SWIM probe, then suspicion); its instances are marked at once"
kill -KILL "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
start=$SECONDS
gamma_dead() { [ "$(state_of "$subnet.1" "${nodes[2]}")" = dead ]; }
wait_for 30 gamma_dead || { echo "demo: the failure was not detected"; exit 1; }
echo "  ${nodes[0]} reports ${nodes[2]} dead after about $((SECONDS - start)) s"
"$meshcli" --node "$subnet.1:15000" members
"$meshcli" --node "$subnet.1:15000" service reviews
echo "  ${nodes[0]}'s proxy took ${nodes[2]} out of the pool at the same moment:"
curl -sS -H 'Host: reviews' "http://$subnet.1:15001/" || true

step "${nodes[1]} leaves gracefully (SIGTERM): the others record 'left', not 'dead'"
kill -TERM "${pids[1]}"
wait "${pids[1]}" && echo "  ${nodes[1]}: exited 0"
beta_left() { [ "$(state_of "$subnet.1" "${nodes[1]}")" = left ]; }
wait_for 5 beta_left || { echo "demo: the leave was not seen"; exit 1; }
"$meshcli" --node "$subnet.1:15000" members

step "Stopping ${nodes[0]} with SIGTERM"
kill -TERM "${pids[0]}"
status=0
for i in 0; do
  if wait "${pids[$i]}"; then
    echo "  ${nodes[$i]}: exited 0"
  else
    rc=$?; echo "  ${nodes[$i]}: exited $rc"; status=1
  fi
done
pids=()
[ $status -eq 0 ] && step "Demo finished" || step "Demo failed"
exit $status
