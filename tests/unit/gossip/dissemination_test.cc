// Dissemination on a simulated network (virtual clock, in-process peers with delay, loss and
// partitions): a change reaches every node by gossip and pulls; anti-entropy repairs what loss
// dropped; changes made on both sides of a partition are everywhere after it heals; an older
// version never replaces a newer one; hostile packets and requests are refused.

#include "gossip/dissem/dissemination.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "common/metrics.h"
#include "common/virtual_clock.h"

namespace mesh::dissem {
namespace {

using namespace std::chrono_literals;

struct MapRecords : Records {
  std::map<std::string, std::pair<std::uint64_t, std::string>> held;
  int offers = 0;
  std::map<std::string, std::uint64_t> versions() override {
    std::map<std::string, std::uint64_t> out;
    for (const auto& [k, v] : held) out[k] = v.first;
    return out;
  }
  std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) override {
    auto it = held.find(key);
    if (it == held.end()) return std::nullopt;
    return it->second;
  }
  bool offer(const std::string& key, std::uint64_t version, std::string_view body) override {
    ++offers;
    auto it = held.find(key);
    if (it != held.end() && it->second.first >= version) return false;
    // The body says which version it is: a body that does not match is refused.
    if (body != key + "@" + std::to_string(version)) return false;
    held[key] = {version, std::string(body)};
    return true;
  }
  void set(const std::string& key, std::uint64_t v) { held[key] = {v, key + "@" + std::to_string(v)}; }
};

class SimNet;

struct SimNode : Network {
  SimNet* net = nullptr;
  std::string name;
  MapRecords records;
  std::unique_ptr<Dissemination> d;
  std::size_t peerCount() override { return peers().size(); }
  std::vector<std::string> randomPeers(std::size_t k) override {
    auto all = peers();
    std::shuffle(all.begin(), all.end(), rng);
    if (all.size() > k) all.resize(k);
    return all;
  }
  std::vector<std::string> peers();
  std::mt19937_64 rng;  // seeded per node by SimNet
  void send(const std::string& peer, std::string packet) override;
  void request(const std::string& peer, std::string body, Duration timeout,
               std::function<void(Result<std::string>)> done) override;
};

class SimNet {
 public:
  explicit SimNet(int n, double loss = 0) : loss_(loss), rng_(42) {
    for (int i = 0; i < n; ++i) {
      auto node = std::make_unique<SimNode>();
      node->net = this;
      node->name = "n" + std::to_string(i);
      node->rng.seed(static_cast<std::uint64_t>(i) * 7919 + 1);
      Config c;
      c.self = node->name;
      node->d = std::make_unique<Dissemination>(c, clock, *node, registry);
      node->d->addKind(1, "test", node->records);
      nodes.push_back(std::move(node));
    }
    for (auto& n : nodes) n->d->start();
  }
  SimNode* find(const std::string& name) {
    for (auto& n : nodes) {
      if (n->name == name) return n.get();
    }
    return nullptr;
  }
  bool linked(const std::string& a, const std::string& b) const {
    return side_.empty() || side_.contains(a) == side_.contains(b);
  }
  bool lose() { return std::uniform_real_distribution<double>(0, 1)(rng_) < loss_; }
  Duration delay() { return std::chrono::microseconds(std::uniform_int_distribution<int>(200, 2000)(rng_)); }
  void partition(std::set<std::string> side) { side_ = std::move(side); }
  void heal() { side_.clear(); }
  bool everyoneHas(const std::string& key, std::uint64_t v) {
    for (auto& n : nodes) {
      auto it = n->records.held.find(key);
      if (it == n->records.held.end() || it->second.first != v) return false;
    }
    return true;
  }
  Duration untilEveryoneHas(const std::string& key, std::uint64_t v, Duration max) {
    const TimePoint start = clock.now();
    while (!everyoneHas(key, v) && clock.now() - start < max) clock.advance(10ms);
    return clock.now() - start;
  }

  VirtualClock clock;
  metrics::Registry registry;
  std::vector<std::unique_ptr<SimNode>> nodes;
  double loss_;

 private:
  std::mt19937_64 rng_;
  std::set<std::string> side_;
};

std::vector<std::string> SimNode::peers() {
  std::vector<std::string> out;
  for (auto& n : net->nodes) {
    if (n->name != name) out.push_back(n->name);
  }
  return out;
}

void SimNode::send(const std::string& peer, std::string packet) {
  if (!net->linked(name, peer) || net->lose()) return;
  net->clock.runAfter(net->delay(), [net = net, peer, packet = std::move(packet)] {
    if (auto* n = net->find(peer)) n->d->onPacket(packet);
  });
}

void SimNode::request(const std::string& peer, std::string body, Duration timeout,
                      std::function<void(Result<std::string>)> done) {
  // Streams are reliable, but a cut link fails them (after the timeout).
  if (!net->linked(name, peer)) {
    net->clock.runAfter(timeout, [done] { done(Error(errc::timeout, "cut")); });
    return;
  }
  net->clock.runAfter(net->delay(), [net = net, peer, body = std::move(body), done] {
    auto* n = net->find(peer);
    if (!n) return done(Error(errc::unavailable, "gone"));
    n->d->onRequest(body, [net, done](Result<std::string> r) {
      net->clock.runAfter(net->delay(), [done, r] { done(r); });
    });
  });
}

TEST(Dissemination, AChangeReachesEveryNode) {
  SimNet net(30);
  net.nodes[7]->records.set("owner-7", 3);
  net.nodes[7]->d->announce(1, "owner-7", 3);
  const Duration took = net.untilEveryoneHas("owner-7", 3, 10s);
  EXPECT_TRUE(net.everyoneHas("owner-7", 3));
  // log3(30) rounds of 200 ms, plus the pulls: well under the 10 s anti-entropy period.
  EXPECT_LT(took, 3s);
  // A newer version replaces it everywhere; the older one is never taken back.
  net.nodes[7]->records.set("owner-7", 4);
  net.nodes[7]->d->announce(1, "owner-7", 4);
  net.untilEveryoneHas("owner-7", 4, 10s);
  EXPECT_TRUE(net.everyoneHas("owner-7", 4));
  EXPECT_FALSE(net.nodes[3]->records.offer("owner-7", 3, "owner-7@3"));
  net.clock.advance(30s);  // anti-entropy rounds: nothing moves backwards
  EXPECT_TRUE(net.everyoneHas("owner-7", 4));
}

TEST(Dissemination, AntiEntropyRepairsWhatLossDropped) {
  SimNet net(20, /*loss=*/0.6);
  for (int i = 0; i < 5; ++i) {
    net.nodes[i]->records.set("k" + std::to_string(i), 1);
    net.nodes[i]->d->announce(1, "k" + std::to_string(i), 1);
  }
  net.clock.advance(60s);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(net.everyoneHas("k" + std::to_string(i), 1)) << i;
  EXPECT_NE(net.registry.render().find("mesh_dissem_anti_entropy_rounds_total{result=\"differ\"}"), std::string::npos);
}

TEST(Dissemination, BothSidesOfAPartitionConverge) {
  SimNet net(10);
  net.partition({"n0", "n1", "n2", "n3", "n4"});
  net.nodes[1]->records.set("left-side", 5);
  net.nodes[1]->d->announce(1, "left-side", 5);
  net.nodes[8]->records.set("right-side", 9);
  net.nodes[8]->d->announce(1, "right-side", 9);
  net.clock.advance(20s);
  EXPECT_FALSE(net.everyoneHas("left-side", 5));
  EXPECT_EQ(net.nodes[4]->records.held.at("left-side").first, 5u);  // its own side has it
  EXPECT_FALSE(net.nodes[6]->records.held.contains("left-side"));
  net.heal();
  net.clock.advance(40s);
  EXPECT_TRUE(net.everyoneHas("left-side", 5));
  EXPECT_TRUE(net.everyoneHas("right-side", 9));
}

TEST(Dissemination, HostileInputIsRefused) {
  auto ok = decodeDigests(encodeDigests("n1", {{1, "a", 7}, {2, "b", 1ull << 40}}));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->first, "n1");
  EXPECT_EQ(ok->second[1].version, 1ull << 40);
  for (std::string bad : {std::string(""), std::string("\x40"), std::string("\x40\x05n1"), std::string("\x41\x00\x00"),
                          std::string("\x40\x02n1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
                          encodeDigests("n1", {{1, "a", 7}}) + "x"}) {
    EXPECT_FALSE(decodeDigests(bad).ok()) << bad.size();
  }
  EXPECT_FALSE(decodeRequest("").ok());
  EXPECT_FALSE(decodeRequest("\x09\x01").ok());
  EXPECT_FALSE(decodeRequest(encodeRequest({Request::Op::get, 1, "k", 0}) + "x").ok());
  // A peer that answers a pull with a body for another version: refused, nothing changes.
  SimNet net(2);
  net.nodes[0]->records.held["k"] = {9, "k@1"};  // lies about its version
  net.nodes[0]->d->announce(1, "k", 9);
  net.clock.advance(5s);
  EXPECT_FALSE(net.nodes[1]->records.held.contains("k"));
  // A request for an unknown kind gets an error, not a crash.
  std::optional<Result<std::string>> got;
  net.nodes[1]->d->onRequest(encodeRequest({Request::Op::get, 99, "k", 0}), [&](Result<std::string> r) { got = r; });
  ASSERT_TRUE(got && !got->ok());
}

}  // namespace
}  // namespace mesh::dissem
