#pragma once
// One real meshd process for integration tests, on its own loopback address: gossip on ADDR:7946,
// admin API on ADDR:15000, data under the test's temporary directory.

#include <chrono>
#include <string>
#include <vector>

#include "common/http/message.h"
#include "common/net_address.h"
#include "common/result.h"
#include "tests/support/child_process.h"

namespace mesh::testing {

struct MeshdOptions {
  std::string name;
  std::string address;              // e.g. 127.0.1.1
  std::string dataDir;              // created by meshd if missing
  std::string logDir;               // where its stdout/stderr files go
  std::vector<std::string> extraArgs;
  std::uint16_t gossipPort = 7946;
  std::uint16_t adminPort = 15000;
};

class MeshdNode {
 public:
  explicit MeshdNode(MeshdOptions options);
  ~MeshdNode();  // SIGKILL if still running
  MeshdNode(MeshdNode&&) = default;

  // Starts the process; then waitReady() until /healthz answers 200.
  void start();
  bool waitReady(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  HostPort admin() const;
  std::string gossipAddress() const;  // ADDR:PORT
  const MeshdOptions& options() const { return options_; }
  ChildProcess& process() { return proc_.value(); }

  Result<http::Response> get(const std::string& path) const;

  // SIGTERM, then waits up to `timeout` for the exit. nullopt if it did not exit in time.
  std::optional<ExitStatus> stop(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  MeshdOptions options_;
  std::optional<ChildProcess> proc_;
};

// Waits until every running node lists `expected` members with serf status alive (the steady
// state most cluster tests start from).
bool everyNodeSeesAlive(const std::vector<MeshdNode>& nodes, std::size_t expected, std::chrono::milliseconds timeout);

}  // namespace mesh::testing
