#pragma once
// The agent: owns the control thread's event loop and wires the node's modules together (the
// admin API, gossip membership, the node's metrics; store, catalog and the proxy join as they
// land).
//
// Thread rules: start() and run() on the control thread; requestStop() from any thread.

#include <memory>

#include "common/net_address.h"
#include "common/result.h"
#include "node/config.h"
#include "node/data_dir.h"

namespace mesh::metrics {
class Registry;
}
namespace mesh::gossip {
class Keyring;
}

namespace mesh::node {

class Agent {
 public:
  // keyring: null when gossip encryption is off.
  Agent(NodeConfig config, HostPort advertise, DataDir dataDir, std::shared_ptr<gossip::Keyring> keyring,
        metrics::Registry& registry);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Binds the listeners (admin, gossip UDP+TCP), starts gossip and joins --join peers (retrying
  // in the background until one answers). Errors name the address that failed.
  Result<void> start();
  // Runs the event loop until requestStop(); returns once everything is closed.
  void run();
  // Asks for an orderly stop: a graceful gossip leave (at most 1 s), then the listeners close.
  // Safe from any thread, and more than once.
  void requestStop();

  // The admin address actually bound (port 0 resolved), valid after start().
  const HostPort& adminAddress() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::node
