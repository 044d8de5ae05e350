// bench_ratelimit_mesh: how close a mesh-wide rate limit (a RateLimit rule of scope MESH) holds
// to its limit over 5 and 20 real meshd nodes, every one running an instance of the service it
// guards. Clients at two nodes' outbound listeners send as fast as they can (closed loop); the
// proxies spread requests over every instance, so each node sees a share of the demand and
// enforces its share of the limit, learnt from the others' usage records. Prints the admitted
// rate against the limit, with the warm-up apart (the first seconds, before the records spread).

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <future>
#include <sstream>
#include <thread>

#include "tests/integration/proxy_cluster.h"

using namespace std::chrono_literals;
using mesh::testing::ProxyCluster;
using json = nlohmann::json;

namespace {

struct Run {
  int ok = 0, limited = 0, other = 0;
  double seconds = 0;
};

// Closed-loop load from `entries` nodes at once for `seconds`.
Run load(ProxyCluster& c, const std::vector<int>& entries, int connections, int seconds, const std::string& path) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::future<json>> runs;
  for (int e : entries) {
    runs.push_back(std::async(std::launch::async, [&c, e, connections, seconds, path] {
      return c.load(e, "api", {"--path", path, "--connections", std::to_string(connections), "--duration",
                               std::to_string(seconds)});
    }));
  }
  Run r;
  for (auto& f : runs) {
    auto j = f.get();
    for (const auto& [status, n] : j["status"].items()) {
      if (status == "200")
        r.ok += n.get<int>();
      else if (status == "429")
        r.limited += n.get<int>();
      else
        r.other += n.get<int>();
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

double shareOf(ProxyCluster& c, int i) {
  auto r = c.node(i).get("/v1/proxy");
  if (!r.ok()) return -1;
  auto j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j["rate_limits"].contains("api")) return -1;
  return j["rate_limits"]["api"]["rules"][0].value("share", -1.0);
}

int bench(int n, int limit, int seconds, int connections) {
  ProxyCluster c;
  if (c.cli({"keygen", "--out", c.tmp.sub("op")}).status.code != 0) throw std::runtime_error("keygen failed");
  std::printf("\n%d nodes: starting...\n", n);
  std::fflush(stdout);
  c.start(n, {"--policy-trusted-key", c.tmp.sub("op.pub"), "--log-level", "warn"});
  for (int i = 1; i <= n; ++i) {
    c.upstream(i, 9080, "api-" + std::to_string(i));
    c.service(i, "api-" + std::to_string(i), "api", 9080);
  }
  if (!c.waitEndpoints(1, "api", static_cast<std::size_t>(n), 90s) ||
      !c.waitEndpoints(2, "api", static_cast<std::size_t>(n), 90s))
    throw std::runtime_error("the entry nodes never routed to every instance");
  std::ostringstream doc;
  doc << "kind: RateLimit\nmetadata: {name: api}\nspec:\n  service: api\n  rules:\n    - {name: shared, requestsPerUnit: "
      << limit << ", burst: " << std::max(1, limit / 10) << ", scope: MESH}\n";
  mesh::testing::writeFile(c.tmp.sub("rl.yaml"), doc.str());
  auto p = c.cli({"policy", "publish", c.tmp.sub("rl.yaml"), "--key", c.tmp.sub("op.key"), "--node",
                  c.node(1).admin().toString(), "--wait"});
  if (p.status.code != 0) throw std::runtime_error("publish: " + p.out + p.err);
  bool applied = mesh::testing::eventually(
      [&] {
        for (int i = 1; i <= n; ++i) {
          if (shareOf(c, i) <= 0) return false;
        }
        return true;
      },
      60s, 200ms);
  if (!applied) throw std::runtime_error("the RateLimit never applied everywhere");
  const std::vector<int> entries{1, 2};
  auto warm = load(c, entries, connections, 5, "/warm");
  auto run = load(c, entries, connections, seconds, "/x");
  double minShare = 1, maxShare = 0, sum = 0;
  for (int i = 1; i <= n; ++i) {
    double s = shareOf(c, i);
    minShare = std::min(minShare, s);
    maxShare = std::max(maxShare, s);
    sum += s;
  }
  const double admitted = run.ok / run.seconds;
  std::printf("| %d | %d/s | %.1f/s | %.0f/s | %.1f/s (%+.1f%%) | %.0f/s | %.3f / %.3f / %.2f | %d |\n", n, limit,
              warm.ok / warm.seconds, (run.ok + run.limited + run.other) / run.seconds, admitted,
              100.0 * (admitted - limit) / limit, run.limited / run.seconds, minShare, maxShare, sum, run.other);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_ratelimit_mesh: a mesh-wide rate limit's error over 5 and 20 meshd nodes"};
  std::vector<int> sizes{5, 20};
  int limit = 200, seconds = 20, connections = 8;
  app.add_option("--nodes", sizes, "Cluster sizes to run (each at least 2)")->delimiter(',');
  app.add_option("--limit", limit, "The rule's requests per second")->check(CLI::Range(1, 1000000));
  app.add_option("--seconds", seconds, "Seconds of the measured run")->check(CLI::Range(2, 600));
  app.add_option("--connections", connections, "Client connections at each of the two entry nodes")
      ->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  std::printf("A RateLimit rule of scope MESH, %d/s (burst a tenth); closed-loop clients at two nodes, %d connections "
              "each, a 5 s warm-up then %d s measured.\n",
              limit, connections, seconds);
  std::printf("| nodes | limit | admitted in the warm-up | offered | admitted (error) | refused | share min / max / sum | "
              "other statuses |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  try {
    for (int n : sizes) {
      if (n < 2) throw std::runtime_error("a cluster needs at least 2 nodes");
      bench(n, limit, seconds, connections);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ratelimit_mesh: %s\n", e.what());
    return 1;
  }
  return 0;
}
