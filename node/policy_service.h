#pragma once
// meshd's side of signed policy (issue 6): the policy store on the node's RocksDB, its gossip
// (dissemination kind 2: digests by gossip, bodies pulled from any holder and verified on
// arrival, anti-entropy), the admin API (/v1/policies...) and the cluster-wide status query
// ("_mesh_policy-status": every meshd answers with the version it holds of one document).
//
// Thread rules: the control thread.

#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "common/result.h"
#include "node/policy/policy_store.h"

namespace mesh::metrics {
class Registry;
}
namespace mesh::store {
class Store;
}
namespace mesh::admin {
class Server;
}
namespace mesh::dissem {
class Dissemination;
}
namespace mesh::gossip::serf {
class Serf;
struct IncomingQuery;
}  // namespace mesh::gossip::serf

namespace mesh::node {

class PolicyService {
 public:
  static constexpr std::uint8_t kDissemKind = 2;
  static constexpr const char* kStatusQuery = "_mesh_policy-status";

  struct Deps {
    EventLoop& loop;
    store::Store& store;
    metrics::Registry& registry;
    std::string nodeName;
    std::vector<policy::PublicKey> trustedKeys;
    int threshold = 1;
  };
  static Result<std::unique_ptr<PolicyService>> create(Deps deps);
  ~PolicyService();

  // Registers kind 2 (before dissemination starts) and the routes; serf is used for the status
  // query (and may be null in tests: status then answers 503).
  void attach(dissem::Dissemination& dissemination, admin::Server& admin, gossip::serf::Serf* serf);
  // Answers the status query; false when the query is not ours.
  bool handleQuery(const gossip::serf::IncomingQuery& q);

  policy::PolicyStore& policies();

  struct Impl;

 private:
  explicit PolicyService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::node
