#include "node/proxy/balancer.h"

#include <gtest/gtest.h>

#include <map>

#include "node/catalog/catalog.h"
#include "node/proxy/snapshot.h"

namespace mesh::proxy {
namespace {

std::shared_ptr<Cluster> cluster(Algorithm a, std::vector<std::pair<std::string, std::uint32_t>> eps,
                                 const std::string& zone = "z1", std::vector<std::string> zones = {}) {
  auto c = std::make_shared<Cluster>();
  c->service = "svc";
  c->lb.algorithm = a;
  for (std::size_t i = 0; i < eps.size(); ++i) {
    Endpoint e;
    e.node = eps[i].first;
    e.instanceId = "svc";
    e.key = e.node + "/svc";
    e.weight = eps[i].second;
    e.zone = i < zones.size() ? zones[i] : zone;
    c->endpoints.push_back(e);
  }
  std::vector<const Endpoint*> all, local;
  for (const auto& e : c->endpoints) {
    all.push_back(&e);
    if (e.zone == zone) local.push_back(&e);
  }
  c->all = makeSet(all, a);
  if (local.size() < all.size() && !local.empty()) c->local = makeSet(local, a);
  return c;
}

std::map<std::string, int> spread(Balancer& b, const Cluster& c, int n, std::string_view hash = {}) {
  std::map<std::string, int> out;
  for (int i = 0; i < n; ++i) ++out[b.pick(c, hash)->node];
  return out;
}

TEST(BalancerTest, RoundRobinIsExactAndSmoothWithWeights) {
  Balancer b(1);
  auto c = cluster(Algorithm::roundRobin, {{"a", 5}, {"b", 1}, {"c", 1}});
  std::string order;
  for (int i = 0; i < 7; ++i) order += b.pick(*c, {})->node;
  EXPECT_EQ(order, "aabacaa");  // nginx's smooth order, not aaaaabc
  auto s = spread(b, *c, 700);
  EXPECT_EQ(s["a"], 500);
  EXPECT_EQ(s["b"], 100);
  EXPECT_EQ(s["c"], 100);
}

TEST(BalancerTest, RandomFollowsWeights) {
  Balancer b(7);
  auto c = cluster(Algorithm::random, {{"a", 2}, {"b", 1}, {"c", 1}});
  auto s = spread(b, *c, 40000);
  EXPECT_NEAR(s["a"], 20000, 600);
  EXPECT_NEAR(s["b"], 10000, 500);
  EXPECT_NEAR(s["c"], 10000, 500);
}

TEST(BalancerTest, LeastRequestAvoidsTheBusyEndpoint) {
  Balancer b(3);
  auto c = cluster(Algorithm::leastRequest, {{"a", 1}, {"b", 1}, {"c", 1}});
  // "c" holds 50 requests in flight; the others none.
  for (int i = 0; i < 50; ++i) b.started(c->endpoints[2]);
  auto s = spread(b, *c, 3000);
  // c wins only when both choices are c: with 3 endpoints and distinct picks, never.
  EXPECT_EQ(s["c"], 0);
  EXPECT_NEAR(s["a"], 1500, 200);
  for (int i = 0; i < 50; ++i) b.finished(c->endpoints[2]);
  EXPECT_EQ(b.active("c/svc"), 0u);
  s = spread(b, *c, 3000);
  EXPECT_GT(s["c"], 700);
}

TEST(BalancerTest, RingHashIsStableAndMovesOnlyTheKeysOfAnEndpointThatGoes) {
  Balancer b(5);
  auto three = cluster(Algorithm::ringHash, {{"a", 1}, {"b", 1}, {"c", 1}});
  auto two = cluster(Algorithm::ringHash, {{"a", 1}, {"b", 1}});
  std::map<std::string, int> counts;
  int moved = 0, wasOnC = 0;
  for (int u = 0; u < 3000; ++u) {
    const std::string key = "user-" + std::to_string(u);
    const auto* e = b.pick(*three, key);
    EXPECT_EQ(b.pick(*three, key), e);  // the same key, the same endpoint
    ++counts[e->node];
    const auto* after = b.pick(*two, key);
    if (e->node == "c")
      ++wasOnC;
    else if (after->node != e->node)
      ++moved;
  }
  for (const auto& [n, k] : counts) EXPECT_NEAR(k, 1000, 150) << n;
  EXPECT_EQ(moved, 0);  // only c's keys moved
  EXPECT_GT(wasOnC, 0);
  // Another node's balancer (another seed) maps keys the same: every proxy agrees.
  Balancer other(99);
  for (int u = 0; u < 100; ++u) {
    const std::string key = "k" + std::to_string(u);
    EXPECT_EQ(b.pick(*three, key)->key, other.pick(*three, key)->key);
  }
}

TEST(BalancerTest, SameZoneFirstThenSpillOver) {
  Balancer b(2);
  auto c = cluster(Algorithm::roundRobin, {{"a", 1}, {"b", 1}, {"c", 1}}, "z1", {"z1", "z2", "z2"});
  auto s = spread(b, *c, 100);
  EXPECT_EQ(s["a"], 100);
  // With no healthy endpoint in our zone the compiled cluster has no local set: all zones.
  auto far = cluster(Algorithm::roundRobin, {{"b", 1}, {"c", 1}}, "z1", {"z2", "z2"});
  s = spread(b, *far, 100);
  EXPECT_EQ(s["b"], 50);
  EXPECT_EQ(s["c"], 50);
}

TEST(BalancerTest, ARetryAvoidsTheEndpointThatFailed) {
  Balancer b(4);
  auto c = cluster(Algorithm::ringHash, {{"a", 1}, {"b", 1}});
  for (int u = 0; u < 200; ++u) {
    const std::string key = "u" + std::to_string(u);
    const auto* first = b.pick(*c, key);
    EXPECT_NE(b.pick(*c, key, first->key), first);
  }
  // The only endpoint of our zone failed: the retry goes to another zone.
  auto z = cluster(Algorithm::roundRobin, {{"a", 1}, {"b", 1}}, "z1", {"z1", "z2"});
  EXPECT_EQ(b.pick(*z, {}, "a/svc")->node, "b");
  auto none = cluster(Algorithm::roundRobin, {});
  EXPECT_EQ(b.pick(*none, {}), nullptr);
}

catalog::Instance instance(const std::string& id, const std::string& name, catalog::Health h,
                           const std::string& zone = "z1") {
  catalog::Instance in;
  in.id = id;
  in.name = name;
  in.address = "10.0.0.9";
  in.port = 8080;
  in.health = h;
  in.zone = zone;
  return in;
}

TEST(SnapshotTest, OnlyHealthyInstancesOfLiveProxiedNodesAreEndpoints) {
  catalog::Catalog cat;
  cat.apply({"me", 1, {instance("mine", "reviews", catalog::Health::passing)}});
  cat.apply(
      {"n1",
       1,
       {instance("r1", "reviews", catalog::Health::passing), instance("x1", "ratings", catalog::Health::critical)}});
  cat.apply({"n2", 1, {instance("r2", "reviews", catalog::Health::warning, "z2")}});
  cat.apply({"n3", 1, {instance("r3", "reviews", catalog::Health::passing)}});  // dead
  cat.apply({"n4", 1, {instance("r4", "reviews", catalog::Health::passing)}});  // runs no proxy
  auto maint = instance("r5", "reviews", catalog::Health::passing);
  maint.maintenance = true;
  cat.apply({"n5", 1, {maint}});
  std::map<std::string, MemberInfo> members;
  for (const char* n : {"n1", "n2", "n3", "n5"}) members[n] = {true, HostPort{"10.0.0.1", 15006, false, true}};
  members["n3"].alive = false;
  members["n4"] = {true, std::nullopt};
  CompileInput in;
  in.version = 7;
  in.nodeName = "me";
  in.zone = "z1";
  in.catalog = &cat;
  in.members = &members;
  in.ownInbound = HostPort{"10.0.0.9", 15006, false, true};
  auto snap = compile(in);
  EXPECT_EQ(snap->version, 7u);
  const auto* reviews = snap->find("reviews");
  ASSERT_NE(reviews, nullptr);
  std::vector<std::string> keys;
  for (const auto& e : reviews->endpoints) keys.push_back(e.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"me/mine", "n1/r1", "n2/r2"}));
  EXPECT_EQ(reviews->local.endpoints.size(), 2u);  // z1's, preferred
  // A service with no healthy instance is known (503 "no healthy endpoint", not "no service").
  ASSERT_NE(snap->find("ratings"), nullptr);
  EXPECT_TRUE(snap->find("ratings")->endpoints.empty());
  EXPECT_EQ(snap->find("nothing"), nullptr);
  // Our own instances are delivered by the inbound listener.
  ASSERT_TRUE(snap->local.contains("mine"));
  EXPECT_EQ(snap->local.at("mine").address.toString(), "10.0.0.9:8080");
  EXPECT_EQ(snap->byAddress.at("10.0.0.9:8080"), "reviews");
}

}  // namespace
}  // namespace mesh::proxy
