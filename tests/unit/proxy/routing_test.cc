#include "node/proxy/routing.h"

#include <gtest/gtest.h>

#include <map>

#include "node/catalog/catalog.h"
#include "node/policy/document.h"
#include "node/policy/policy_store.h"
#include "node/proxy/balancer.h"
#include "node/proxy/snapshot.h"

namespace mesh::proxy {
namespace {

// A document's body from YAML, through the same parser and checks as meshcli's.
std::string body(const std::string& yaml) {
  auto parsed = policy::parseDocuments(yaml, "test.yaml");
  for (const auto& p : parsed.problems) ADD_FAILURE() << p.str();
  EXPECT_EQ(parsed.documents.size(), 1u);
  return parsed.documents.empty() ? std::string() : parsed.documents.front().body;
}

std::shared_ptr<const RouteTable> table(const std::string& yaml) {
  auto t = compileRoute("r", 1, body(yaml));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
  return t.ok() ? *t : nullptr;
}

struct Req {
  std::string method = "GET", path = "/", host = "reviews";
  std::vector<std::pair<std::string, std::string>> fields;
  h1::Head head() const {
    h1::Head h;
    h.method = method;
    h.target = h.path = path;
    h.host = host;
    for (const auto& [n, v] : fields) h.headers.push_back({n, v});
    return h;
  }
};

std::string ruleFor(const RouteTable& t, const Req& r) {
  auto h = r.head();
  const auto* rule = t.match(h);
  return rule ? rule->name : "none";
}

TEST(RoutingTest, FirstMatchingRuleWinsOverPathHeadersMethodsQueryAndAuthority) {
  auto t = table(R"(
kind: Route
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
    - name: exact
      match: [{path: {exact: /health}}]
      route: [{destination: {service: reviews}}]
    - name: regex
      match: [{path: {regex: "/items/[0-9]+"}}]
      route: [{destination: {service: reviews}}]
    - name: user
      match:
        - headers: {x-user: {exact: alice}}
        - headers: {x-group: {prefix: beta-}}
      route: [{destination: {service: reviews}}]
    - name: post-api
      match: [{path: {prefix: /api}, methods: [POST, PUT]}]
      route: [{destination: {service: reviews}}]
    - name: debug
      match: [{headers: {x-debug: {present: true}, x-prod: {present: false}}}]
      route: [{destination: {service: reviews}}]
    - name: query
      match: [{queryParams: {flag: {exact: "on x"}}}]
      route: [{destination: {service: reviews}}]
    - name: host
      match: [{authority: {regex: "reviews(\\.mesh)?:9080"}}]
      route: [{destination: {service: reviews}}]
    - name: agent
      match: [{headers: {user-agent: {regex: ".*curl.*"}}}]
      route: [{destination: {service: reviews}}]
)");
  ASSERT_TRUE(t);
  EXPECT_EQ(ruleFor(*t, {.path = "/health"}), "exact");
  EXPECT_EQ(ruleFor(*t, {.path = "/health/x"}), "none");
  EXPECT_EQ(ruleFor(*t, {.path = "/items/42"}), "regex");
  EXPECT_EQ(ruleFor(*t, {.path = "/items/42?x=1"}), "regex");  // the query is not part of the path
  EXPECT_EQ(ruleFor(*t, {.path = "/items/4x"}), "none");        // a regex matches the whole value
  EXPECT_EQ(ruleFor(*t, {.fields = {{"X-User", "alice"}}}), "user");  // names fold, values do not
  EXPECT_EQ(ruleFor(*t, {.fields = {{"x-user", "Alice"}}}), "none");
  EXPECT_EQ(ruleFor(*t, {.fields = {{"x-group", "beta-1"}}}), "user");  // any one match of a rule
  EXPECT_EQ(ruleFor(*t, {.method = "POST", .path = "/api/x"}), "post-api");
  EXPECT_EQ(ruleFor(*t, {.method = "GET", .path = "/api/x"}), "none");
  EXPECT_EQ(ruleFor(*t, {.fields = {{"x-debug", ""}}}), "debug");
  EXPECT_EQ(ruleFor(*t, {.fields = {{"x-debug", "1"}, {"x-prod", "1"}}}), "none");
  EXPECT_EQ(ruleFor(*t, {.path = "/q?a=1&flag=on+x"}), "query");
  EXPECT_EQ(ruleFor(*t, {.path = "/q?flag=on%20x"}), "query");
  EXPECT_EQ(ruleFor(*t, {.path = "/q?flag=off"}), "none");
  EXPECT_EQ(ruleFor(*t, {.host = "reviews.mesh:9080"}), "host");
  EXPECT_EQ(ruleFor(*t, {.fields = {{"user-agent", "curl/7.88"}}}), "agent");
  // A value longer than the regex bound never matches a regex (and costs no stack).
  EXPECT_EQ(ruleFor(*t, {.fields = {{"user-agent", "curl" + std::string(kMaxRegexInput, 'a')}}}), "none");
  EXPECT_EQ(ruleFor(*t, {.path = "/items/" + std::string(100000, '7')}), "none");
}

TEST(RoutingTest, WeightsSplitExactlyOverTheDrawsAndOneDestinationTakesAll) {
  auto t = table(R"(
kind: Route
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
    - route:
        - {destination: {service: reviews, subset: v1}, weight: 90}
        - {destination: {service: reviews, subset: v2}, weight: 10}
)");
  ASSERT_TRUE(t);
  const auto& rule = t->rules.at(0);
  EXPECT_EQ(rule.name, "#0");
  EXPECT_EQ(rule.totalWeight, 100u);
  std::map<std::string, int> n;
  for (std::uint64_t d = 0; d < 1000; ++d) ++n[pickDestination(rule, d)->subset];
  EXPECT_EQ(n["v1"], 900);
  EXPECT_EQ(n["v2"], 100);
  // The balancer's generator is uniform enough for the same split in practice.
  Balancer b(3);
  n.clear();
  for (int i = 0; i < 100000; ++i) ++n[pickDestination(rule, b.draw())->subset];
  EXPECT_NEAR(n["v2"], 10000, 500);

  auto one = table(R"(
kind: Route
metadata: {name: r}
spec:
  hosts: [shop]
  http: [{route: [{destination: {service: reviews}}]}]
)");
  ASSERT_TRUE(one);
  EXPECT_EQ(pickDestination(one->rules.at(0), 12345)->service, "reviews");
}

TEST(RoutingTest, RewritesKeepTheQueryAndRedirectsBuildTheLocation) {
  auto t = table(R"(
kind: Route
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
    - name: api
      match: [{path: {prefix: /api}}]
      rewrite: {uri: /, authority: reviews-internal}
      route: [{destination: {service: reviews}}]
    - name: old
      match: [{path: {prefix: /old}}]
      redirect: {uri: /new, responseCode: 308}
    - name: moved
      match: [{path: {exact: /moved}}]
      redirect: {authority: "shop.example.com", scheme: https}
    - name: gone
      directResponse: {status: 410, body: "gone for good"}
)");
  ASSERT_TRUE(t);
  Req r{.path = "/api/v1/items?page=2"};
  auto h = r.head();
  const RouteMatch* m = nullptr;
  const auto* rule = t->match(h, &m);
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rewritePath(*rule, m, h), "/v1/items?page=2");
  EXPECT_EQ(rule->rewriteAuthority, "reviews-internal");
  // (Each Req outlives its head: a head views into it.)
  Req exactReq{.path = "/api"};
  auto exact = exactReq.head();
  EXPECT_EQ(rewritePath(*t->match(exact, &m), m, exact), "/");

  Req oldReq{.path = "/old/x"};
  auto old = oldReq.head();
  rule = t->match(old);
  ASSERT_TRUE(rule->redirect);
  EXPECT_EQ(rule->redirect->status, 308);
  EXPECT_EQ(redirectLocation(*rule->redirect, old), "http://reviews/new");
  Req movedReq{.path = "/moved"};
  auto moved = movedReq.head();
  rule = t->match(moved);
  EXPECT_EQ(rule->redirect->status, 301);
  EXPECT_EQ(redirectLocation(*rule->redirect, moved), "https://shop.example.com/moved");

  Req otherReq{.path = "/anything"};
  auto other = otherReq.head();
  rule = t->match(other);
  ASSERT_TRUE(rule->direct);
  EXPECT_EQ(rule->direct->status, 410);
  EXPECT_EQ(rule->direct->body, "gone for good");
}

catalog::Instance instance(const std::string& id, std::map<std::string, std::string> labels) {
  catalog::Instance in;
  in.id = id;
  in.name = "reviews";
  in.address = "10.0.0.9";
  in.port = 8080;
  in.health = catalog::Health::passing;
  in.zone = "z1";
  in.labels = std::move(labels);
  return in;
}

std::shared_ptr<const policy::Held> held(policy::Kind kind, const std::string& name, std::uint64_t version,
                                         const std::string& yaml) {
  auto h = std::make_shared<policy::Held>();
  h->doc.envelope.kind = policy::kindName(kind);
  h->doc.envelope.name = name;
  h->doc.envelope.version = version;
  h->doc.body = body(yaml);
  if (kind == policy::Kind::destinationPolicy) h->subsetsService = "reviews";
  return h;
}

TEST(RoutingTest, SnapshotHasSubsetClustersAndKeepsABrokenRoutesPreviousTable) {
  catalog::Catalog cat;
  cat.apply({"n1", 1, {instance("r1", {{"version", "v1"}}), instance("r2", {{"version", "v2"}, {"tier", "a"}})}});
  cat.apply({"n2", 1, {instance("r3", {{"version", "v1"}})}});
  std::map<std::string, MemberInfo> members;
  for (const char* n : {"n1", "n2"}) members[n] = {true, HostPort{"10.0.0.1", 15006, false, true}};
  policy::Snapshot pol;
  pol.documents["DestinationPolicy/reviews"] = held(policy::Kind::destinationPolicy, "reviews", 1, R"(
kind: DestinationPolicy
metadata: {name: reviews}
spec:
  service: reviews
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {algorithm: RANDOM}}}
    - {name: v3, labels: {version: v3}}
)");
  pol.documents["Route/reviews"] = held(policy::Kind::route, "reviews", 1, R"(
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews, shop]
  http: [{route: [{destination: {service: reviews, subset: v2}}]}]
)");
  CompileInput in;
  in.nodeName = "me";
  in.zone = "z1";
  in.catalog = &cat;
  in.members = &members;
  in.policy = &pol;
  auto snap = compile(in);
  const auto* v1 = snap->find("reviews", "v1");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(v1->endpoints.size(), 2u);
  EXPECT_EQ(v1->key, "reviews/v1");
  const auto* v2 = snap->find("reviews", "v2");
  ASSERT_NE(v2, nullptr);
  ASSERT_EQ(v2->endpoints.size(), 1u);
  EXPECT_EQ(v2->endpoints[0].instanceId, "r2");
  EXPECT_EQ(v2->lb.algorithm, Algorithm::random);  // the subset's own load balancer
  ASSERT_NE(snap->find("reviews", "v3"), nullptr);  // defined, no instance: "no healthy endpoint"
  EXPECT_TRUE(snap->find("reviews", "v3")->endpoints.empty());
  EXPECT_EQ(snap->find("reviews", "v9"), nullptr);
  EXPECT_EQ(snap->find("reviews", "")->endpoints.size(), 3u);
  ASSERT_NE(snap->route("shop"), nullptr);
  const RouteTable* first = snap->route("reviews");
  ASSERT_NE(first, nullptr);

  // A new version names a subset that is not held: the previous table stays in force.
  pol.documents["Route/reviews"] = held(policy::Kind::route, "reviews", 2, R"(
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {service: reviews, subset: v7}}]}]
)");
  pol.problems["Route/reviews"] = "subset 'v7' of service 'reviews' is not defined";
  in.previous = snap.get();
  auto next = compile(in);
  EXPECT_EQ(next->route("reviews"), first);
  EXPECT_EQ(next->route("reviews")->version, 1u);
  // A broken Route never seen before has no table: its hosts keep their plain routing.
  auto fresh = compile(CompileInput{in.version, in.nodeName, in.zone, in.catalog, in.members, {}, &pol, nullptr});
  EXPECT_EQ(fresh->route("reviews"), nullptr);
  // Fixed: the new version applies.
  pol.problems.clear();
  pol.documents["Route/reviews"] = held(policy::Kind::route, "reviews", 3, R"(
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {service: reviews, subset: v1}}]}]
)");
  in.previous = next.get();
  auto fixed = compile(in);
  ASSERT_NE(fixed->route("reviews"), nullptr);
  EXPECT_EQ(fixed->route("reviews")->version, 3u);
  EXPECT_EQ(fixed->route("shop"), nullptr);
}

}  // namespace
}  // namespace mesh::proxy

namespace mesh::proxy {
namespace {

TEST(TcpRouteTest, TheFirstRuleWhosePortAndSourceMatchDecides) {
  auto t = compileRoute("r", 1, body(R"(kind: Route
metadata: {name: r}
spec:
  hosts: [db]
  tcp:
    - match: [{port: 5432, sourceService: billing}]
      route: [{destination: {service: db, subset: primary}}]
    - match: [{port: 5432}, {port: 5433}]
      route:
        - {destination: {service: db, subset: replica}, weight: 75}
        - {destination: {service: db, subset: primary}, weight: 25}
    - route: [{destination: {service: db}}]
)"));
  ASSERT_TRUE(t.ok()) << t.error().message();
  const auto& table = **t;
  ASSERT_EQ(table.tcp.size(), 3u);
  EXPECT_EQ(table.matchTcp(5432, {"billing"}), &table.tcp[0]);
  EXPECT_EQ(table.matchTcp(5432, {"web"}), &table.tcp[1]);
  EXPECT_EQ(table.matchTcp(5433, {}), &table.tcp[1]);
  EXPECT_EQ(table.matchTcp(6000, {"billing"}), &table.tcp[2]);
  EXPECT_EQ(table.tcp[1].totalWeight, 100u);
  EXPECT_EQ(pickDestination(table.tcp[1], 10)->key, "db/replica");
  EXPECT_EQ(pickDestination(table.tcp[1], 80)->key, "db/primary");
  EXPECT_EQ(pickDestination(table.tcp[2], 80)->key, "db");
}

}  // namespace
}  // namespace mesh::proxy

namespace mesh::proxy {
namespace {

// The literal-prefix test before a regular expression runs never changes what matches.
TEST(RouteRegexTest, ThePrefixShortcutAgreesWithTheRegularExpression) {
  const std::vector<std::string> patterns{"/items/[0-9]+", "/ab?c", "/a{0,2}b", "/(x|y)z", "^/api/.*", "/v1|/v2",
                                          "/x*", "/plain", "/a+b", "/.*"};
  const std::vector<std::string> paths{"/items/12", "/items/", "/ac", "/abc", "/b", "/aab", "/xz", "/yz", "/api/q",
                                       "/v2", "/", "/plain", "/ab", "/other", "/xx"};
  for (const auto& p : patterns) {
    auto t = compileRoute("r", 1, body("kind: Route\nmetadata: {name: r}\nspec:\n  hosts: [s]\n  http:\n    - match: "
                                       "[{path: {regex: \"" + p + "\"}}]\n      route: [{destination: {service: s}}]\n"));
    ASSERT_TRUE(t.ok()) << p;
    std::regex re(p, std::regex::ECMAScript);
    for (const auto& path : paths) {
      Req r;
      r.path = path;
      auto h = r.head();
      EXPECT_EQ((*t)->match(h) != nullptr, std::regex_match(path, re)) << p << " " << path;
    }
  }
}

}  // namespace
}  // namespace mesh::proxy
