// The catalog through a network partition, with real meshd processes in a network namespace of
// the test's own (unshare: the test process and the nodes it starts live there, with their own
// loopback, so iptables rules cut the cluster in two without touching anything else). Changes
// made on both sides while cut off are everywhere once it heals; nothing is lost.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "common/http/client.h"
#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

std::string addr(int i) { return "127.0.9." + std::to_string(i); }

std::string instancesOf(const MeshdNode& n) {
  auto r = n.get("/v1/catalog/services");
  if (!r.ok() || r->status != 200) return "?";
  auto j = json::parse(r->body, nullptr, false);
  std::vector<std::string> lines;
  for (const auto& [name, list] : j.items()) {
    for (const auto& in : list) lines.push_back(name + "@" + in.value("node", "") + ":" + std::to_string(in.value("port", 0)));
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + " ";
  return out;
}

TEST(CatalogPartition, ChangesOnBothSidesAreEverywhereAfterItHeals) {
  if (auto why = enterPrivateNetwork()) {
    if (std::getenv("CI")) FAIL() << *why;
    GTEST_SKIP() << *why;
  }
  TempDir tmp;
  std::vector<MeshdNode> nodes;
  for (int i = 1; i <= 6; ++i) {
    std::vector<std::string> args = {"--gossip-profile", "local", "--gossip-reconnect-interval", "1s"};
    if (i > 1) args.insert(args.end(), {"--join", addr(1) + ":7946"});
    nodes.emplace_back(MeshdOptions{.name = "p" + std::to_string(i), .address = addr(i),
                                    .dataDir = tmp.sub("d" + std::to_string(i)), .logDir = tmp.path(), .extraArgs = args});
  }
  for (auto& n : nodes) n.start();
  for (auto& n : nodes) ASSERT_TRUE(n.waitReady()) << n.process().stderrText();
  auto put = [&](MeshdNode& n, const std::string& id, int port) {
    auto r = http::request(n.admin(), "PUT", "/v1/agent/services/" + id,
                           R"({"name": ")" + id + R"(", "port": )" + std::to_string(port) + "}");
    ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.error().message());
  };
  put(nodes[0], "before", 1000);
  ASSERT_TRUE(eventually([&] {
    for (auto& n : nodes) {
      if (instancesOf(n) != "before@p1:1000 ") return false;
    }
    return true;
  }, 20s)) << instancesOf(nodes[5]);

  // Cut {p1,p2,p3} from {p4,p5,p6}, both ways (the admin API, from the test, is not cut).
  ASSERT_TRUE(cutGossip({addr(1), addr(2), addr(3)}, {addr(4), addr(5), addr(6)}));
  // Each side sees the other fail, then changes while cut off: a new service on each side, and a
  // change to the old one.
  auto statusOn = [&](const MeshdNode& n, const std::string& name) {
    auto r = n.get("/v1/members");
    if (!r.ok()) return std::string();
    for (const auto& m : json::parse(r->body, nullptr, false)) {
      if (m.value("name", "") == name) return m.value("status", "");
    }
    return std::string();
  };
  ASSERT_TRUE(eventually([&] { return statusOn(nodes[0], "p5") == "failed" && statusOn(nodes[4], "p2") == "failed"; }, 30s));
  put(nodes[1], "left-side", 2000);
  put(nodes[4], "right-side", 3000);
  put(nodes[0], "before", 1001);
  ASSERT_TRUE(eventually([&] { return instancesOf(nodes[2]).find("left-side@p2:2000") != std::string::npos; }, 30s));
  ASSERT_TRUE(eventually([&] { return instancesOf(nodes[5]).find("right-side@p5:3000") != std::string::npos; }, 30s));
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(instancesOf(nodes[5]).find("left-side"), std::string::npos) << "the cut leaks";
  EXPECT_EQ(instancesOf(nodes[0]).find("right-side"), std::string::npos) << "the cut leaks";

  // Heal: every node ends with every change.
  ASSERT_TRUE(healAll());
  const std::string expected = "before@p1:1001 left-side@p2:2000 right-side@p5:3000 ";
  const auto t0 = std::chrono::steady_clock::now();
  const bool healed = eventually([&] {
    for (auto& n : nodes) {
      if (instancesOf(n) != expected) return false;
    }
    return true;
  }, 60s, 200ms);
  std::string views;
  for (auto& n : nodes) views += n.options().name + ": " + instancesOf(n) + "\n";
  ASSERT_TRUE(healed) << views;
  std::printf("partition healed: every node agrees %.1f s after the links came back\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace
}  // namespace mesh::testing
