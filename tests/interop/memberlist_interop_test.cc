// Our gossip against HashiCorp memberlist 0.2.2 itself: mlpeer (a Go memberlist node, built from
// Debian's packages) in mixed pools with real meshd processes, and with mlnode, our library in
// the same harness as mlpeer. Skips with the reason when ../shared or Go is missing, except in
// CI, where it must run.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <cstdlib>
#include <map>

#include "tests/support/env.h"
#include "tests/support/go_peers.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class MemberlistInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = interopSkipReason(); !why.empty()) {
      if (std::getenv("CI")) FAIL() << "interop tests must run in CI: " << why;
      GTEST_SKIP() << why;
    }
    auto p = buildMlpeer();
    ASSERT_TRUE(p.ok()) << p.error().message();
    mlpeerBin_ = *p;
  }

  MeshdNode& meshd(const std::string& name, int i, std::vector<std::string> extra = {}) {
    nodes_.push_back(std::make_unique<MeshdNode>(MeshdOptions{
        .name = name, .address = net_.address(i), .dataDir = tmp_.sub(name), .logDir = tmp_.path(), .extraArgs = std::move(extra)}));
    nodes_.back()->start();
    EXPECT_TRUE(nodes_.back()->waitReady()) << nodes_.back()->process().stderrText();
    return *nodes_.back();
  }

  // meshd runs serf on memberlist, and serf refuses peers outside delegate versions 2-5: a Go
  // memberlist node joins a meshd pool as it would join a serf pool (mlpeer's README).
  JsonLinePeer& goPeer(const std::string& name, int i, std::vector<std::string> extra = {},
                       const std::string& delegateVsn = "2,5,4") {
    std::vector<std::string> argv = {mlpeerBin_, "--name", name, "--bind", net_.address(i) + ":7946", "--duration", "120",
                                     "--dump", "--delegate-vsn", delegateVsn};
    argv.insert(argv.end(), extra.begin(), extra.end());
    peers_.push_back(std::make_unique<JsonLinePeer>(argv, tmp_.path(), name));
    return *peers_.back();
  }

  JsonLinePeer& ourPeer(const std::string& name, int i, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {mlnodePath(), "--name", name, "--bind", net_.address(i) + ":7946", "--duration", "120",
                                     "--dump", "--delegate-vsn", "2,5,4"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    peers_.push_back(std::make_unique<JsonLinePeer>(argv, tmp_.path(), name));
    return *peers_.back();
  }

  std::string gossipAddr(int i) const { return net_.address(i) + ":7946"; }

  // name -> state as a meshd node reports it.
  static std::map<std::string, std::string> states(const MeshdNode& n) {
    std::map<std::string, std::string> out;
    auto r = n.get("/v1/members");
    if (!r.ok() || r->status != 200) return out;
    for (const auto& m : json::parse(r->body)) out[m["name"]] = m["state"];
    return out;
  }

  static std::size_t aliveCount(const MeshdNode& n) {
    std::size_t c = 0;
    for (const auto& [name, st] : states(n)) c += st == "alive";
    return c;
  }

  // The member count in a peer's latest "members" line (printed every second with --dump).
  static int lastCount(const JsonLinePeer& p) {
    auto ev = p.events("members");
    if (ev.empty()) return -1;
    return json::parse(ev.back()).value("count", -1);
  }

  static std::optional<json> firstEvent(const JsonLinePeer& p, const std::string& event, const std::string& name = "") {
    auto ev = p.events(event, name);
    if (ev.empty()) return std::nullopt;
    return json::parse(ev.front());
  }

  LoopbackSubnet net_;
  TempDir tmp_;
  std::string mlpeerBin_;
  std::vector<std::unique_ptr<MeshdNode>> nodes_;
  std::vector<std::unique_ptr<JsonLinePeer>> peers_;
};

TEST_F(MemberlistInterop, MixedPoolAgreesThenDetectsFailuresBothWays) {
  auto& m1 = meshd("meshd-1", 1);
  auto& g1 = goPeer("go-1", 4, {"--join", gossipAddr(1)});
  // meshd-2 joins through the Go node, go-2 through meshd-2: push-pull both ways.
  ASSERT_TRUE(eventually([&] { return lastCount(g1) == 2; }, 10s));
  auto& m2 = meshd("meshd-2", 2, {"--join", gossipAddr(4)});
  auto& g2 = goPeer("go-2", 5, {"--join", gossipAddr(2)});
  auto& m3 = meshd("meshd-3", 3, {"--join", gossipAddr(1)});
  const bool agreed = eventually(
      [&] {
        return aliveCount(m1) == 5 && aliveCount(m2) == 5 && aliveCount(m3) == 5 && lastCount(g1) == 5 &&
               lastCount(g2) == 5;
      },
      20s, 200ms);
  ASSERT_TRUE(agreed) << "meshd-1 sees " << aliveCount(m1) << ", go-1 sees " << lastCount(g1);
  auto jr = firstEvent(g2, "join_result");
  ASSERT_TRUE(jr);
  EXPECT_EQ((*jr)["contacted"], 1);
  EXPECT_FALSE(jr->contains("error"));

  // kill -9 a Go node: every meshd sees it dead.
  auto killed = std::chrono::steady_clock::now();
  g2.process().signal(SIGKILL);
  ASSERT_TRUE(eventually([&] { return states(m1)["go-2"] == "dead" && states(m2)["go-2"] == "dead" && states(m3)["go-2"] == "dead"; },
                         30s, 100ms));
  const auto goDeadAfter = std::chrono::steady_clock::now() - killed;

  // kill -9 a meshd: the Go node fails it (its suspicion timer runs out) and the rest agree.
  killed = std::chrono::steady_clock::now();
  m3.process().signal(SIGKILL);
  ASSERT_TRUE(eventually([&] { return firstEvent(g1, "failed", "meshd-3").has_value() || firstEvent(g1, "leave", "meshd-3").has_value(); },
                         30s, 100ms));
  const auto meshdDeadAfter = std::chrono::steady_clock::now() - killed;
  ASSERT_TRUE(eventually([&] { return states(m1)["meshd-3"] == "dead"; }, 30s, 100ms));
  // Suspicion: 4 x max(1, log10 5) x 1 s = 4 s, after up to ~2 s to be probed and fail.
  std::printf("kill -9 of a Go node: meshd nodes saw it dead after %.2f s\n",
              std::chrono::duration<double>(goDeadAfter).count());
  std::printf("kill -9 of a meshd: the Go node failed it after %.2f s\n",
              std::chrono::duration<double>(meshdDeadAfter).count());
  EXPECT_LT(goDeadAfter, 15s);
  EXPECT_LT(meshdDeadAfter, 15s);
}

TEST_F(MemberlistInterop, GracefulLeaveBothWays) {
  auto& m1 = meshd("meshd-1", 1);
  auto& m2 = meshd("meshd-2", 2, {"--join", gossipAddr(1)});
  auto& g1 = goPeer("go-1", 4, {"--join", gossipAddr(1)});
  auto& g2 = goPeer("go-2", 5, {"--join", gossipAddr(1)});
  ASSERT_TRUE(eventually([&] { return aliveCount(m1) == 4 && lastCount(g2) == 4; }, 20s, 200ms));

  // The Go node leaves (memberlist Leave): meshd records "left", not "dead".
  g1.process().signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return states(m1)["go-1"] == "left" && states(m2)["go-1"] == "left"; }, 5s, 50ms))
      << "meshd-1 says " << states(m1)["go-1"];

  // meshd leaves on SIGTERM: the Go node sees it go at once, long before a failure could be
  // detected, and its suspicion timer never fires.
  const auto sent = std::chrono::steady_clock::now();
  m2.process().signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return firstEvent(g2, "leave", "meshd-2").has_value(); }, 5s, 20ms));
  const auto seenAfter = std::chrono::steady_clock::now() - sent;
  EXPECT_LT(seenAfter, 2s);
  EXPECT_FALSE(firstEvent(g2, "failed", "meshd-2").has_value());
  auto st = m2.process().wait(3s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 0);
  ASSERT_TRUE(eventually([&] { return states(m1)["meshd-2"] == "left"; }, 5s, 50ms));
  std::printf("graceful leave of a meshd seen by the Go node after %.0f ms\n",
              std::chrono::duration<double, std::milli>(seenAfter).count());
}

TEST_F(MemberlistInterop, UserMessagesAndPushPullStateBothWays) {
  // Our library (mlnode) first; the Go node joins it: both push-pull states cross.
  auto& ours = ourPeer("ours", 1, {"--broadcast", "gossip-from-mesh", "--send-reliable", "go=reliable-from-mesh"});
  // mlpeer tries its --join once: the node it joins must already listen.
  ASSERT_TRUE(eventually([&] { return firstEvent(ours, "started").has_value(); }, 10s));
  auto& go = goPeer("go", 2, {"--join", gossipAddr(1), "--broadcast", "gossip-from-go"});
  ASSERT_TRUE(eventually([&] { return lastCount(go) == 2 && lastCount(ours) == 2; }, 10s));
  ASSERT_TRUE(eventually([&] {
    auto m = firstEvent(go, "merge_remote_state");
    return m && (*m)["data"] == "state-of-ours" && (*m)["join"] == true;
  }, 5s));
  ASSERT_TRUE(eventually([&] {
    auto m = firstEvent(ours, "merge_remote_state");
    return m && (*m)["data"] == "state-of-go" && (*m)["join"] == true;
  }, 5s));
  auto has = [](const JsonLinePeer& p, const std::string& data) {
    for (const auto& l : p.events("user_msg")) {
      if (json::parse(l)["data"] == data) return true;
    }
    return false;
  };
  EXPECT_TRUE(eventually([&] { return has(ours, "gossip-from-go"); }, 10s));
  EXPECT_TRUE(eventually([&] { return has(go, "gossip-from-mesh"); }, 10s));

  // The other direction: our node joins through a Go node, and sends a reliable (TCP) message.
  auto& go2 = goPeer("go2", 3);
  ASSERT_TRUE(eventually([&] { return firstEvent(go2, "started").has_value(); }, 10s));
  auto& ours2 = ourPeer("ours2", 4, {"--join", gossipAddr(3), "--send-reliable", "go2=reliable-to-go2"});
  ASSERT_TRUE(eventually([&] { return lastCount(go2) == 2; }, 10s));
  ASSERT_TRUE(eventually([&] {
    auto m = firstEvent(ours2, "merge_remote_state");
    return m && (*m)["data"] == "state-of-go2";
  }, 5s));
  auto jr = firstEvent(ours2, "join_result");
  ASSERT_TRUE(jr);
  EXPECT_EQ((*jr)["contacted"], 1);
  EXPECT_TRUE(eventually([&] { return has(go2, "reliable-to-go2"); }, 10s));
}

TEST_F(MemberlistInterop, EncryptionWithTheKeyAndWithoutBothWays) {
  const std::string good = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM=";  // 32 bytes
  const std::string bad = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3JvbmctMDE=";   // 32 bytes, another key
  auto& m1 = meshd("meshd-1", 1, {"--encrypt", good});
  // Go nodes joining meshd: the right key works; a wrong key or none fails with Go's own words.
  auto& gGood = goPeer("go-good", 4, {"--secret-key", good, "--join", gossipAddr(1)});
  auto& gWrong = goPeer("go-wrong", 5, {"--secret-key", bad, "--join", gossipAddr(1)});
  auto& gNone = goPeer("go-none", 6, {"--join", gossipAddr(1)});
  ASSERT_TRUE(eventually([&] { return firstEvent(gGood, "join_result") && firstEvent(gWrong, "join_result") && firstEvent(gNone, "join_result"); }, 15s));
  EXPECT_FALSE(firstEvent(gGood, "join_result")->contains("error"));
  const std::string wrongErr = (*firstEvent(gWrong, "join_result")).value("error", "");
  const std::string noneErr = (*firstEvent(gNone, "join_result")).value("error", "");
  EXPECT_NE(wrongErr.find("No installed keys could decrypt the message"), std::string::npos) << wrongErr;
  EXPECT_NE(noneErr.find("Remote state is encrypted and encryption is not configured"), std::string::npos) << noneErr;

  // meshd nodes joining the keyed Go node: the right key works, a wrong key or none does not.
  auto& mGood = meshd("meshd-good", 2, {"--encrypt", good, "--join", gossipAddr(4)});
  auto& mWrong = meshd("meshd-wrong", 3, {"--encrypt", bad, "--join", gossipAddr(4)});
  auto& mNone = meshd("meshd-none", 7, {"--join", gossipAddr(4)});
  ASSERT_TRUE(eventually([&] { return aliveCount(mGood) == 3 && aliveCount(m1) == 3 && lastCount(gGood) == 3; }, 15s, 200ms));
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(aliveCount(mWrong), 1u);
  EXPECT_EQ(aliveCount(mNone), 1u);
  EXPECT_EQ(aliveCount(m1), 3u);
  EXPECT_EQ(lastCount(gGood), 3);
  EXPECT_NE(mWrong.process().stderrText().find("join failed"), std::string::npos);
  EXPECT_NE(mNone.process().stderrText().find("Remote state is encrypted and encryption is not configured"), std::string::npos)
      << mNone.process().stderrText();
}

}  // namespace
}  // namespace mesh::testing
