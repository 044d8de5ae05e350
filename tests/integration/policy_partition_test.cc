// Signed policy through a network partition (real meshd processes in a network namespace of the
// test's own, cut with iptables as in the catalog's partition test): versions published on both
// sides while cut off; after the heal every node holds the highest. Two different documents
// published with the same version on the two sides resolve the same way everywhere (the higher
// digest), and the conflict is counted.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "tests/integration/policy_cluster.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

std::string addr(int i) { return "127.0.10." + std::to_string(i); }

TEST(PolicyPartition, BothSidesPublishAndEveryNodeEndsWithTheHighest) {
  if (auto why = enterPrivateNetwork()) {
    if (std::getenv("CI")) FAIL() << *why;
    GTEST_SKIP() << *why;
  }
  TempDir tmp;
  ASSERT_EQ(meshcli({"keygen", "--out", tmp.sub("op")}, tmp.path()).status.code, 0);
  std::vector<MeshdNode> nodes;
  for (int i = 1; i <= 6; ++i) {
    std::vector<std::string> args = {"--gossip-profile", "local", "--gossip-reconnect-interval", "1s",
                                     "--policy-trusted-key", tmp.sub("op.pub")};
    if (i > 1) args.insert(args.end(), {"--join", addr(1) + ":7946"});
    nodes.emplace_back(MeshdOptions{.name = "q" + std::to_string(i), .address = addr(i),
                                    .dataDir = tmp.sub("d" + std::to_string(i)), .logDir = tmp.path(), .extraArgs = args});
  }
  for (auto& n : nodes) n.start();
  for (auto& n : nodes) ASSERT_TRUE(n.waitReady()) << n.process().stderrText();
  auto publish = [&](int node, const std::string& name, int timeoutMs, const std::vector<std::string>& extra = {}) {
    writeFile(tmp.sub(name + ".yaml"), routeYaml(name, name, timeoutMs));
    std::vector<std::string> a = {"--node", nodes[static_cast<std::size_t>(node)].admin().toString(), "policy", "publish",
                                  tmp.sub(name + ".yaml"), "--key", tmp.sub("op.key")};
    a.insert(a.end(), extra.begin(), extra.end());
    auto r = meshcli(a, tmp.path());
    EXPECT_EQ(r.status.code, 0) << r.out << r.err;
    return r;
  };
  auto everywhere = [&](const std::string& key, std::uint64_t v, const std::vector<int>& which) {
    return eventually([&] {
      for (int i : which) {
        if (heldOn(nodes[static_cast<std::size_t>(i)], key).version != v) return false;
      }
      return true;
    }, 30s, 100ms);
  };
  publish(0, "a", 100);
  publish(0, "b", 100);
  ASSERT_TRUE(everywhere("Route/a", 1, {0, 1, 2, 3, 4, 5}));
  ASSERT_TRUE(everywhere("Route/b", 1, {0, 1, 2, 3, 4, 5}));

  // Cut {q1,q2,q3} from {q4,q5,q6}.
  ASSERT_TRUE(cutGossip({addr(1), addr(2), addr(3)}, {addr(4), addr(5), addr(6)}));
  // Route/a: version 2 on the left, 3 on the right. Route/b: each side publishes "the next
  // version" (2) with different content: a conflict.
  publish(1, "a", 200, {"--version", "2"});
  publish(4, "a", 300, {"--version", "3"});
  publish(0, "b", 201);
  publish(3, "b", 202);
  ASSERT_TRUE(everywhere("Route/a", 2, {0, 1, 2}));
  ASSERT_TRUE(everywhere("Route/a", 3, {3, 4, 5}));
  ASSERT_TRUE(everywhere("Route/b", 2, {0, 1, 2, 3, 4, 5}));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(heldOn(nodes[0], "Route/a").version, 2u) << "the cut leaks";
  const std::string leftB = heldOn(nodes[0], "Route/b").digest, rightB = heldOn(nodes[5], "Route/b").digest;
  ASSERT_NE(leftB, rightB);

  ASSERT_TRUE(healAll());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(everywhere("Route/a", 3, {0, 1, 2, 3, 4, 5}));
  const std::string winner = std::max(leftB, rightB);
  ASSERT_TRUE(eventually([&] {
    for (auto& n : nodes) {
      if (heldOn(n, "Route/b").digest != winner) return false;
    }
    return true;
  }, 60s, 100ms));
  std::printf("policy partition healed: every node holds the highest versions %.1f s after the links came back\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  int conflicts = 0;
  for (auto& n : nodes) conflicts += n.get("/metrics")->body.find("mesh_policy_conflicts_total 0") == std::string::npos;
  EXPECT_GE(conflicts, 3) << "the side that lost the conflict counts it";
  for (auto& n : nodes) {
    auto h = historyOn(n, "Route/a");
    EXPECT_GE(h, 2u) << n.options().name;
  }
}

}  // namespace
}  // namespace mesh::testing
