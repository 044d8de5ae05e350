#pragma once
// Memberlist's configuration (memberlist config.go), every timing a key, with the reason beside
// each default. lan() is memberlist's DefaultLANConfig, wan() its DefaultWANConfig, local() its
// DefaultLocalConfig (loopback and tests).

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "gossip/address.h"
#include "gossip/keyring.h"

namespace mesh::gossip {

using namespace std::chrono_literals;

struct Config {
  // This node's name: unique in the cluster.
  std::string name;
  // The address peers use to reach us (what alive messages carry).
  NodeAddress advertise;

  // Protocol version we speak: 2, as memberlist 0.2.2 does by default (ProtocolVersion2Compatible).
  std::uint8_t protocolVersion = 2;
  // Delegate protocol versions advertised in Vsn (serf uses 2..5, currently 4).
  std::uint8_t delegateProtocolMin = 0;
  std::uint8_t delegateProtocolMax = 0;
  std::uint8_t delegateProtocolVersion = 0;

  // One probe per interval: detection time grows with it, traffic falls.
  Duration probeInterval = 1s;
  // How long to wait for a direct ack before asking others: ~ the 99th percentile RTT.
  Duration probeTimeout = 500ms;
  // Peers asked to probe indirectly: enough to get past one bad path.
  int indirectChecks = 3;
  // Suspicion timeout multiplier (x log10(n) x probeInterval): time for a refutation to spread.
  int suspicionMult = 4;
  // Upper bound of the suspicion timeout as a multiple of the minimum (Lifeguard).
  int suspicionMaxTimeoutMult = 6;
  // Retransmits per broadcast (x log10(n+1)): high enough to reach everyone with high probability.
  int retransmitMult = 4;
  // Gossip fan-out period and width: together they set how fast broadcasts spread.
  Duration gossipInterval = 200ms;
  int gossipNodes = 3;
  // Keep gossiping to a dead node this long so that it learns it was declared dead and refutes.
  Duration gossipToTheDeadTime = 30s;
  // Full state exchange with one random node: repairs what gossip missed. Scaled above 32 nodes.
  Duration pushPullInterval = 30s;
  // Deadline of a TCP exchange (push-pull, reliable user message, TCP ping).
  Duration tcpTimeout = 10s;
  // Lifeguard: timeouts scale up to this multiple while we look unhealthy ourselves.
  int awarenessMaxMultiplier = 8;
  // Largest UDP payload we build: stays under common MTUs after IP/UDP headers.
  std::size_t udpBufferSize = 1400;
  // Compress packets (when smaller) and streams (always) with LZW, as memberlist does.
  bool enableCompression = true;
  // The TCP ping fallback finds UDP-only failures; off for networks where TCP is filtered.
  bool disableTcpPings = false;
  // A dead node's name may be taken by another address after this long (0: never).
  Duration deadNodeReclaimTime = Duration::zero();
  // Forget nodes that left this long ago. memberlist 0.2.2 never forgets left nodes, so its
  // state grows without bound in a churning cluster; we drop them like dead ones.
  Duration leftNodeGcTime = 30s;
  // Try a push-pull with one random dead (not left) node this often, with probability
  // dead/alive as serf's reconnect does. memberlist 0.2.2 alone never talks to the dead again
  // once their broadcasts are spent, so a healed partition would stay split; one exchange
  // across it makes the other side refute and the halves merge. 0 disables.
  Duration reconnectInterval = 10s;
  // Most concurrent inbound push-pulls served (memberlist's maxPushPullRequests).
  int maxConcurrentPushPulls = 128;
  // Messages queued for handling after a packet; more are dropped (HandoffQueueDepth).
  std::size_t handoffQueueDepth = 1024;
  // Packets accepted per second from one source address (burst: 2 seconds' worth): a flood
  // from one peer is dropped before it is decrypted or decoded, so probing is never starved.
  double maxPacketsPerSourcePerSecond = 2000;

  // Encryption: a keyring with at least one key turns it on.
  std::shared_ptr<Keyring> keyring;
  bool gossipVerifyIncoming = true;
  bool gossipVerifyOutgoing = true;
  // Optional label (memberlist v0.3.0+); "" = none, as memberlist 0.2.2 expects.
  std::string label;
  bool skipInboundLabelCheck = false;

  // Seed of the probe order and peer choices; 0 takes one from std::random_device. Tests and
  // the simulator set it so that a run can be repeated.
  std::uint64_t randomSeed = 0;

  static Config lan();
  static Config wan();
  static Config local();

  bool encryptionEnabled() const { return keyring && !keyring->empty(); }
  std::uint8_t encryptionVersion() const { return protocolVersion == 1 ? 0 : 1; }
  // Vsn bytes: pmin, pmax, pcur, dmin, dmax, dcur.
  std::string vsn() const;
};

}  // namespace mesh::gossip
