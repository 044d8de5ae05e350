// 50 real meshd processes on loopback addresses (127.0.N.1-50): they join one cluster, then one
// is killed with SIGKILL; prints how long until the first, median and last survivor reported it
// dead (polling each node's /v1/members every 100 ms), and the resident memory of each node.
// Prints figures; asserts nothing. Stops every process it started.
//
//   bench_gossip_processes [--nodes 50] [--repeat 3]

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <regex>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tests/bench/meshd_cluster.h"

using namespace mesh::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

std::string stateOf(const MeshdNode& n, const std::string& target) {
  auto r = n.get("/v1/members");
  if (!r.ok() || r->status != 200) return "?";
  for (const auto& m : json::parse(r->body, nullptr, false)) {
    if (m.value("name", "") == target) return m.value("state", "?");
  }
  return "absent";
}

double rssMb(const MeshdNode& n) {
  auto r = n.get("/metrics");
  if (!r.ok()) return 0;
  std::smatch m;
  if (std::regex_search(r->body, m, std::regex("\nprocess_resident_memory_bytes ([0-9.e+]+)\n"))) {
    return std::stod(m[1]) / 1e6;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gossip_processes: failure detection across real meshd processes"};
  int n = 50, repeat = 3;
  app.add_option("--nodes", n)->check(CLI::Range(3, 200));
  app.add_option("--repeat", repeat, "kills, one after another")->check(CLI::Range(1, 10));
  CLI11_PARSE(app, argc, argv);

  mesh::bench::MeshdCluster cluster;
  const bool converged = cluster.start(n, {});
  auto& nodes = cluster.nodes;
  std::printf("gossip_processes nodes=%d subnet=127.0.%d.0/24: %s in %.1f s (start + join)\n", n, cluster.net.subnet(),
              converged ? "all agree on every member" : "did NOT converge", cluster.startSeconds);
  if (!converged) return 1;
  std::this_thread::sleep_for(5s);  // let the join traffic settle before measuring RSS

  std::vector<double> rss;
  for (auto& node : nodes) rss.push_back(rssMb(*node));
  std::sort(rss.begin(), rss.end());
  std::printf("  RSS per meshd: median %.1f MB, max %.1f MB (gossip + admin API, %d members)\n", rss[rss.size() / 2],
              rss.back(), n);

  std::vector<bool> dead(nodes.size(), false);
  for (int k = 0; k < repeat; ++k) {
    const std::size_t victim = nodes.size() - 1 - static_cast<std::size_t>(k) * 7;
    const std::string name = nodes[victim]->options().name;
    const auto killed = std::chrono::steady_clock::now();
    nodes[victim]->process().signal(SIGKILL);
    nodes[victim]->process().wait(5s);
    dead[victim] = true;
    std::vector<double> seen(nodes.size(), -1);
    std::size_t remaining = 0;
    for (std::size_t i = 0; i < nodes.size(); ++i) remaining += !dead[i];
    while (std::chrono::steady_clock::now() - killed < 60s) {
      std::size_t done = 0;
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (dead[i]) continue;
        if (seen[i] < 0 && stateOf(*nodes[i], name) == "dead") {
          seen[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
        }
        done += seen[i] >= 0;
      }
      if (done == remaining) break;
      std::this_thread::sleep_for(100ms);
    }
    std::vector<double> t;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (!dead[i] && seen[i] >= 0) t.push_back(seen[i]);
    }
    std::sort(t.begin(), t.end());
    if (t.size() != remaining) {
      std::printf("  kill -9 %s: only %zu of %zu survivors reported it dead within 60 s\n", name.c_str(), t.size(), remaining);
      continue;
    }
    std::printf("  kill -9 %s: first survivor reports dead after %.2f s, median %.2f s, every survivor after %.2f s\n",
                name.c_str(), t.front(), t[t.size() / 2], t.back());
  }
  return 0;
}
