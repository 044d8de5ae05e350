// kill -9 and restart with real meshd processes: a node restarted without --join rejoins the
// members it knew from its store, its Lamport clocks are not behind where they were, events it
// had already seen are not delivered again, and gossip keys rotated while it ran are still its
// keys (the rotation is kept in the store even without a keyring file).

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "tests/support/child_process.h"
#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

json getJson(const MeshdNode& n, const std::string& path) {
  auto r = n.get(path);
  if (!r.ok() || r->status != 200) return json::object();
  auto j = json::parse(r->body, nullptr, false);
  return j.is_discarded() ? json::object() : j;
}

std::string statusOf(const MeshdNode& observer, const std::string& name) {
  auto list = getJson(observer, "/v1/members");
  if (!list.is_array()) return "";
  for (const auto& m : list) {
    if (m.value("name", "") == name) return m.value("status", "");
  }
  return "";
}

TEST(MeshdRestart, Kill9ThenRestartWithoutJoinRejoinsWithClocksAndKeysIntact) {
  LoopbackSubnet net;
  TempDir tmp;
  const std::string k1 = "5K9OtfP7efFrNKe5WCQvXvnaXJ5cWP0SvXiwe0kkjM4=";
  const std::string k2 = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";
  std::vector<MeshdNode> nodes;
  for (int i = 1; i <= 3; ++i) {
    std::vector<std::string> args = {"--encrypt", k1, "--gossip-profile", "local"};
    if (i > 1) args.insert(args.end(), {"--join", net.address(1) + ":7946"});
    nodes.emplace_back(MeshdOptions{.name = "r" + std::to_string(i), .address = net.address(i),
                                    .dataDir = tmp.sub("r" + std::to_string(i)), .logDir = tmp.path(),
                                    .extraArgs = args});
  }
  for (auto& n : nodes) n.start();
  for (auto& n : nodes) ASSERT_TRUE(n.waitReady()) << n.process().stderrText();
  ASSERT_TRUE(eventually([&] {
    return statusOf(nodes[2], "r1") == "alive" && statusOf(nodes[2], "r2") == "alive" && statusOf(nodes[0], "r3") == "alive";
  }, 15s));

  // Events move the event clock; keys rotate to k2 (k1 removed) while r3 runs.
  const std::string admin1 = nodes[0].admin().toString();
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(run({meshcliPath(), "--node", admin1, "event", "before-" + std::to_string(i)}, 5s, tmp.path()).status.code, 0);
  }
  ASSERT_TRUE(eventually([&] { return nodes[2].get("/v1/events")->body.find("before-4") != std::string::npos; }, 10s));
  for (const auto& step : std::vector<std::vector<std::string>>{{"install", k2}, {"use", k2}, {"remove", k1}}) {
    auto r = run({meshcliPath(), "--node", admin1, "keys", step[0], step[1]}, 30s, tmp.path());
    ASSERT_EQ(r.status.code, 0) << step[0] << ": " << r.out << r.err;
  }
  // A query moves the query clock.
  ASSERT_EQ(run({meshcliPath(), "--node", admin1, "query", "ping", "--timeout", "1s"}, 10s, tmp.path()).status.code, 0);
  const json before = getJson(nodes[2], "/v1/self")["serf"];
  ASSERT_GT(before.value("event_clock", 0), 5);

  // kill -9: no leave, nothing flushed on the way out.
  nodes[2].process().signal(SIGKILL);
  ASSERT_TRUE(nodes[2].process().wait(5s).has_value());
  ASSERT_TRUE(eventually([&] { return statusOf(nodes[0], "r3") == "failed"; }, 20s)) << statusOf(nodes[0], "r3");

  // Restart without --join, and with the old --encrypt key (the store's rotated keyring wins).
  MeshdNode again(MeshdOptions{.name = "r3", .address = net.address(3), .dataDir = tmp.sub("r3"), .logDir = tmp.sub("r3"),
                               .extraArgs = {"--encrypt", k1, "--gossip-profile", "local"}});
  again.start();
  ASSERT_TRUE(again.waitReady()) << again.process().stderrText();
  const json after = getJson(again, "/v1/self")["serf"];
  EXPECT_GE(after.value("clock", 0), before.value("clock", 0)) << after.dump() << " vs " << before.dump();
  EXPECT_GE(after.value("event_clock", 0), before.value("event_clock", 0));
  EXPECT_GE(after.value("query_clock", 0), before.value("query_clock", 0));
  EXPECT_EQ(after.value("remembered_peers", 0), 2);
  ASSERT_TRUE(eventually([&] { return statusOf(again, "r1") == "alive" && statusOf(again, "r2") == "alive"; }, 20s))
      << again.process().stderrText();
  ASSERT_TRUE(eventually([&] { return statusOf(nodes[0], "r3") == "alive"; }, 20s));
  auto self = getJson(again, "/v1/self");
  EXPECT_TRUE(self["gossip"].value("encrypted", false));

  // Events it had seen are not delivered again (push-pull replays them); a new one is.
  ASSERT_EQ(run({meshcliPath(), "--node", admin1, "event", "after"}, 5s, tmp.path()).status.code, 0);
  ASSERT_TRUE(eventually([&] { return again.get("/v1/events")->body.find("\"after\"") != std::string::npos; }, 10s));
  EXPECT_EQ(again.get("/v1/events")->body.find("before-"), std::string::npos) << again.get("/v1/events")->body;
  // The keys it holds are the rotated ones.
  auto keys = run({meshcliPath(), "--node", again.admin().toString(), "keys", "list"}, 30s, tmp.path());
  EXPECT_NE(keys.out.find(k2 + "  [3/3]"), std::string::npos) << keys.out << keys.err;
  EXPECT_EQ(keys.out.find(k1), std::string::npos) << keys.out;
  EXPECT_NE(again.process().stderrText().find("using the gossip keyring kept in the store"), std::string::npos);
}

}  // namespace
}  // namespace mesh::testing
