// bench_policy_micro: the CPU the traffic filters add per request, measured in-process (no
// sockets, so without the noise of the end-to-end benchmark): the Route phase of a 20-rule table
// whose last rule matches, the header edits' lists, a RateLimit's three rules, a circuit
// breaker's admission and outlier detection's record. Prints nanoseconds per request.

#include <chrono>
#include <cstdio>
#include <string>

#include "node/policy/document.h"
#include "node/proxy/balancer.h"
#include "node/proxy/ratelimit.h"
#include "node/proxy/resilience.h"
#include "node/proxy/routing.h"

using namespace mesh::proxy;
using Clock = std::chrono::steady_clock;

namespace {

std::string body(const std::string& yaml) {
  auto parsed = mesh::policy::parseDocuments(yaml, "bench.yaml");
  if (!parsed.problems.empty() || parsed.documents.empty()) {
    for (const auto& p : parsed.problems) std::fprintf(stderr, "%s\n", p.str().c_str());
    std::exit(1);
  }
  return parsed.documents.front().body;
}

template <typename F>
double nsPer(int n, F&& f) {
  for (int i = 0; i < n / 10; ++i) f(i);  // warm
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) f(i);
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
}

volatile std::uintptr_t sink;

}  // namespace

int main() {
  std::string route = "kind: Route\nmetadata: {name: bench}\nspec:\n  hosts: [bench]\n  http:\n";
  for (int i = 0; i < 19; ++i) {
    const std::string n = std::to_string(i);
    switch (i % 4) {
      case 0: route += "    - {match: [{path: {prefix: /api/v" + n + "/}}], route: [{destination: {service: bench}}]}\n"; break;
      case 1: route += "    - {match: [{headers: {x-tenant: {exact: t" + n + "}}}], route: [{destination: {service: bench}}]}\n"; break;
      case 2: route += "    - {match: [{path: {regex: \"/items/[0-9]+/v" + n + "\"}, methods: [GET]}], route: [{destination: {service: bench}}]}\n"; break;
      default: route += "    - {match: [{queryParams: {version: {exact: \"" + n + "\"}}}], route: [{destination: {service: bench}}]}\n";
    }
  }
  route += "    - name: all\n      headers: {request: {set: {x-route: bench}}}\n      route: [{destination: {service: bench}}]\n";
  auto table = compileRoute("bench", 1, body(route));
  // The same 19 rules with their regular expressions not starting with a literal (no shortcut).
  std::string slow = route;
  for (std::size_t at; (at = slow.find("\"/items/")) != std::string::npos;) slow.replace(at, 8, "\"[/]items/");
  auto slowTable = compileRoute("bench", 1, body(slow));
  auto limits = compileRateLimit("bench", 1, body(R"(kind: RateLimit
metadata: {name: bench}
spec:
  service: bench
  rules:
    - {name: per-caller, keyBy: SOURCE_IDENTITY, requestsPerUnit: 1000000000}
    - {name: per-user, keyBy: HEADER, header: x-user, requestsPerUnit: 100}
    - {name: whole, requestsPerUnit: 1000000000, burst: 1000000000}
)"));
  if (!table || !slowTable || !limits) {
    std::fprintf(stderr, "compile failed\n");
    return 1;
  }
  mesh::proxy::h1::Head req;
  req.method = "GET";
  req.target = req.path = "/";
  req.host = "bench";
  req.headers = {{"Host", "bench"}, {"User-Agent", "h2load nghttp2/1.52.0"}, {"Accept", "*/*"}};
  const int n = 2'000'000;
  std::printf("per request, in-process (ns):\n");
  std::printf("  20-rule Route, the last rule matching: %.0f\n", nsPer(n, [&](int) { sink = reinterpret_cast<std::uintptr_t>((*table)->match(req)); }));
  std::printf("  the same without the regular expressions' literal-prefix shortcut: %.0f\n",
              nsPer(n / 4, [&](int) { sink = reinterpret_cast<std::uintptr_t>((*slowTable)->match(req)); }));
  std::printf("  RateLimit with three rules (two taking a token): %.0f\n", nsPer(n, [&](int) {
                sink = (*limits)->check(req, "bench", "spiffe://bench.mesh/node/a", Clock::now()).has_value();
              }));
  Cluster c;
  c.state = std::make_shared<ClusterState>();
  c.limits.maxRequests = 100000;
  std::printf("  circuit breaker admission (maxRequests: take and give back): %.0f\n", nsPer(n, [&](int) {
                if (ClusterState::tryAcquire(c.state->requests, c.limits.maxRequests)) {
                  Slot s(c.state, &c.state->requests);
                }
              }));
  OutlierPolicy p;
  p.consecutive5xx = 5;
  auto h = c.state->health("a/x");
  std::vector<EndpointHealth*> all{h.get()};
  std::printf("  outlier detection, recording a success: %.0f\n",
              nsPer(n, [&](int) { sink = static_cast<std::uintptr_t>(c.state->record(p, *h, Outcome::success, all, Clock::now())); }));
  return 0;
}
