#pragma once
// The fixture of the traffic policy tests (issue 8): three meshd nodes, reviews v1 on node 2
// and v2 on node 3 (instance labels), a DestinationPolicy naming the subsets, and helpers to
// publish signed documents with meshcli and to make requests through node 1's proxy.

#include <gtest/gtest.h>

#include <thread>

#include "tests/integration/proxy_cluster.h"

namespace mesh::testing {

using namespace std::chrono_literals;
using json = nlohmann::json;

inline int countOf(const http::Response& r, const std::string& name) {
  int n = 0;
  for (const auto& [k, v] : r.headers) n += http::iequals(k, name) ? 1 : 0;
  return n;
}

inline std::string headerOf(const http::Response& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (http::iequals(n, name)) return v;
  }
  return {};
}

class TrafficPolicyTest : public ::testing::Test {
 protected:
  ProxyCluster c;

  // Three nodes; reviews v1 on node 2 and v2 on node 3; a DestinationPolicy defining the
  // subsets, published and applied.
  void startReviews(std::vector<std::string> extra = {}) {
    ASSERT_EQ(c.cli({"keygen", "--out", c.tmp.sub("op")}).status.code, 0);
    extra.insert(extra.begin(), {"--policy-trusted-key", c.tmp.sub("op.pub")});
    c.start(3, extra);
    c.upstream(2, 9080, "reviews-v1");
    c.upstream(3, 9080, "reviews-v2");
    c.service(2, "reviews-v1", "reviews", 9080, "http", "  labels:\n    version: v1\n");
    c.service(3, "reviews-v2", "reviews", 9080, "http", "  labels:\n    version: v2\n");
    ASSERT_TRUE(c.waitEndpoints(1, "reviews", 2));
    writeFile(c.tmp.sub("dp.yaml"), R"(kind: DestinationPolicy
metadata: {name: reviews}
spec:
  service: reviews
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
)");
    publish("dp.yaml");
  }

  void publish(const std::string& file) {
    auto r = c.cli({"policy", "publish", c.tmp.sub(file), "--key", c.tmp.sub("op.key"), "--node",
                    c.node(1).admin().toString(), "--wait"});
    ASSERT_EQ(r.status.code, 0) << r.out << r.err;
  }

  // Node 1's proxy applies version `version` of Route/NAME for `host`.
  bool routeApplied(const std::string& host, std::uint64_t version) {
    return eventually(
        [&] {
          auto r = c.node(1).get("/v1/proxy");
          if (!r.ok()) return false;
          auto j = json::parse(r->body, nullptr, false);
          return !j.is_discarded() && j["routes"].contains(host) && j["routes"][host].value("version", 0u) == version;
        },
        10s, 50ms);
  }

  Result<http::Response> get(const std::string& path, http::Headers headers = {}, const std::string& host = "reviews") {
    return c.request(1, host, "GET", path, {}, std::move(headers));
  }

  // One h2c request (nghttp, prior knowledge) to node 1's outbound listener: its -v output.
  std::string nghttp(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{"/usr/bin/nghttp", "-v", "-H", ":authority: reviews"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("http://" + c.outbound(1).toString() + path);
    return run(argv, 30s, c.tmp.path()).out;
  }
};

}  // namespace mesh::testing
