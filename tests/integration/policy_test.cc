// Signed policy through the real meshcli against real meshd processes: every refusal (the node
// keeps its version, no other node receives the bad one), and propagation to 20 nodes with
// nodes killed (kill -9) during publishes.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/base64.h"
#include "node/policy/bundle.h"
#include "tests/integration/policy_cluster.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class PolicyCluster : public ::testing::Test {
 protected:
  void keygen(const std::string& name) {
    auto r = meshcli({"keygen", "--out", tmp_.sub(name)}, tmp_.path());
    ASSERT_EQ(r.status.code, 0) << r.err;
  }
  void start(int n, const std::vector<std::string>& policyArgs) {
    for (int i = 1; i <= n; ++i) {
      std::vector<std::string> args = policyArgs;
      if (i > 1) args.insert(args.end(), {"--join", net_.address(1) + ":7946"});
      nodes_.emplace_back(MeshdOptions{.name = "n" + std::to_string(i), .address = net_.address(i),
                                       .dataDir = tmp_.sub("d" + std::to_string(i)), .logDir = tmp_.path(),
                                       .extraArgs = args});
    }
    for (auto& node : nodes_) node.start();
    for (auto& node : nodes_) ASSERT_TRUE(node.waitReady()) << node.process().stderrText();
    ASSERT_TRUE(everyNodeSeesAlive(nodes_, static_cast<std::size_t>(n), 60s));
  }
  std::string nodeArg(int i) const { return nodes_[static_cast<std::size_t>(i)].admin().toString(); }
  RunResult cli(std::vector<std::string> args, int node = 0) {
    args.insert(args.begin(), {"--node", nodeArg(node)});
    return meshcli(args, tmp_.path());
  }
  bool allHold(const std::string& key, std::uint64_t version, std::chrono::milliseconds max = 30s) {
    return eventually([&] {
      for (auto& n : nodes_) {
        if (!n.process().running()) continue;
        if (heldOn(n, key).version != version) return false;
      }
      return true;
    }, max, 50ms);
  }

  LoopbackSubnet net_;
  TempDir tmp_;
  std::vector<MeshdNode> nodes_;
};

TEST_F(PolicyCluster, EveryRefusalThroughMeshcliKeepsThePreviousVersionOnEveryNode) {
  for (const char* k : {"op1", "op2", "other"}) keygen(k);
  start(3, {"--policy-trusted-key", tmp_.sub("op1.pub"), "--policy-trusted-key", tmp_.sub("op2.pub"), "--policy-threshold", "2"});
  const std::string key = "Route/reviews";
  const std::vector<std::string> both = {"--key", tmp_.sub("op1.key"), "--key", tmp_.sub("op2.key")};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };

  // Versions 1 and 2, published properly: every node holds 2. Version 2 is also kept as a
  // signed file (for the replay below).
  writeFile(tmp_.sub("r1.yaml"), routeYaml("reviews", "reviews", 1000));
  writeFile(tmp_.sub("r2.yaml"), routeYaml("reviews", "reviews", 2000));
  writeFile(tmp_.sub("r3.yaml"), routeYaml("reviews", "reviews", 3000));
  auto p1 = cli(with({"policy", "publish", tmp_.sub("r1.yaml"), "--wait"}, both));
  ASSERT_EQ(p1.status.code, 0) << p1.out << p1.err;
  EXPECT_NE(p1.out.find("3 of 3 nodes hold version 1"), std::string::npos) << p1.out;
  auto s2 = cli(with({"policy", "sign", tmp_.sub("r2.yaml"), "--out", tmp_.sub("r2.signed.json")}, both));
  ASSERT_EQ(s2.status.code, 0) << s2.err;
  EXPECT_NE(s2.out.find("Signed Route/reviews version 2"), std::string::npos) << s2.out;  // the cluster's next
  auto p2 = cli({"policy", "publish", tmp_.sub("r2.signed.json"), "--wait"});
  ASSERT_EQ(p2.status.code, 0) << p2.err;
  ASSERT_TRUE(allHold(key, 2));
  const HeldVersion good = heldOn(nodes_[0], key);

  auto expectRefused = [&](const std::string& what, const RunResult& r, const std::string& text) {
    EXPECT_NE(r.status.code, 0) << what << ": " << r.out;
    EXPECT_NE(r.err.find(text), std::string::npos) << what << ": " << r.err;
    for (auto& n : nodes_) {
      EXPECT_EQ(heldOn(n, key).version, 2u) << what << " on " << n.options().name;
      EXPECT_EQ(heldOn(n, key).digest, good.digest) << what << " on " << n.options().name;
      EXPECT_EQ(historyOn(n, key), 2u) << what << " on " << n.options().name;
    }
  };

  expectRefused("below threshold", cli({"policy", "publish", tmp_.sub("r3.yaml"), "--key", tmp_.sub("op1.key")}),
                "signed by 1 trusted key(s); 2 required");
  expectRefused("untrusted signer",
                cli({"policy", "publish", tmp_.sub("r3.yaml"), "--key", tmp_.sub("op1.key"), "--key", tmp_.sub("other.key")}),
                "which this node does not trust");

  ASSERT_EQ(cli(with({"policy", "sign", tmp_.sub("r3.yaml"), "--out", tmp_.sub("r3.signed.json")}, both)).status.code, 0);
  auto signed3 = json::parse(std::ifstream(tmp_.sub("r3.signed.json")));
  {
    auto bad = signed3;
    auto sig = *base64Decode(bad["signatures"][0]["signature"].get<std::string>());
    sig[10] = static_cast<char>(sig[10] ^ 0x01);
    bad["signatures"][0]["signature"] = base64Encode(sig);
    writeFile(tmp_.sub("badsig.signed.json"), bad.dump());
    expectRefused("bad signature", cli({"policy", "publish", tmp_.sub("badsig.signed.json")}), "does not verify");
  }
  {
    auto bad = signed3;
    bad["body"] = json::parse(std::ifstream(tmp_.sub("r2.signed.json")))["body"];
    writeFile(tmp_.sub("swapped.signed.json"), bad.dump());
    expectRefused("digest mismatch", cli({"policy", "publish", tmp_.sub("swapped.signed.json")}),
                  "the body does not match the signed digest");
  }
  {
    auto bad = signed3;
    bad["version"] = 9;  // the version is signed too
    writeFile(tmp_.sub("bumped.signed.json"), bad.dump());
    expectRefused("version changed after signing", cli({"policy", "publish", tmp_.sub("bumped.signed.json")}), "does not verify");
  }
  ASSERT_EQ(cli(with({"policy", "sign", tmp_.sub("r3.yaml"), "--expires", "1s", "--out", tmp_.sub("exp.signed.json")}, both)).status.code, 0);
  std::this_thread::sleep_for(2100ms);
  expectRefused("expired", cli({"policy", "publish", tmp_.sub("exp.signed.json")}), "expired at");
  expectRefused("rollback", cli(with({"policy", "publish", tmp_.sub("r1.yaml"), "--version", "1"}, both)),
                "not higher than the version held, 2");
  expectRefused("replay", cli({"policy", "publish", tmp_.sub("r2.signed.json")}), "already held (a replay)");
  {
    // A body that is not a Route, validly signed (meshcli would never sign it: made here).
    std::vector<policy::KeyPair> keys{*policy::readPrivateKeyFile(tmp_.sub("op1.key")), *policy::readPrivateKeyFile(tmp_.sub("op2.key"))};
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string body(64, '\x07');
    auto e = policy::sign("Route", "reviews", 3, body, now, 0, keys);
    ASSERT_TRUE(e);
    writeFile(tmp_.sub("garbage.signed.json"), policy::signedToJson(policy::Signed{*e, body}));
    expectRefused("malformed body", cli({"policy", "publish", tmp_.sub("garbage.signed.json")}), "the document is not valid");
  }
  {
    writeFile(tmp_.sub("typo.yaml"), "kind: Route\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  htp: []\n");
    auto r = cli(with({"policy", "publish", tmp_.sub("typo.yaml")}, both));
    EXPECT_EQ(r.status.code, 2);
    expectRefused("unknown field", r, "typo.yaml:5: spec.htp: unknown field 'htp'");
  }

  // Nothing refused spread: a while later every node still holds version 2 and none of the
  // others saw a refused document arrive by gossip.
  std::this_thread::sleep_for(1500ms);
  for (auto& n : nodes_) EXPECT_EQ(heldOn(n, key), heldOn(nodes_[0], key));
  auto metrics = nodes_[0].get("/metrics")->body;
  for (const char* reason : {"below_threshold", "untrusted_signer", "bad_signature", "digest_mismatch", "expired", "not_newer", "invalid_body"}) {
    EXPECT_NE(metrics.find(std::string("mesh_policy_refused_total{reason=\"") + reason + "\",source=\"publish\"}"), std::string::npos)
        << reason;
  }
  for (std::size_t i = 1; i < nodes_.size(); ++i) {
    auto m = nodes_[i].get("/metrics")->body;
    EXPECT_EQ(m.find("mesh_policy_refused_total"), std::string::npos) << nodes_[i].options().name << " received a refused document";
  }

  // And a proper version 3 still goes through; a revert publishes version 1's content as 4.
  auto p3 = cli({"policy", "publish", tmp_.sub("r3.signed.json"), "--wait"});
  EXPECT_EQ(p3.status.code, 0) << p3.err;
  auto rv = cli(with({"policy", "revert", key, "--to", "1", "--wait"}, both), 1);
  EXPECT_EQ(rv.status.code, 0) << rv.out << rv.err;
  ASSERT_TRUE(allHold(key, 4));
  auto g1 = cli({"policy", "get", key, "--version", "1"});
  auto g4 = cli({"policy", "get", key}, 2);
  auto strip = [](std::string s) { return s.substr(s.find("spec:")); };
  EXPECT_EQ(strip(g1.out), strip(g4.out));
  auto diff = cli({"policy", "diff", key, "2", "4"});
  EXPECT_NE(diff.out.find("-      timeout: 2s\n+      timeout: 1s"), std::string::npos) << diff.out;
  auto st = cli({"policy", "status", key});
  EXPECT_NE(st.out.find("3 of 3 nodes hold version 4 of Route/reviews"), std::string::npos) << st.out;

  // One publish of a signed file and a YAML file together.
  writeFile(tmp_.sub("x.yaml"), routeYaml("x", "x"));
  writeFile(tmp_.sub("y.yaml"), routeYaml("y", "y"));
  ASSERT_EQ(cli(with({"policy", "sign", tmp_.sub("x.yaml"), "--out", tmp_.sub("x.signed.json")}, both)).status.code, 0);
  auto multi = cli(with({"policy", "publish", tmp_.sub("x.signed.json"), tmp_.sub("y.yaml"), "--wait"}, both));
  EXPECT_EQ(multi.status.code, 0) << multi.out << multi.err;
  EXPECT_TRUE(allHold("Route/x", 1));
  EXPECT_TRUE(allHold("Route/y", 1));
}

TEST_F(PolicyCluster, TwentyNodesConvergeAndNodesKilledDuringPublishesCatchUp) {
  keygen("op");
  const std::vector<std::string> trust = {"--policy-trusted-key", tmp_.sub("op.pub")};
  start(20, trust);
  const std::string key = "Route/web";
  auto publish = [&](int version, int node, bool wait) {
    writeFile(tmp_.sub("web.yaml"), routeYaml("web", "web", 100 * version));
    std::vector<std::string> a = {"policy", "publish", tmp_.sub("web.yaml"), "--key", tmp_.sub("op.key")};
    if (wait) a.push_back("--wait");
    auto r = cli(a, node);
    EXPECT_EQ(r.status.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("version " + std::to_string(version)), std::string::npos) << r.out;
    return r;
  };
  auto t0 = std::chrono::steady_clock::now();
  auto r1 = publish(1, 4, true);
  EXPECT_NE(r1.out.find("20 of 20 nodes hold version 1"), std::string::npos) << r1.out;
  std::printf("policy: 20 nodes hold version 1 %.0f ms after publish\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  for (auto& n : nodes_) {
    auto h = heldOn(n, key);
    EXPECT_EQ(h.version, 1u) << n.options().name;
    EXPECT_GT(h.snapshot, 0u) << n.options().name;
  }

  // Two nodes die just before a publish, one right after it; another publish follows.
  nodes_[7].process().signal(SIGKILL);
  nodes_[12].process().signal(SIGKILL);
  publish(2, 0, false);
  std::this_thread::sleep_for(30ms);
  nodes_[16].process().signal(SIGKILL);
  publish(3, 1, false);
  for (int i : {7, 12, 16}) ASSERT_TRUE(nodes_[static_cast<std::size_t>(i)].process().wait(5s).has_value());
  ASSERT_TRUE(allHold(key, 3)) << "live nodes did not converge";

  // They come back from their own data (no --join: they rejoin the peers they remembered).
  for (int i : {7, 12, 16}) {
    MeshdOptions o = nodes_[static_cast<std::size_t>(i)].options();
    o.extraArgs = trust;
    auto& again = nodes_.emplace_back(o);  // the dead entry is skipped from here on
    again.start();
    ASSERT_TRUE(again.waitReady()) << again.process().stderrText();
    EXPECT_GE(heldOn(again, key).version, 1u) << "a restarted node enforces what it held before";
  }
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(allHold(key, 3, 60s));
  std::printf("policy: restarted nodes hold the highest version %.0f ms after start\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count());
  std::string digest = heldOn(nodes_[0], key).digest;
  for (auto& n : nodes_) {
    if (!n.process().running()) continue;
    EXPECT_EQ(heldOn(n, key).digest, digest) << n.options().name;
  }
}

}  // namespace
}  // namespace mesh::testing
