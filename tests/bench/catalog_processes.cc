// The catalog over 50 real meshd processes (127.0.N.1-50, LAN gossip profile): time from a
// health change on one node until every node holds it. Each change flips a TTL check through
// the owner's local API; each node stamps when it took the owner's new version
// (`learned_unix_ms` in /v1/catalog, the machine's one wall clock), so polling adds nothing.
// Prints figures; asserts nothing. Stops every process it started.
//
//   bench_catalog_processes [--nodes 50] [--changes 20]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/http/client.h"
#include "tests/bench/meshd_cluster.h"

using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

double wallMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The instance's version and when this node learned it; {0, 0} when absent.
std::pair<std::uint64_t, double> seen(const mesh::testing::MeshdNode& n, const std::string& owner) {
  auto r = n.get("/v1/catalog/service/bench");
  if (!r.ok() || r->status != 200) return {0, 0};
  for (const auto& in : json::parse(r->body, nullptr, false)) {
    if (in.value("node", "") == owner) return {in.value("version", 0ull), in.value("learned_unix_ms", 0.0)};
  }
  return {0, 0};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_catalog_processes: health change propagation across real meshd processes"};
  int n = 50, changes = 20;
  app.add_option("--nodes", n)->check(CLI::Range(3, 200));
  app.add_option("--changes", changes)->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  mesh::bench::MeshdCluster cluster;
  if (!cluster.start(n, {})) return 1;
  auto& nodes = cluster.nodes;
  std::printf("catalog_processes nodes=%d (lan profile; digests to 3 peers every 200 ms): cluster formed in %.1f s\n", n,
              cluster.startSeconds);
  // Five owners, each with one instance and a TTL check.
  const int owners = std::min(5, n);
  for (int o = 0; o < owners; ++o) {
    auto& node = *nodes[static_cast<std::size_t>(o * (n / owners))];
    auto r = mesh::http::request(node.admin(), "PUT", "/v1/agent/services/bench-" + std::to_string(o),
                                 R"({"name": "bench", "port": 9000, "checks": [{"ttl": "1h"}]})");
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "registration refused: %s\n", r.ok() ? r->body.c_str() : r.error().message().c_str());
      return 1;
    }
  }
  std::this_thread::sleep_for(5s);

  std::vector<double> toAll, perNode;
  int incomplete = 0;
  for (int k = 0; k < changes; ++k) {
    const int o = k % owners;
    auto& owner = *nodes[static_cast<std::size_t>(o * (n / owners))];
    const std::string ownerName = owner.options().name;
    const std::uint64_t before = seen(owner, ownerName).first;
    const char* status = k % 2 == 0 ? "passing" : "critical";
    const double t0 = wallMs();
    auto r = mesh::http::request(owner.admin(), "PUT", "/v1/agent/checks/bench-" + std::to_string(o) + ":0?status=" + status, "");
    if (!r.ok() || r->status != 200) return 1;
    auto got = mesh::bench::delaysUntilEveryNode(nodes, t0, 60s, [&](const mesh::testing::MeshdNode& node) {
      auto [v, at] = seen(node, ownerName);
      return v > before ? std::optional<double>(at) : std::nullopt;
    });
    if (!got) {
      ++incomplete;
      continue;
    }
    toAll.push_back(mesh::bench::collectRound(*got, perNode));
    std::this_thread::sleep_for(1s);
  }
  std::sort(toAll.begin(), toAll.end());
  std::sort(perNode.begin(), perNode.end());
  std::printf("health changes (%d made, %d not on every node within 60 s):\n", changes, incomplete);
  std::printf("  until every node holds it   p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms (n=%zu)\n",
              mesh::bench::percentile(toAll, 50), mesh::bench::percentile(toAll, 99), toAll.empty() ? 0 : toAll.back(), toAll.size());
  std::printf("  one node holds it           p50 %7.1f ms  p99 %7.1f ms (n=%zu)\n", mesh::bench::percentile(perNode, 50),
              mesh::bench::percentile(perNode, 99), perNode.size());
  return 0;
}
