#include "gossip/probe.h"

#include "gossip/errc.h"
#include "gossip/wire.h"

namespace mesh::gossip {

namespace {
metrics::Gauge& members(metrics::Registry& r, const char* state) {
  return r.gauge("mesh_gossip_members", "Members this node knows, by state.", {{"state", state}});
}
}  // namespace

GossipMetrics::GossipMetrics(metrics::Registry& r)
    : membersAlive(members(r, "alive")),
      membersSuspect(members(r, "suspect")),
      membersDead(members(r, "dead")),
      membersLeft(members(r, "left")),
      probes(r.counter("mesh_gossip_probes_total", "Probes started (direct pings).")),
      probesFailed(r.counter("mesh_gossip_probes_failed_total", "Probes that ended with the target suspected.")),
      indirectProbes(r.counter("mesh_gossip_indirect_probes_total", "Indirect ping requests sent.")),
      tcpFallbackProbes(r.counter("mesh_gossip_tcp_fallback_probes_total", "TCP ping fallbacks tried.")),
      suspicions(r.counter("mesh_gossip_suspicions_total", "Members this node began to suspect.")),
      refutations(r.counter("mesh_gossip_refutations_total", "Accusations of this node it refuted.")),
      deaths(r.counter("mesh_gossip_deaths_total", "Members this node declared or learned dead or left.")),
      udpBytesIn(r.counter("mesh_gossip_bytes_received_total", "Gossip bytes received.", {{"transport", "udp"}})),
      udpBytesOut(r.counter("mesh_gossip_bytes_sent_total", "Gossip bytes sent.", {{"transport", "udp"}})),
      udpPacketsIn(r.counter("mesh_gossip_packets_received_total", "UDP packets received.")),
      udpPacketsOut(r.counter("mesh_gossip_packets_sent_total", "UDP packets sent.")),
      tcpBytesIn(r.counter("mesh_gossip_bytes_received_total", "Gossip bytes received.", {{"transport", "tcp"}})),
      tcpBytesOut(r.counter("mesh_gossip_bytes_sent_total", "Gossip bytes sent.", {{"transport", "tcp"}})),
      pushPullsOut(r.counter("mesh_gossip_push_pulls_total", "Push-pull exchanges.", {{"direction", "out"}, {"result", "ok"}})),
      pushPullsOutFailed(r.counter("mesh_gossip_push_pulls_total", "Push-pull exchanges.", {{"direction", "out"}, {"result", "error"}})),
      pushPullsIn(r.counter("mesh_gossip_push_pulls_total", "Push-pull exchanges.", {{"direction", "in"}, {"result", "ok"}})),
      pushPullsInRefused(r.counter("mesh_gossip_push_pulls_total", "Push-pull exchanges.", {{"direction", "in"}, {"result", "error"}})),
      packetsRateLimited(r.counter("mesh_gossip_packets_dropped_total", "Packets dropped before decoding.", {{"reason", "rate_limited"}})),
      handoffDropped(r.counter("mesh_gossip_packets_dropped_total", "Packets dropped before decoding.", {{"reason", "queue_full"}})),
      healthScore(r.gauge("mesh_gossip_health_score", "Lifeguard local health score (0 is healthy).")),
      broadcastQueue(r.gauge("mesh_gossip_broadcast_queue", "Broadcasts waiting to be piggybacked.")),
      probeRtt(r.histogram("mesh_gossip_probe_rtt_seconds", "Round-trip time of successful direct probes.",
                           metrics::exponentialBuckets(0.0001, 2, 16))),
      registry_(r) {
  for (int t = 0; t <= 14; ++t) {
    const char* name = t < 14 ? messageTypeName(static_cast<std::uint8_t>(t)) : "unknown";
    rxByType[t] = &r.counter("mesh_gossip_messages_received_total", "Gossip messages received, by type.", {{"type", name}});
    txByType[t] = &r.counter("mesh_gossip_messages_sent_total", "Gossip messages sent, by type.", {{"type", name}});
    rxBytesByType[t] = &r.counter("mesh_gossip_message_bytes_received_total",
                                  "Bytes of gossip messages received, by type (before compression and encryption).",
                                  {{"type", name}});
    txBytesByType[t] = &r.counter("mesh_gossip_message_bytes_sent_total",
                                  "Bytes of gossip messages sent, by type (before compression and encryption).",
                                  {{"type", name}});
  }
}

void GossipMetrics::decodeError(int code) {
  registry_.counter("mesh_gossip_decode_errors_total", "Packets and streams refused as malformed, by reason.",
                    {{"reason", errcName(static_cast<errc>(code))}})
      .inc();
}

}  // namespace mesh::gossip
