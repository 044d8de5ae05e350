#pragma once
// The gossip module's Prometheus series (mesh_gossip_*), registered once per Memberlist. Several
// memberlists sharing one registry (the simulator) add up into the same series.

#include <array>
#include <cstdint>

#include "common/metrics.h"

namespace mesh::gossip {

struct GossipMetrics {
  explicit GossipMetrics(metrics::Registry& r);

  // Message counts and bytes by type (index: the type byte, 0-13; anything else counts as
  // "unknown"). Bytes are the message's own (type byte and body), before the outer layers.
  void received(std::uint8_t type, std::size_t bytes) {
    const int i = type < 14 ? type : 14;
    rxByType[i]->inc();
    rxBytesByType[i]->inc(bytes);
  }
  void sent(std::uint8_t type, std::size_t bytes) {
    const int i = type < 14 ? type : 14;
    txByType[i]->inc();
    txBytesByType[i]->inc(bytes);
  }
  // Decode and validation failures, by gossip errc.
  void decodeError(int code);

  metrics::Gauge& membersAlive;
  metrics::Gauge& membersSuspect;
  metrics::Gauge& membersDead;
  metrics::Gauge& membersLeft;
  metrics::Counter& probes;
  metrics::Counter& probesFailed;
  metrics::Counter& indirectProbes;
  metrics::Counter& tcpFallbackProbes;
  metrics::Counter& suspicions;
  metrics::Counter& refutations;
  metrics::Counter& deaths;
  metrics::Counter& udpBytesIn;
  metrics::Counter& udpBytesOut;
  metrics::Counter& udpPacketsIn;
  metrics::Counter& udpPacketsOut;
  metrics::Counter& tcpBytesIn;
  metrics::Counter& tcpBytesOut;
  metrics::Counter& pushPullsOut;
  metrics::Counter& pushPullsOutFailed;
  metrics::Counter& pushPullsIn;
  metrics::Counter& pushPullsInRefused;
  metrics::Counter& packetsRateLimited;
  metrics::Counter& handoffDropped;
  metrics::Gauge& healthScore;
  metrics::Gauge& broadcastQueue;
  metrics::Histogram& probeRtt;

 private:
  metrics::Registry& registry_;
  std::array<metrics::Counter*, 15> rxByType{};
  std::array<metrics::Counter*, 15> txByType{};
  std::array<metrics::Counter*, 15> rxBytesByType{};
  std::array<metrics::Counter*, 15> txBytesByType{};
};

}  // namespace mesh::gossip
