// Circuit breakers' counters and outlier detection's rules (node/proxy/resilience.h), with
// made-up times; and the balancer leaving ejected endpoints out.

#include "node/proxy/resilience.h"

#include <gtest/gtest.h>

#include "node/catalog/catalog.h"
#include "node/proxy/balancer.h"
#include "node/proxy/snapshot.h"

namespace mesh::proxy {
namespace {

using namespace std::chrono_literals;

SteadyTime at(std::chrono::milliseconds ms) { return SteadyTime{} + 1h + ms; }

struct Endpoints {
  explicit Endpoints(int n) {
    for (int i = 0; i < n; ++i) owned.push_back(std::make_shared<EndpointHealth>());
    for (auto& h : owned) ptrs.push_back(h.get());
  }
  std::vector<std::shared_ptr<EndpointHealth>> owned;
  std::vector<EndpointHealth*> ptrs;
  EndpointHealth& operator[](int i) { return *owned[static_cast<std::size_t>(i)]; }
};

TEST(CircuitBreakerTest, ALimitIsNeverExceededAndZeroMeansNone) {
  std::atomic<std::int64_t> n{0};
  EXPECT_TRUE(ClusterState::tryAcquire(n, 2));
  EXPECT_TRUE(ClusterState::tryAcquire(n, 2));
  EXPECT_FALSE(ClusterState::tryAcquire(n, 2));
  EXPECT_EQ(n.load(), 2);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(ClusterState::tryAcquire(n, 0));
  EXPECT_EQ(n.load(), 102);
}

TEST(CircuitBreakerTest, ASlotGivesItsCountBackOnceWhenItGoes) {
  auto st = std::make_shared<ClusterState>();
  {
    ASSERT_TRUE(ClusterState::tryAcquire(st->requests, 1));
    Slot a(st, &st->requests);
    EXPECT_EQ(st->requests.load(), 1);
    Slot b = std::move(a);
    EXPECT_FALSE(a);
    EXPECT_TRUE(b);
    b.release();
    b.release();
    EXPECT_EQ(st->requests.load(), 0);
    ASSERT_TRUE(ClusterState::tryAcquire(st->requests, 1));
    b = Slot(st, &st->requests);
  }
  EXPECT_EQ(st->requests.load(), 0);
}

TEST(OutlierTest, ConsecutiveErrorsEjectAtTheThresholdAndASuccessResetsTheRun) {
  ClusterState st;
  OutlierPolicy p;
  p.consecutive5xx = 3;
  p.maxEjectionPercent = 100;
  Endpoints e(4);
  EXPECT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[0], Outcome::gatewayError, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[0], Outcome::success, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_FALSE(e[0].ejected(at(1ms)));
  EXPECT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, at(1ms)), Ejection::consecutive5xx);
  EXPECT_TRUE(e[0].ejected(at(2ms)));
  // The base ejection time (30 s) later it is back.
  EXPECT_TRUE(e[0].ejected(at(30000ms)));
  EXPECT_FALSE(e[0].ejected(at(30001ms)));
}

TEST(OutlierTest, GatewayErrorsHaveTheirOwnThresholdAndAnAppErrorBreaksTheirRun) {
  ClusterState st;
  OutlierPolicy p;
  p.consecutiveGateway = 2;
  p.maxEjectionPercent = 100;
  Endpoints e(2);
  EXPECT_EQ(st.record(p, e[1], Outcome::gatewayError, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[1], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::none);  // a 500 is the app's
  EXPECT_EQ(st.record(p, e[1], Outcome::gatewayError, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[1], Outcome::gatewayError, e.ptrs, at(0ms)), Ejection::consecutiveGateway);
  EXPECT_EQ(outcomeOf(0), Outcome::gatewayError);
  EXPECT_EQ(outcomeOf(503), Outcome::gatewayError);
  EXPECT_EQ(outcomeOf(500), Outcome::error5xx);
  EXPECT_EQ(outcomeOf(404), Outcome::success);
}

TEST(OutlierTest, MaxEjectionPercentBoundsHowManyAreOut) {
  ClusterState st;
  OutlierPolicy p;
  p.consecutive5xx = 1;
  p.maxEjectionPercent = 50;
  Endpoints e(4);
  EXPECT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::consecutive5xx);
  EXPECT_EQ(st.record(p, e[1], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::consecutive5xx);
  // Half are out: no more, however bad the others are.
  EXPECT_EQ(st.record(p, e[2], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_EQ(st.record(p, e[3], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::none);
  EXPECT_FALSE(e[2].ejected(at(1ms)));
  // As Envoy: with the default 10% and three endpoints, the first may still go.
  ClusterState st3;
  OutlierPolicy d;
  d.consecutive5xx = 1;
  Endpoints three(3);
  EXPECT_EQ(st3.record(d, three[0], Outcome::error5xx, three.ptrs, at(0ms)), Ejection::consecutive5xx);
  EXPECT_EQ(st3.record(d, three[1], Outcome::error5xx, three.ptrs, at(0ms)), Ejection::none);
}

TEST(OutlierTest, EjectionTimeGrowsWithRepeatsAndShrinksAfterHealthyIntervals) {
  ClusterState st;
  OutlierPolicy p;
  p.consecutive5xx = 1;
  p.maxEjectionPercent = 100;
  p.baseEjection = 1000ms;
  p.interval = 500ms;
  Endpoints e(2);
  auto now = at(0ms);
  (void)st.evaluate(p, e.ptrs, now);  // starts the interval clock
  ASSERT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, now), Ejection::consecutive5xx);
  EXPECT_TRUE(e[0].ejected(now + 999ms));
  EXPECT_FALSE(e[0].ejected(now + 1000ms));
  // Back after 1 s; fails again at once: 2 s this time, then 3 s.
  now += 1000ms;
  auto ev = st.evaluate(p, e.ptrs, now);
  EXPECT_TRUE(ev.ran);
  EXPECT_EQ(ev.returned, 1);
  ASSERT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, now), Ejection::consecutive5xx);
  EXPECT_TRUE(e[0].ejected(now + 1999ms));
  EXPECT_FALSE(e[0].ejected(now + 2000ms));
  now += 2000ms;
  EXPECT_EQ(st.evaluate(p, e.ptrs, now).returned, 1);
  ASSERT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, now), Ejection::consecutive5xx);
  EXPECT_TRUE(e[0].ejected(now + 2999ms));
  EXPECT_EQ(e[0].ejections.load(), 3u);
  // Healthy intervals bring the multiplier down, one each.
  now += 3000ms;
  EXPECT_EQ(st.evaluate(p, e.ptrs, now).returned, 1);
  EXPECT_EQ(e[0].ejections.load(), 3u);
  now += 500ms;
  (void)st.evaluate(p, e.ptrs, now);
  now += 500ms;
  (void)st.evaluate(p, e.ptrs, now);
  EXPECT_EQ(e[0].ejections.load(), 1u);
  // The evaluation acts once per interval, however often it is called.
  EXPECT_FALSE(st.evaluate(p, e.ptrs, now + 100ms).ran);
}

TEST(OutlierTest, ARepeatedEjectionIsCappedAtTheMaximum) {
  ClusterState st;
  OutlierPolicy p;
  p.consecutive5xx = 1;
  p.maxEjectionPercent = 100;
  p.baseEjection = 100000ms;
  Endpoints e(1);
  e[0].ejections = 9;
  ASSERT_EQ(st.record(p, e[0], Outcome::error5xx, e.ptrs, at(0ms)), Ejection::consecutive5xx);
  EXPECT_TRUE(e[0].ejected(at(kMaxEjection - 1ms)));
  EXPECT_FALSE(e[0].ejected(at(kMaxEjection)));
}

TEST(OutlierTest, SuccessRateEjectsTheOneFarBelowTheOthers) {
  ClusterState st;
  OutlierPolicy p;
  p.successRateMinimumHosts = 3;
  p.successRateStdevFactor = 1.0;
  p.maxEjectionPercent = 100;
  p.interval = 1000ms;
  Endpoints e(5);
  (void)st.evaluate(p, e.ptrs, at(0ms));
  for (int i = 0; i < 5; ++i) {
    for (int k = 0; k < 200; ++k) {
      // Endpoint 4 fails half its requests; the others 1 in 100.
      bool bad = i == 4 ? k % 2 == 0 : k % 100 == 0;
      (void)st.record(p, e[i], bad ? Outcome::error5xx : Outcome::success, e.ptrs, at(10ms));
    }
  }
  auto ev = st.evaluate(p, e.ptrs, at(1000ms));
  EXPECT_TRUE(ev.ran);
  EXPECT_EQ(ev.ejected, 1);
  EXPECT_TRUE(e[4].ejected(at(1001ms)));
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(e[i].ejected(at(1001ms)));
  // The interval's counts start again.
  EXPECT_EQ(e[0].requests.load(), 0u);
}

TEST(OutlierTest, SuccessRateNeedsEnoughEndpointsWithEnoughRequests) {
  ClusterState st;
  OutlierPolicy p;
  p.successRateMinimumHosts = 3;
  p.maxEjectionPercent = 100;
  p.interval = 1000ms;
  Endpoints e(3);
  (void)st.evaluate(p, e.ptrs, at(0ms));
  for (int i = 0; i < 3; ++i) {
    // Endpoint 2 served too few to be judged: only two are, fewer than the minimum.
    const int n = i == 2 ? 50 : 200;
    for (int k = 0; k < n; ++k) (void)st.record(p, e[i], i == 0 ? Outcome::error5xx : Outcome::success, e.ptrs, at(1ms));
  }
  EXPECT_EQ(st.evaluate(p, e.ptrs, at(1000ms)).ejected, 0);
}

std::shared_ptr<Cluster> outlierCluster(Algorithm a, int n) {
  auto c = std::make_shared<Cluster>();
  c->service = c->key = "svc";
  c->lb.algorithm = a;
  c->outlier.consecutive5xx = 1;
  c->outlier.maxEjectionPercent = 100;
  c->state = std::make_shared<ClusterState>();
  for (int i = 0; i < n; ++i) {
    Endpoint e;
    e.node = std::string(1, static_cast<char>('a' + i));
    e.key = e.node + "/svc";
    e.zone = "z1";
    e.health = c->state->health(e.key);
    c->endpoints.push_back(e);
  }
  std::vector<const Endpoint*> all;
  for (const auto& e : c->endpoints) {
    all.push_back(&e);
    c->health.push_back(e.health.get());
  }
  c->all = makeSet(all, a);
  return c;
}

TEST(OutlierTest, TheBalancerLeavesEjectedEndpointsOutUntilEveryOneIs) {
  for (auto a : {Algorithm::roundRobin, Algorithm::random, Algorithm::leastRequest, Algorithm::ringHash}) {
    Balancer b(3);
    auto c = outlierCluster(a, 3);
    const auto now = std::chrono::steady_clock::now();
    ASSERT_EQ(c->state->record(c->outlier, *c->endpoints[1].health, Outcome::error5xx, c->health, now),
              Ejection::consecutive5xx);
    std::map<std::string, int> seen;
    for (int i = 0; i < 300; ++i) ++seen[b.pick(*c, "key" + std::to_string(i))->node];
    EXPECT_EQ(seen.count("b"), 0u) << algorithmName(a);
    EXPECT_GT(seen["a"] + seen["c"], 0);
    // All ejected: an ejected endpoint rather than none.
    for (int k : {0, 2}) {
      (void)c->state->record(c->outlier, *c->endpoints[static_cast<std::size_t>(k)].health, Outcome::error5xx,
                             c->health, now);
    }
    EXPECT_NE(b.pick(*c, "k"), nullptr) << algorithmName(a);
  }
}

catalog::Instance instance(const std::string& id, const std::string& version) {
  catalog::Instance in;
  in.id = id;
  in.name = "reviews";
  in.address = "127.0.0.1";
  in.port = 8080;
  in.health = catalog::Health::passing;
  in.labels["version"] = version;
  return in;
}

TEST(OutlierTest, ACompiledClusterKeepsItsStateAcrossSnapshots) {
  catalog::Catalog cat;
  cat.apply({"n1", 1, {instance("r1", "v1")}});
  cat.apply({"n2", 1, {instance("r2", "v2")}});
  std::map<std::string, MemberInfo> members;
  for (const char* n : {"n1", "n2"}) members[n] = {true, HostPort{"10.0.0.1", 15006, false, true}};
  CompileInput in;
  in.nodeName = "me";
  in.catalog = &cat;
  in.members = &members;
  auto first = compile(in);
  const auto* c1 = first->find("reviews");
  ASSERT_NE(c1, nullptr);
  c1->state->requests = 5;
  c1->endpoints[0].health->ejections = 2;
  in.previous = first.get();
  cat.apply({"n3", 1, {instance("r3", "v1")}});
  members["n3"] = {true, HostPort{"10.0.0.3", 15006, false, true}};
  auto second = compile(in);
  const auto* c2 = second->find("reviews");
  ASSERT_NE(c2, nullptr);
  EXPECT_EQ(c2->state, c1->state);
  EXPECT_EQ(c2->state->requests.load(), 5);
  ASSERT_EQ(c2->endpoints.size(), 3u);
  EXPECT_EQ(c2->endpoints[0].health, c1->endpoints[0].health);
  EXPECT_EQ(c2->endpoints[0].health->ejections.load(), 2u);
  EXPECT_EQ(c2->health.size(), 3u);
}

}  // namespace
}  // namespace mesh::proxy
