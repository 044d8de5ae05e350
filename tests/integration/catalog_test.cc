// The service catalog across real meshd processes: every node's /v1/catalog agrees after
// registrations, changes, deregistrations and health flips on one node (the time it took is
// printed); a node killed with kill -9 in the middle of updates comes back with versions that
// only grow, and the rest of the cluster takes its new state.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/http/client.h"
#include "tests/support/child_process.h"
#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

json catalogOf(const MeshdNode& n) {
  auto r = n.get("/v1/catalog/services");
  if (!r.ok() || r->status != 200) return json::object();
  auto j = json::parse(r->body, nullptr, false);
  return j.is_discarded() ? json::object() : j;
}

// What must agree: service -> sorted "node/id/port/health/weight" lines (versions and stale
// flags may differ for a moment and do not matter to a client).
std::string view(const json& c) {
  std::vector<std::string> lines;
  for (const auto& [name, list] : c.items()) {
    for (const auto& in : list) {
      lines.push_back(name + " " + in.value("node", "") + "/" + in.value("id", "") + ":" + std::to_string(in.value("port", 0)) +
                      " " + in.value("health", "") + " w" + std::to_string(in.value("weight", 0)));
    }
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

Result<http::Response> call(const MeshdNode& n, const std::string& method, const std::string& path, const std::string& body) {
  return http::request(n.admin(), method, path, body);
}

class CatalogCluster : public ::testing::Test {
 protected:
  void start(int n) {
    for (int i = 1; i <= n; ++i) {
      std::vector<std::string> args = {"--services-dir", tmp_.sub("svc" + std::to_string(i))};
      std::filesystem::create_directories(tmp_.sub("svc" + std::to_string(i)));
      if (i > 1) args.insert(args.end(), {"--join", net_.address(1) + ":7946"});
      nodes_.emplace_back(MeshdOptions{.name = "c" + std::to_string(i), .address = net_.address(i),
                                       .dataDir = tmp_.sub("d" + std::to_string(i)), .logDir = tmp_.path(),
                                       .extraArgs = args});
    }
    for (auto& node : nodes_) node.start();
    for (auto& node : nodes_) ASSERT_TRUE(node.waitReady()) << node.process().stderrText();
    // The steady state the test is about: every node knows every other (a record whose owner a
    // node has not heard of yet waits for anti-entropy, by design).
    ASSERT_TRUE(everyNodeSeesAlive(nodes_, static_cast<std::size_t>(n), 30s));
  }

  // Waits until every node shows the same catalog as `expected` (a view() string); returns how
  // long it took, or -1.
  double converge(const std::string& expected, std::chrono::milliseconds max = 20s) {
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < max) {
      bool all = true;
      for (auto& node : nodes_) {
        if (!node.process().running()) continue;
        if (view(catalogOf(node)) != expected) {
          all = false;
          break;
        }
      }
      if (all) return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

  LoopbackSubnet net_;
  TempDir tmp_;
  std::vector<MeshdNode> nodes_;
};

TEST_F(CatalogCluster, TenNodesAgreeAfterEveryKindOfChange) {
  start(10);
  auto& owner = nodes_[3];
  std::vector<std::pair<std::string, double>> times;
  auto step = [&](const std::string& what, const std::string& expected) {
    const double ms = converge(expected);
    times.push_back({what, ms});
    EXPECT_GE(ms, 0) << what << ": nodes disagree; node c1 shows:\n" << view(catalogOf(nodes_[0])) << "expected:\n" << expected;
  };
  // Registered through the API, with a TTL check.
  ASSERT_EQ(call(owner, "PUT", "/v1/agent/services/web-1", R"({"name": "web", "port": 8080, "checks": [{"ttl": "60s"}]})")->status, 200);
  step("register (api)", "web c4/web-1:8080 critical w1\n");
  ASSERT_EQ(call(owner, "PUT", "/v1/agent/checks/web-1:0?status=passing", "ok")->status, 200);
  step("health flip to passing", "web c4/web-1:8080 passing w1\n");
  // A file in the services dir, then a change to it, on another node.
  std::ofstream(tmp_.sub("svc7/db.yaml")) << "service:\n  name: db\n  port: 5432\n";
  step("register (services dir)", "db c7/db:5432 passing w1\nweb c4/web-1:8080 passing w1\n");
  std::ofstream(tmp_.sub("svc7/db.yaml")) << "service:\n  name: db\n  port: 5432\n  weight: 7\n";
  step("change (services dir)", "db c7/db:5432 passing w7\nweb c4/web-1:8080 passing w1\n");
  ASSERT_EQ(call(owner, "PUT", "/v1/agent/checks/web-1:0?status=critical", "down")->status, 200);
  step("health flip to critical", "db c7/db:5432 passing w7\nweb c4/web-1:8080 critical w1\n");
  ASSERT_EQ(call(owner, "DELETE", "/v1/agent/services/web-1", "")->status, 200);
  std::filesystem::remove(tmp_.sub("svc7/db.yaml"));
  step("deregister both", "");
  for (const auto& [what, ms] : times) std::printf("catalog convergence, 10 nodes, %-26s %7.0f ms\n", what.c_str(), ms);
}

TEST_F(CatalogCluster, Kill9MidUpdateThenRestartKeepsVersionsGrowing) {
  start(3);
  auto& victim = nodes_[1];
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(call(victim, "PUT", "/v1/agent/services/s" + std::to_string(i),
                   R"({"name": "svc", "port": )" + std::to_string(9000 + i) + "}")->status, 200);
  }
  ASSERT_GE(converge(view(catalogOf(victim))), 0);
  auto versionOn = [&](const MeshdNode& n) {
    auto c = catalogOf(n);
    std::uint64_t v = 0;
    for (const auto& in : c.value("svc", json::array())) {
      if (in.value("node", "") == "c2") v = in.value("version", 0ull);
    }
    return v;
  };
  // Updates in flight when the kill lands.
  for (int i = 0; i < 5; ++i) (void)call(victim, "PUT", "/v1/agent/services/late" + std::to_string(i), R"({"name": "late", "port": 1})");
  victim.process().signal(SIGKILL);
  ASSERT_TRUE(victim.process().wait(5s).has_value());
  std::this_thread::sleep_for(500ms);
  const std::uint64_t seen = std::max(versionOn(nodes_[0]), versionOn(nodes_[2]));
  ASSERT_GT(seen, 0u);

  MeshdNode again(MeshdOptions{.name = "c2", .address = net_.address(2), .dataDir = tmp_.sub("d2"), .logDir = tmp_.sub("d2"),
                               .extraArgs = {"--services-dir", tmp_.sub("svc2")}});
  again.start();
  ASSERT_TRUE(again.waitReady()) << again.process().stderrText();
  auto self = call(again, "GET", "/v1/agent/services", "");
  ASSERT_TRUE(self.ok());
  const auto version = json::parse(self->body).value("version", 0ull);
  EXPECT_GT(version, seen) << "restarted with version " << version << ", the cluster had seen " << seen;
  // Its services (kept in its store) and a change made after the restart win everywhere.
  ASSERT_EQ(call(again, "PUT", "/v1/agent/services/after", R"({"name": "after", "port": 2})")->status, 200);
  nodes_[1].process().kill();
  const auto t0 = std::chrono::steady_clock::now();
  bool agreed = false;
  while (!agreed && std::chrono::steady_clock::now() - t0 < 20s) {
    agreed = view(catalogOf(nodes_[0])) == view(catalogOf(again)) && view(catalogOf(nodes_[2])) == view(catalogOf(again)) &&
             catalogOf(nodes_[0]).contains("after");
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(agreed) << view(catalogOf(nodes_[0])) << "--- vs ---\n" << view(catalogOf(again));
  EXPECT_GT(versionOn(nodes_[0]), seen);
}

}  // namespace
}  // namespace mesh::testing
