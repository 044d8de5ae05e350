#!/usr/bin/env bash
# Sends a host's (or a pod's) outgoing TCP through meshd's outbound listener, as Istio's and
# Linkerd's init containers do: apps keep dialing the addresses they know (a service
# instance's address:port from the catalog, or any other), and meshd finds where they meant to
# go with SO_ORIGINAL_DST. meshd's own traffic is exempt by its user id, or it would loop.
#
#   redirect.sh install  [--uid UID] [--outbound-port 15001] [--inbound-port 15006] [--exclude-cidr CIDR]...
#   redirect.sh remove
#
# Needs root and iptables (nat table). The rules live in a chain of their own (MESH_OUTPUT),
# so remove takes exactly what install added.
set -euo pipefail
action=${1:-}
shift || true
uid=$(id -u meshd 2>/dev/null || echo 1337)
outbound=15001
inbound=15006
excludes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --uid) uid=$2; shift 2 ;;
    --outbound-port) outbound=$2; shift 2 ;;
    --inbound-port) inbound=$2; shift 2 ;;
    --exclude-cidr) excludes+=("$2"); shift 2 ;;
    *) echo "redirect.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

remove() {
  iptables -t nat -D OUTPUT -p tcp -j MESH_OUTPUT 2>/dev/null || true
  iptables -t nat -F MESH_OUTPUT 2>/dev/null || true
  iptables -t nat -X MESH_OUTPUT 2>/dev/null || true
}

case "$action" in
  install)
    remove
    iptables -t nat -N MESH_OUTPUT
    # meshd's own connections (to peers' inbound listeners, to local apps) go out as they are.
    iptables -t nat -A MESH_OUTPUT -m owner --uid-owner "$uid" -j RETURN
    # Loopback traffic to the admin API and to meshd's listeners themselves.
    iptables -t nat -A MESH_OUTPUT -p tcp --dport "$outbound" -j RETURN
    iptables -t nat -A MESH_OUTPUT -p tcp --dport "$inbound" -j RETURN
    iptables -t nat -A MESH_OUTPUT -d 127.0.0.0/8 -j RETURN
    for cidr in "${excludes[@]}"; do iptables -t nat -A MESH_OUTPUT -d "$cidr" -j RETURN; done
    # Everything else: to the outbound listener (the original destination stays in conntrack).
    iptables -t nat -A MESH_OUTPUT -p tcp -j REDIRECT --to-ports "$outbound"
    iptables -t nat -A OUTPUT -p tcp -j MESH_OUTPUT
    echo "outgoing TCP redirected to :$outbound (meshd's uid $uid exempt)"
    ;;
  remove)
    remove
    echo "redirect removed"
    ;;
  *)
    echo "usage: redirect.sh install [--uid UID] [--outbound-port P] [--inbound-port P] [--exclude-cidr CIDR]... | remove" >&2
    exit 2
    ;;
esac
