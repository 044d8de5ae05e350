// Rate limits' token buckets and rules (node/proxy/ratelimit.h), with made-up times.

#include "node/proxy/ratelimit.h"

#include <gtest/gtest.h>

#include "node/policy/document.h"
#include "node/proxy/ratelimit_mesh.h"

namespace mesh::proxy {
namespace {

using namespace std::chrono_literals;

SteadyTime at(std::chrono::milliseconds ms) { return SteadyTime{} + 1h + ms; }

std::shared_ptr<const RateLimitTable> table(const std::string& yaml, const RateLimitTable* previous = nullptr,
                                            std::uint64_t version = 1) {
  auto parsed = policy::parseDocuments(yaml, "test.yaml");
  for (const auto& p : parsed.problems) ADD_FAILURE() << p.str();
  EXPECT_EQ(parsed.documents.size(), 1u);
  auto t = compileRateLimit("rl", version, parsed.documents.front().body, previous);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
  return t.ok() ? *t : nullptr;
}

h1::Head head(std::string_view path, std::vector<h1::Header> fields = {}) {
  h1::Head h;
  h.method = "GET";
  h.target = h.path = path;
  h.headers = std::move(fields);
  return h;
}

TEST(TokenBucketTest, BurstThenTheRefillRate) {
  TokenBucket b(3, 2, at(0ms));  // 3 at once, then 2 per second
  std::chrono::milliseconds wait{0};
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(at(0ms), wait));
  EXPECT_FALSE(b.take(at(0ms), wait));
  EXPECT_EQ(wait, 500ms);
  EXPECT_FALSE(b.take(at(499ms), wait));
  EXPECT_EQ(wait, 1ms);
  EXPECT_TRUE(b.take(at(500ms), wait));
  // A long pause refills to the burst, never beyond.
  EXPECT_TRUE(b.full(at(10000ms)));
  int n = 0;
  while (b.take(at(10000ms), wait)) ++n;
  EXPECT_EQ(n, 3);
}

TEST(TokenBucketTest, OverTimeItAdmitsTheRatePlusTheBurst) {
  TokenBucket b(10, 100, at(0ms));
  std::chrono::milliseconds wait{0};
  int admitted = 0;
  for (int ms = 0; ms < 10000; ++ms) {
    for (int k = 0; k < 3; ++k) admitted += b.take(at(std::chrono::milliseconds(ms)), wait);  // 300/s offered
  }
  EXPECT_NEAR(admitted, 10 + 100 * 10, 2);
}

constexpr const char* kLimits = R"(kind: RateLimit
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - {name: writes, match: [{methods: [POST]}], requestsPerUnit: 1, unit: MINUTE}
    - {name: per-user, keyBy: HEADER, header: X-User, requestsPerUnit: 2, unit: SECOND}
    - {name: per-caller, keyBy: SOURCE_IDENTITY, requestsPerUnit: 5, unit: SECOND, burst: 5}
)";

TEST(RateLimitTest, EachMatchingRuleTakesFromItsOwnBucket) {
  auto t = table(kLimits);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->service, "reviews");
  ASSERT_EQ(t->rules.size(), 3u);
  EXPECT_EQ(t->rules[0].unit, 60s);
  EXPECT_EQ(t->rules[1].header, "x-user");
  // Per user: two each per second; a request without the header is not limited by that rule.
  auto alice = head("/", {{"x-user", "alice"}});
  auto bob = head("/", {{"x-user", "bob"}});
  EXPECT_FALSE(t->check(alice, "reviews", "spiffe://d/node/a", at(0ms)));
  EXPECT_FALSE(t->check(alice, "reviews", "spiffe://d/node/b", at(0ms)));
  auto r = t->check(alice, "reviews", "spiffe://d/node/c", at(0ms));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rule->name, "per-user");
  EXPECT_EQ(r->retryAfter, 500ms);
  EXPECT_FALSE(t->check(bob, "reviews", "spiffe://d/node/c", at(0ms)));
  // Per caller: node a has used 1 of its 5; 4 more go (anonymous requests), then it is refused.
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(t->check(head("/"), "reviews", "spiffe://d/node/a", at(1ms)));
  r = t->check(head("/"), "reviews", "spiffe://d/node/a", at(1ms));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rule->name, "per-caller");
  EXPECT_FALSE(t->check(head("/"), "reviews", "spiffe://d/node/z", at(1ms)));
  // Writes: one a minute, whoever sends them.
  auto post = head("/");
  post.method = "POST";
  EXPECT_FALSE(t->check(post, "reviews", "spiffe://d/node/y", at(2ms)));
  r = t->check(post, "reviews", "spiffe://d/node/x", at(3ms));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rule->name, "writes");
  EXPECT_GT(r->retryAfter, 59s);
}

TEST(RateLimitTest, KeyByServiceGivesEachGuardedServiceItsOwnBucket) {
  auto t = table(R"(kind: RateLimit
metadata: {name: all}
spec:
  service: "*"
  rules:
    - {name: each, keyBy: SERVICE, requestsPerUnit: 1}
    - {name: together, requestsPerUnit: 3}
)");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->check(head("/"), "a", "", at(0ms)));
  EXPECT_FALSE(t->check(head("/"), "b", "", at(0ms)));
  EXPECT_EQ(t->check(head("/"), "a", "", at(0ms))->rule->name, "each");
  EXPECT_FALSE(t->check(head("/"), "c", "", at(0ms)));
  // a, b and c took three of "together" between them ("a"'s refused one took its token too).
  EXPECT_EQ(t->check(head("/"), "d", "", at(0ms))->rule->name, "together");
}

TEST(RateLimitTest, BucketsAreKeptWhileTheVersionStays) {
  auto t1 = table("kind: RateLimit\nmetadata: {name: r}\nspec:\n  service: s\n  rules:\n    - {requestsPerUnit: 1, unit: HOUR}\n");
  ASSERT_TRUE(t1);
  EXPECT_FALSE(t1->check(head("/"), "s", "", at(0ms)));
  EXPECT_TRUE(t1->check(head("/"), "s", "", at(0ms)));
  auto same = table("kind: RateLimit\nmetadata: {name: r}\nspec:\n  service: s\n  rules:\n    - {requestsPerUnit: 1, unit: HOUR}\n",
                    t1.get(), 1);
  EXPECT_TRUE(same->check(head("/"), "s", "", at(1ms)));  // still empty
  auto next = table("kind: RateLimit\nmetadata: {name: r}\nspec:\n  service: s\n  rules:\n    - {requestsPerUnit: 1, unit: HOUR}\n",
                    t1.get(), 2);
  EXPECT_FALSE(next->check(head("/"), "s", "", at(1ms)));  // a new version starts full
}

TEST(RateLimitTest, AFloodOfKeysIsBoundedAndLoosensNeverTightens) {
  RateLimitRule rule;
  rule.requestsPerUnit = 1;
  rule.unit = 3600s;
  RateLimiter l(rule);
  std::chrono::milliseconds wait{0};
  for (std::size_t i = 0; i < RateLimiter::kMaxKeys * 3; ++i) {
    EXPECT_TRUE(l.take("k" + std::to_string(i), at(0ms), wait));
    ASSERT_LE(l.keys(), RateLimiter::kMaxKeys);
  }
}

TEST(RateLimitTest, AMeshShareSlowsTheRefill) {
  RateLimitRule rule;
  rule.requestsPerUnit = 100;
  rule.burst = 1;
  rule.mesh = true;
  RateLimiter l(rule);
  std::chrono::milliseconds wait{0};
  EXPECT_TRUE(l.take("", at(0ms), wait));
  l.setShare(0.25, at(0ms));  // this node's quarter: 25/s
  int admitted = 0;
  for (int ms = 1; ms <= 4000; ++ms) admitted += l.take("", at(std::chrono::milliseconds(ms)), wait);
  EXPECT_NEAR(admitted, 100, 2);
  EXPECT_EQ(l.seen(), 4001u);
}

}  // namespace
}  // namespace mesh::proxy

namespace mesh::proxy {
namespace {

TEST(MeshRateLimitTest, UsageRecordsRoundTripAndBadOnesAreRefused) {
  UsageRecord r{"node-a", 1765000000123, {{"RateLimit/reviews@3#shared", 12.5}, {"RateLimit/all@1#each", 0}}};
  auto back = decodeUsage(encodeUsage(r));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, r);
  for (std::string bad : {std::string(""), std::string("mesh-usage/2\nn\n1\n"), std::string("mesh-usage/1\n\n1\n"),
                          std::string("mesh-usage/1\nn\nx\n"), std::string("mesh-usage/1\nn\n1\n12 id"),
                          std::string("mesh-usage/1\nn\n1\n-1 id\n"), std::string("mesh-usage/1\nn\n1\nnan id\n"),
                          std::string("mesh-usage/1\nn\n1\n5\n"), std::string("mesh-usage/1\nn\n1\n 5 id\n")}) {
    EXPECT_FALSE(decodeUsage(bad).ok()) << bad;
  }
  std::string many = "mesh-usage/1\nn\n1\n";
  for (std::size_t i = 0; i <= kMaxUsageEntries; ++i) many += "1 r" + std::to_string(i) + "\n";
  EXPECT_FALSE(decodeUsage(many).ok());
}

TEST(MeshRateLimitTest, SharesFollowDemandAndAddUpToOne) {
  EXPECT_EQ(meshShare(50, {}, 100), 1.0);  // alone: the whole rate
  // Equal demand: equal shares.
  EXPECT_NEAR(meshShare(30, {30, 30, 30}, 100), 0.25, 1e-9);
  // Skewed: by demand, with a floor of a tenth of the fair share for an idle node.
  std::vector<double> d{300, 100, 0, 0};
  double sum = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    std::vector<double> others;
    for (std::size_t k = 0; k < d.size(); ++k) {
      if (k != i) others.push_back(d[k]);
    }
    sum += meshShare(d[i], others, 100);
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_NEAR(meshShare(0, {300, 100, 0}, 100), 2.5 / 410, 1e-9);
  EXPECT_GT(meshShare(300, {100, 0, 0}, 100), 0.7);
}

}  // namespace
}  // namespace mesh::proxy
