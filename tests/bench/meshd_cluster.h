#pragma once
// A cluster of real meshd processes for the benchmark programs: node i on 127.0.N.i, all joined
// through node 1, each with its own data dir. start() returns once every node lists every other
// alive (or fails, with why on stderr).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

namespace mesh::bench {

inline std::size_t aliveCount(const testing::MeshdNode& n) {
  auto r = n.get("/v1/members");
  if (!r.ok() || r->status != 200) return 0;
  std::size_t c = 0;
  for (const auto& m : nlohmann::json::parse(r->body, nullptr, false)) c += m.value("state", "") == "alive";
  return c;
}

struct MeshdCluster {
  testing::LoopbackSubnet net;
  testing::TempDir tmp{"mesh-bench"};
  std::vector<std::unique_ptr<testing::MeshdNode>> nodes;
  double startSeconds = 0;

  // Starts n nodes with `extra` arguments each; false (after printing why) if they do not all
  // start and agree on the membership within a minute.
  bool start(int n, const std::vector<std::string>& extra) {
    using namespace std::chrono_literals;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 1; i <= n; ++i) {
      std::vector<std::string> args = {"--log-level", "warn"};
      args.insert(args.end(), extra.begin(), extra.end());
      if (i > 1) args.insert(args.end(), {"--join", net.address(1) + ":7946"});
      nodes.push_back(std::make_unique<testing::MeshdNode>(testing::MeshdOptions{
          .name = "bench-" + std::to_string(i), .address = net.address(i), .dataDir = tmp.sub("n" + std::to_string(i)),
          .logDir = tmp.path(), .extraArgs = args}));
      nodes.back()->start();
    }
    for (auto& node : nodes) {
      if (!node->waitReady(20s)) {
        std::fprintf(stderr, "%s did not start: %s\n", node->options().name.c_str(), node->process().stderrText().c_str());
        return false;
      }
    }
    const bool converged = testing::eventually(
        [&] {
          for (auto& node : nodes) {
            if (aliveCount(*node) != static_cast<std::size_t>(n)) return false;
          }
          return true;
        },
        60s, 200ms);
    startSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!converged) std::fprintf(stderr, "the %d nodes did not agree on the membership within 60 s\n", n);
    return converged;
  }

  ~MeshdCluster() {
    for (auto& node : nodes) node->stop(std::chrono::seconds(3));
  }
};

// Polls every node every 100 ms until stampOf(node) says when (wall clock, ms) it got
// something; returns each node's delay after sentMs, or nothing when some node had not got it
// within `max`.
template <typename StampOf>
std::optional<std::vector<double>> delaysUntilEveryNode(const std::vector<std::unique_ptr<testing::MeshdNode>>& nodes,
                                                        double sentMs, std::chrono::milliseconds max, StampOf&& stampOf) {
  std::vector<double> got(nodes.size(), -1);
  std::size_t have = 0;
  const auto deadline = std::chrono::steady_clock::now() + max;
  while (have < nodes.size() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (got[i] >= 0) continue;
      if (std::optional<double> at = stampOf(*nodes[i])) {
        got[i] = *at - sentMs;
        ++have;
      }
    }
  }
  if (have < nodes.size()) return std::nullopt;
  return got;
}

// One round of delaysUntilEveryNode: every node's delay goes into perNode; returns the slowest
// (when every node had it).
inline double collectRound(const std::vector<double>& got, std::vector<double>& perNode) {
  double last = 0;
  for (double g : got) {
    perNode.push_back(g);
    last = std::max(last, g);
  }
  return last;
}

// The p-th percentile (0-100) of sorted values, nearest rank.
inline double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  std::size_t rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.5);
  rank = std::min(std::max<std::size_t>(rank, 1), sorted.size());
  return sorted[rank - 1];
}

}  // namespace mesh::bench
