// Signed policy over 50 real meshd processes (127.0.N.1-50, LAN gossip profile): time from a
// publish to one node until every node has verified the new version and applied it (the
// snapshot in force holds it). Each publish is a new version of one Route, signed here as
// meshcli signs it and posted to a different node each time; each node stamps when it compiled
// the snapshot (`compiledAtMs` in /v1/policies, the machine's one wall clock), so polling adds
// nothing. Prints figures; asserts nothing. Stops every process it started.
//
//   bench_policy_processes [--nodes 50] [--publishes 20]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/http/client.h"
#include "node/policy/bundle.h"
#include "tests/bench/meshd_cluster.h"

using namespace std::chrono_literals;
using json = nlohmann::json;
namespace policy = mesh::policy;

namespace {

double wallMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// When this node applied `version` of Route/bench (the snapshot holding it was compiled), if it has.
std::optional<double> appliedAt(const mesh::testing::MeshdNode& n, std::uint64_t version) {
  auto r = n.get("/v1/policies");
  if (!r.ok() || r->status != 200) return std::nullopt;
  auto j = json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  for (const auto& p : j.value("policies", json::array())) {
    if (p.value("kind", "") == "Route" && p.value("name", "") == "bench" && p.value("version", 0ull) >= version) {
      return p.value("receivedAtMs", 0.0);
    }
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_policy_processes: publish -> applied across real meshd processes"};
  int n = 50, publishes = 20;
  app.add_option("--nodes", n)->check(CLI::Range(3, 200));
  app.add_option("--publishes", publishes)->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  mesh::testing::TempDir keys("mesh-bench-keys");
  auto key = policy::generateKey();
  if (!key || !policy::writeKeyFiles(*key, keys.sub("op.key"), keys.sub("op.pub"))) return 1;
  mesh::bench::MeshdCluster cluster;
  if (!cluster.start(n, {"--policy-trusted-key", keys.sub("op.pub")})) return 1;
  auto& nodes = cluster.nodes;
  std::printf("policy_processes nodes=%d (lan profile; digests to 3 peers every 200 ms): cluster formed in %.1f s\n", n,
              cluster.startSeconds);

  std::vector<double> toAll, perNode;
  int incomplete = 0;
  for (int k = 1; k <= publishes; ++k) {
    const std::string yaml = "kind: Route\nmetadata: {name: bench}\nspec:\n  hosts: [bench]\n  http:\n    - route:\n"
                             "        - destination: {service: bench}\n      timeout: " + std::to_string(k * 10) + "ms\n";
    auto doc = policy::parseDocuments(yaml, "bench.yaml").documents.at(0);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto s = policy::signDocument(doc, static_cast<std::uint64_t>(k), now, 0, {*key});
    auto& target = *nodes[static_cast<std::size_t>((k * 7) % n)];
    const double t0 = wallMs();
    auto r = mesh::http::request(target.admin(), "POST", "/v1/policies", policy::signedToJson(*s));
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "publish refused: %s\n", r.ok() ? r->body.c_str() : r.error().message().c_str());
      return 1;
    }
    auto got = mesh::bench::delaysUntilEveryNode(nodes, t0, 60s, [&](const mesh::testing::MeshdNode& node) {
      return appliedAt(node, static_cast<std::uint64_t>(k));
    });
    if (!got) {
      ++incomplete;
      continue;
    }
    toAll.push_back(mesh::bench::collectRound(*got, perNode));
    std::this_thread::sleep_for(500ms);
  }
  std::sort(toAll.begin(), toAll.end());
  std::sort(perNode.begin(), perNode.end());
  std::printf("publishes (%d made, %d not applied on every node within 60 s):\n", publishes, incomplete);
  std::printf("  until every node applied it   p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms (n=%zu)\n",
              mesh::bench::percentile(toAll, 50), mesh::bench::percentile(toAll, 99), toAll.empty() ? 0 : toAll.back(), toAll.size());
  std::printf("  one node applied it           p50 %7.1f ms  p99 %7.1f ms (n=%zu)\n", mesh::bench::percentile(perNode, 50),
              mesh::bench::percentile(perNode, 99), perNode.size());
  return 0;
}
