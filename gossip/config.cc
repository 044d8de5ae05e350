#include "gossip/config.h"

#include "gossip/wire.h"

namespace mesh::gossip {

Config Config::lan() { return Config{}; }

Config Config::wan() {
  // Higher latency and loss between data centres: slower probing, more patience.
  Config c;
  c.tcpTimeout = 30s;
  c.suspicionMult = 6;
  c.pushPullInterval = 60s;
  c.probeTimeout = 3s;
  c.probeInterval = 5s;
  c.gossipNodes = 4;
  c.gossipInterval = 500ms;
  c.gossipToTheDeadTime = 60s;
  c.leftNodeGcTime = 60s;
  c.reconnectInterval = 20s;
  return c;
}

Config Config::local() {
  // Loopback: fast and lossless, so everything can be quicker.
  Config c;
  c.tcpTimeout = 1s;
  c.indirectChecks = 1;
  c.retransmitMult = 2;
  c.suspicionMult = 3;
  c.pushPullInterval = 15s;
  c.probeTimeout = 200ms;
  c.probeInterval = 1s;
  c.gossipInterval = 100ms;
  c.gossipToTheDeadTime = 15s;
  c.leftNodeGcTime = 15s;
  c.reconnectInterval = 5s;
  return c;
}

std::string Config::vsn() const {
  return std::string{static_cast<char>(kProtocolVersionMin), static_cast<char>(kProtocolVersionMax),
                     static_cast<char>(protocolVersion),      static_cast<char>(delegateProtocolMin),
                     static_cast<char>(delegateProtocolMax),  static_cast<char>(delegateProtocolVersion)};
}

}  // namespace mesh::gossip
