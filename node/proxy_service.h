#pragma once
// meshd's side of the data plane (issue 7): starts the proxy's workers when the node has an
// identity (--tls-dir), recompiles the proxy's snapshot when what it depends on changes (the
// catalog, members' liveness and inbound addresses, the policy in force) and publishes it,
// serves GET /v1/proxy (the snapshot: clusters, endpoints, load balancing) and drains on stop.
//
// Thread rules: the control thread.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/event_loop.h"
#include "common/result.h"
#include "node/proxy/proxy.h"

namespace mesh::metrics {
class Registry;
}
namespace mesh::admin {
class Server;
}
namespace mesh::catalog {
class Catalog;
}
namespace mesh::policy {
class PolicyStore;
}
namespace mesh::dissem {
class Dissemination;
}

namespace mesh::node {

class ProxyService {
 public:
  struct Deps {
    EventLoop& loop;
    metrics::Registry& registry;
    std::string nodeName, zone;
    std::string advertiseHost;  // our inbound listener as peers reach it, when bound to 0.0.0.0
    proxy::ProxyOptions options;
    std::shared_ptr<const identity::MeshTls> tls;
    const catalog::Catalog& catalog;
    // What changes between compiles: read each time.
    std::function<std::map<std::string, proxy::MemberInfo>()> members;
    std::function<policy::PolicyStore*()> policies;
  };
  static Result<std::unique_ptr<ProxyService>> start(Deps deps);
  ~ProxyService();

  // "host:port" peers connect to: the serf tag "inbound".
  std::string advertisedInbound() const;
  void attach(admin::Server& admin);
  // The catalog or the policy changed: recompile now rather than at the next poll (kPoll).
  void changed();
  // A member joined, failed, left or changed its tags: recompile now (a dead member leaves every
  // pool at once). Members are read only then, not at every poll.
  void membersChanged();
  // Mesh-wide rate limits: this node's demand for each RateLimit rule of scope MESH it enforces
  // spreads as a usage record (dissemination kind kUsageKind), and the others' set its share.
  static constexpr std::uint8_t kUsageKind = 3;
  void attach(dissem::Dissemination& dissemination);

  // Closes the listeners and lets requests in flight finish; done() once every connection is
  // closed or after the timeout (the rest are cut), with the proxy stopped.
  void drain(std::chrono::milliseconds timeout, std::function<void()> done);

  static constexpr std::chrono::milliseconds kPoll{200};

  struct Impl;

 private:
  explicit ProxyService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::node
