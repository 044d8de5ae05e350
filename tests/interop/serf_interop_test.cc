// meshd and a real `serf agent` (serf 0.9.4 built from Debian's package) in one pool: members
// and tags both ways, user events both ways, graceful leave both ways (serf reports "left").

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
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

  // A member's status as serf reports it ("" when serf does not list it).
  std::string serfStatus(const std::string& name) {
    auto ms = serfMembers();
    auto it = ms.find(name);
    return it == ms.end() || !it->second.is_object() ? "" : it->second.value("status", "");
  }

  static json ourMember(const MeshdNode& n, const std::string& name) {
    auto r = n.get("/v1/members");
    if (!r.ok()) return json::object();
    auto list = json::parse(r->body, nullptr, false);
    if (!list.is_array()) return json::object();
    for (const auto& m : list) {
      if (m.value("name", "") == name) return m;
    }
    return json::object();
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
  ASSERT_TRUE(eventually([&] { return serfStatus("mesh-1") == "alive"; }, 15s, 200ms));
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

  // Tags changed at run time are re-announced: serf sees them.
  auto retag = run({meshcliPath(), "--node", mesh.admin().toString(), "tags", "--set", "team=core", "--set", "tier=1"}, 5s, tmp_.path());
  ASSERT_EQ(retag.status.code, 0) << retag.err;
  ASSERT_TRUE(eventually([&] {
    auto ms = serfMembers();
    auto it = ms.find("mesh-1");
    return it != ms.end() && it->second["tags"].value("team", "") == "core" && it->second["tags"].value("tier", "") == "1";
  }, 10s, 200ms)) << serfMembers()["mesh-1"].dump();
  auto untag = run({meshcliPath(), "--node", mesh.admin().toString(), "tags", "--delete", "tier"}, 5s, tmp_.path());
  ASSERT_EQ(untag.status.code, 0) << untag.err;
  ASSERT_TRUE(eventually([&] { return !serfMembers()["mesh-1"]["tags"].contains("tier"); }, 10s, 200ms));
  auto managed = run({meshcliPath(), "--node", mesh.admin().toString(), "tags", "--set", "role=db"}, 5s, tmp_.path());
  EXPECT_EQ(managed.status.code, 1);
  EXPECT_NE(managed.err.find("tag 'role' is set by meshd itself"), std::string::npos) << managed.err;

  // Our graceful leave shows as "left" on serf, not "failed".
  mesh.process().signal(SIGTERM);
  auto st = mesh.process().wait(3s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 0);
  ASSERT_TRUE(eventually([&] { return serfStatus("mesh-1") == "left"; }, 10s, 200ms))
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

// Queries both ways and key rotation driven from both sides, in one encrypted pool of a serf
// agent and two meshd nodes.
TEST_F(SerfInterop, QueriesAndKeyRotationAcrossAMixedEncryptedPool) {
  const std::string k1 = "5K9OtfP7efFrNKe5WCQvXvnaXJ5cWP0SvXiwe0kkjM4=";
  const std::string k2 = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";
  std::string k2Now;
  startAgent("serf-q", 1, {"-encrypt", k1, "-event-handler", "query:who=echo serf says $SERF_SELF_NAME"});
  std::vector<MeshdNode> mesh;
  for (int i = 0; i < 2; ++i) {
    const std::string name = "mesh-q" + std::to_string(i + 1);
    mesh.emplace_back(MeshdOptions{
        .name = name, .address = net_.address(i + 2), .dataDir = tmp_.sub(name), .logDir = tmp_.path(),
        .extraArgs = {"--encrypt", k1, "--keyring-file", tmp_.sub(name + "-keyring.json"), "--join",
                      net_.address(1) + ":7946", "--query-handler", "who=echo mesh says $MESH_NODE_NAME"}});
  }
  for (auto& m : mesh) m.start();
  for (auto& m : mesh) ASSERT_TRUE(m.waitReady());
  ASSERT_TRUE(eventually([&] { return serfStatus("mesh-q1") == "alive" && serfStatus("mesh-q2") == "alive"; }, 15s, 200ms));
  ASSERT_TRUE(eventually([&] { return ourMember(mesh[1], "mesh-q1").value("status", "") == "alive"; }, 10s));

  // serf query: answered by our nodes (and serf itself).
  auto sq = run({serf_, "query", "-rpc-addr=" + rpc_, "-timeout", "5s", "who", "x"}, 20s, tmp_.path());
  ASSERT_EQ(sq.status.code, 0) << sq.err;
  EXPECT_NE(sq.out.find("Response from 'mesh-q1': mesh says mesh-q1"), std::string::npos) << sq.out;
  EXPECT_NE(sq.out.find("Response from 'mesh-q2': mesh says mesh-q2"), std::string::npos) << sq.out;
  EXPECT_NE(sq.out.find("Ack from 'mesh-q2'"), std::string::npos) << sq.out;
  EXPECT_NE(sq.out.find("Total Responses: 3"), std::string::npos) << sq.out;
  // A tag filter from serf picks only us.
  auto sqTag = run({serf_, "query", "-rpc-addr=" + rpc_, "-timeout", "4s", "-tag", "role=^node$", "who"}, 20s, tmp_.path());
  EXPECT_NE(sqTag.out.find("Total Responses: 2"), std::string::npos) << sqTag.out;

  // meshcli query: answered by the serf agent (and our nodes), filters honoured.
  const std::string admin = mesh[0].admin().toString();
  auto mq = run({meshcliPath(), "--node", admin, "query", "who", "y"}, 30s, tmp_.path());
  ASSERT_EQ(mq.status.code, 0) << mq.err;
  EXPECT_NE(mq.out.find("Response from 'serf-q': serf says serf-q"), std::string::npos) << mq.out;
  EXPECT_NE(mq.out.find("Response from 'mesh-q2': mesh says mesh-q2"), std::string::npos) << mq.out;
  EXPECT_NE(mq.out.find("Total Responses: 3"), std::string::npos) << mq.out;
  auto mqNode = run({meshcliPath(), "--node", admin, "query", "who", "--node", "serf-q"}, 30s, tmp_.path());
  EXPECT_NE(mqNode.out.find("Total Responses: 1"), std::string::npos) << mqNode.out;
  EXPECT_NE(mqNode.out.find("serf says serf-q"), std::string::npos) << mqNode.out;
  auto mqNobody = run({meshcliPath(), "--node", admin, "query", "who", "--tag", "role=^nope$"}, 30s, tmp_.path());
  EXPECT_EQ(mqNobody.status.code, 0);
  EXPECT_NE(mqNobody.out.find("Total Responses: 0"), std::string::npos) << mqNobody.out;

  // Key rotation: install from serf, use from meshcli, remove from serf.
  auto keysList = [&] { return run({meshcliPath(), "--node", admin, "keys", "list"}, 30s, tmp_.path()); };
  auto install = run({serf_, "keys", "-rpc-addr=" + rpc_, "-install", k2}, 20s, tmp_.path());
  ASSERT_EQ(install.status.code, 0) << install.out << install.err;
  EXPECT_NE(install.out.find("Successfully installed key!"), std::string::npos);
  auto listed = keysList();
  ASSERT_EQ(listed.status.code, 0) << listed.err;
  EXPECT_NE(listed.out.find(k1 + "  [3/3] (primary on 3)"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find(k2 + "  [3/3]"), std::string::npos) << listed.out;
  auto use = run({meshcliPath(), "--node", admin, "keys", "use", k2}, 30s, tmp_.path());
  ASSERT_EQ(use.status.code, 0) << use.out << use.err;
  EXPECT_NE(use.out.find("==> Successfully changed primary key!"), std::string::npos) << use.out;
  auto remove = run({serf_, "keys", "-rpc-addr=" + rpc_, "-remove", k1}, 20s, tmp_.path());
  ASSERT_EQ(remove.status.code, 0) << remove.out << remove.err;
  auto serfList = run({serf_, "keys", "-rpc-addr=" + rpc_, "-list"}, 20s, tmp_.path());
  EXPECT_NE(serfList.out.find(k2 + "  [3/3]"), std::string::npos) << serfList.out;
  EXPECT_EQ(serfList.out.find(k1), std::string::npos) << serfList.out;
  // Removing the primary: every member refuses, each named, exit 1 (as serf keys).
  auto bad = run({meshcliPath(), "--node", admin, "keys", "remove", k2}, 30s, tmp_.path());
  EXPECT_EQ(bad.status.code, 1);
  EXPECT_NE(bad.err.find("serf-q"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("mesh-q2"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("Error removing key: 3/3 nodes reported failure"), std::string::npos) << bad.err;
  // The other way round: install from meshcli, use from serf, remove from meshcli.
  const std::string k3 = "qCDxzBTWuRg0rWPz4FUO4dvmYrTq1WfCGzMRTVp2Y9E=";
  auto install3 = run({meshcliPath(), "--node", admin, "keys", "install", k3}, 30s, tmp_.path());
  ASSERT_EQ(install3.status.code, 0) << install3.out << install3.err;
  auto use3 = run({serf_, "keys", "-rpc-addr=" + rpc_, "-use", k3}, 20s, tmp_.path());
  ASSERT_EQ(use3.status.code, 0) << use3.out << use3.err;
  EXPECT_NE(use3.out.find("Successfully changed primary key!"), std::string::npos) << use3.out;
  auto remove2 = run({meshcliPath(), "--node", admin, "keys", "remove", k2}, 30s, tmp_.path());
  ASSERT_EQ(remove2.status.code, 0) << remove2.out << remove2.err;
  auto serfList3 = run({serf_, "keys", "-rpc-addr=" + rpc_, "-list"}, 20s, tmp_.path());
  EXPECT_NE(serfList3.out.find(k3 + "  [3/3]"), std::string::npos) << serfList3.out;
  EXPECT_EQ(serfList3.out.find(k2), std::string::npos) << serfList3.out;
  k2Now = k3;

  // The pool still talks, under the new key only, and our keyring file holds the rotation.
  auto ev = run({meshcliPath(), "--node", admin, "event", "after-rotation"}, 5s, tmp_.path());
  ASSERT_EQ(ev.status.code, 0);
  ASSERT_TRUE(eventually([&] { return agentLog().find("user-event: after-rotation") != std::string::npos; }, 10s));
  std::ifstream kf(tmp_.sub("mesh-q1-keyring.json"));
  std::string ring((std::istreambuf_iterator<char>(kf)), std::istreambuf_iterator<char>());
  EXPECT_NE(ring.find(k2Now), std::string::npos) << ring;
  EXPECT_EQ(ring.find(k1), std::string::npos) << ring;
  EXPECT_EQ(ring.find(k2), std::string::npos) << ring;
}

}  // namespace
}  // namespace mesh::testing
