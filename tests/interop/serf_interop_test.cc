// meshd and a real `serf agent` (serf 0.9.4 built from Debian's package) in one pool: members
// and tags both ways, user events both ways, graceful leave both ways (serf reports "left").

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "tests/support/env.h"
#include "tests/support/go_peers.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class SerfInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = interopSkipReason(); !why.empty()) {
      if (std::getenv("CI")) FAIL() << "interop tests must run in CI: " << why;
      GTEST_SKIP() << why;
    }
    if (!std::filesystem::exists("/usr/share/gocode/src/github.com/hashicorp/serf")) {
      if (std::getenv("CI")) FAIL() << "golang-github-hashicorp-serf-dev is not installed";
      GTEST_SKIP() << "golang-github-hashicorp-serf-dev is not installed: run `make deps`";
    }
    auto s = buildSerf();
    ASSERT_TRUE(s.ok()) << s.error().message();
    serf_ = *s;
  }

  void TearDown() override {
    if (agent_) agent_->kill();
  }

  void startAgent(const std::string& name, int i, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {serf_, "agent", "-node", name, "-bind", net_.address(i) + ":7946",
                                     "-rpc-addr", net_.address(i) + ":7373", "-tag", "role=legacy", "-tag", "team=x"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_.emplace(ChildProcess::start(argv, tmp_.path(), name));
    rpc_ = net_.address(i) + ":7373";
    ASSERT_TRUE(eventually([&] { return run({serf_, "members", "-rpc-addr=" + rpc_}, 5s, tmp_.path()).status.code == 0; }, 10s));
  }

  // `serf members -format json`: name -> {status, tags}.
  std::map<std::string, json> serfMembers() {
    auto r = run({serf_, "members", "-rpc-addr=" + rpc_, "-format", "json"}, 5s, tmp_.path());
    std::map<std::string, json> out;
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) return out;
    for (const auto& m : j.value("members", json::array())) out[m.value("name", "")] = m;
    return out;
  }

  static json ourMember(const MeshdNode& n, const std::string& name) {
    auto r = n.get("/v1/members");
    if (!r.ok()) return {};
    for (const auto& m : json::parse(r->body)) {
      if (m["name"] == name) return m;
    }
    return {};
  }

  std::string agentLog() { return agent_->stdoutText() + agent_->stderrText(); }

  LoopbackSubnet net_;
  TempDir tmp_;
  std::string serf_, rpc_;
  std::optional<ChildProcess> agent_;
};

TEST_F(SerfInterop, MembersTagsEventsAndLeaveBothWays) {
  startAgent("serf-a", 1);
  MeshdNode mesh(MeshdOptions{.name = "mesh-1", .address = net_.address(2), .dataDir = tmp_.sub("m1"), .logDir = tmp_.path(),
                              .extraArgs = {"--zone", "z1", "--tag", "team=payments", "--join", net_.address(1) + ":7946"}});
  mesh.start();
  ASSERT_TRUE(mesh.waitReady());

  // serf lists us alive with our tags; we list serf alive with its tags.
  ASSERT_TRUE(eventually([&] { return serfMembers()["mesh-1"].value("status", "") == "alive"; }, 15s, 200ms));
  const json tags = serfMembers()["mesh-1"]["tags"];
  EXPECT_EQ(tags["role"], "node");
  EXPECT_EQ(tags["zone"], "z1");
  EXPECT_EQ(tags["cluster"], "default");
  EXPECT_EQ(tags["team"], "payments");
  EXPECT_TRUE(tags.contains("version"));
  ASSERT_TRUE(eventually([&] { return ourMember(mesh, "serf-a").value("status", "") == "alive"; }, 10s));
  EXPECT_EQ(ourMember(mesh, "serf-a")["tags"]["team"], "x");

  // serf event reaches meshd; meshcli event reaches serf.
  auto sent = run({serf_, "event", "-rpc-addr=" + rpc_, "from-serf", "p1"}, 5s, tmp_.path());
  ASSERT_EQ(sent.status.code, 0) << sent.err;
  ASSERT_TRUE(eventually([&] {
    auto r = mesh.get("/v1/events");
    return r.ok() && r->body.find("\"from-serf\"") != std::string::npos && r->body.find("\"p1\"") != std::string::npos;
  }, 10s));
  auto ours = run({meshcliPath(), "--node", mesh.admin().toString(), "event", "from-mesh", "p2"}, 5s, tmp_.path());
  ASSERT_EQ(ours.status.code, 0) << ours.err;
  ASSERT_TRUE(eventually([&] { return agentLog().find("user-event: from-mesh") != std::string::npos; }, 10s)) << agentLog();
  // An oversized event is refused at the CLI with a clear error.
  auto big = run({meshcliPath(), "--node", mesh.admin().toString(), "event", "big", std::string(600, 'x')}, 5s, tmp_.path());
  EXPECT_EQ(big.status.code, 1);
  EXPECT_NE(big.err.find("exceeds the size limit of 512 bytes"), std::string::npos) << big.err;

  // Our graceful leave shows as "left" on serf, not "failed".
  mesh.process().signal(SIGTERM);
  auto st = mesh.process().wait(3s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 0);
  ASSERT_TRUE(eventually([&] { return serfMembers()["mesh-1"].value("status", "") == "left"; }, 10s, 200ms))
      << serfMembers()["mesh-1"].dump();
}

TEST_F(SerfInterop, SerfLeaveShowsLeftOnMeshd) {
  startAgent("serf-b", 1);
  MeshdNode mesh(MeshdOptions{.name = "mesh-2", .address = net_.address(2), .dataDir = tmp_.sub("m2"), .logDir = tmp_.path(),
                              .extraArgs = {"--join", net_.address(1) + ":7946"}});
  mesh.start();
  ASSERT_TRUE(mesh.waitReady());
  ASSERT_TRUE(eventually([&] { return ourMember(mesh, "serf-b").value("status", "") == "alive"; }, 15s));
  auto left = run({serf_, "leave", "-rpc-addr=" + rpc_}, 10s, tmp_.path());
  EXPECT_EQ(left.status.code, 0) << left.err;
  ASSERT_TRUE(eventually([&] { return ourMember(mesh, "serf-b").value("status", "") == "left"; }, 10s))
      << ourMember(mesh, "serf-b").dump();
  EXPECT_EQ(ourMember(mesh, "serf-b")["state"], "left");
}

}  // namespace
}  // namespace mesh::testing
