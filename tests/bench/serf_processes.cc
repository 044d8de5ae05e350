// Serf over 50 real meshd processes (127.0.N.1-50, LAN gossip profile): how long a user event
// takes to reach every node, and how long a query takes to come back answered by every node.
// Each node stamps when it received an event (wall clock, the same machine's: /v1/events
// received_unix_ms), so polling does not add to the figures. Queries are answered by a
// --query-handler command (a fork of /bin/sh on each node) and acked by serf itself.
// Prints figures; asserts nothing. Stops every process it started.
//
//   bench_serf_processes [--nodes 50] [--events 30] [--queries 30]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/http/client.h"
#include "tests/bench/meshd_cluster.h"

using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

double wallMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void report(const char* what, std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::printf("  %-44s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (n=%zu)\n", what, mesh::bench::percentile(v, 50),
              mesh::bench::percentile(v, 99), v.empty() ? 0.0 : v.back(), v.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_serf_processes: event and query latency across real meshd processes"};
  int n = 50, events = 30, queries = 30;
  app.add_option("--nodes", n)->check(CLI::Range(3, 200));
  app.add_option("--events", events)->check(CLI::Range(1, 1000));
  app.add_option("--queries", queries)->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  mesh::bench::MeshdCluster cluster;
  if (!cluster.start(n, {"--query-handler", "bench=echo ok"})) return 1;
  auto& nodes = cluster.nodes;
  std::printf("serf_processes nodes=%d (lan profile: gossip every 200 ms to 3 nodes): cluster formed in %.1f s\n", n,
              cluster.startSeconds);
  std::this_thread::sleep_for(3s);

  // Events, one every 500 ms from a rotating sender.
  std::vector<double> toAll, perNode, repaired;
  int incomplete = 0;
  for (int k = 0; k < events; ++k) {
    const std::string name = "bench-ev-" + std::to_string(k);
    auto& sender = *nodes[static_cast<std::size_t>(k) % nodes.size()];
    const double sent = wallMs();
    auto r = mesh::http::request(sender.admin(), "POST", "/v1/events?name=" + name, "", {});
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "event %s refused: %s\n", name.c_str(), r.ok() ? r->body.c_str() : r.error().message().c_str());
      return 1;
    }
    // Gossip retransmits an event 4 x ceil(log10(n + 1)) times from each node; a node all of those
    // missed gets it from the next push-pull (serf replays its event buffer), up to ~a minute.
    auto got = mesh::bench::delaysUntilEveryNode(nodes, sent, 120s, [&](const mesh::testing::MeshdNode& node) {
      std::optional<double> at;
      auto ev = node.get("/v1/events");
      if (!ev.ok()) return at;
      for (const auto& e : json::parse(ev->body, nullptr, false)) {
        if (e.value("name", "") == name) at = e.value("received_unix_ms", 0.0);
      }
      return at;
    });
    if (!got) {
      ++incomplete;
      continue;
    }
    const double last = mesh::bench::collectRound(*got, perNode);
    if (last > 5000) {
      repaired.push_back(last);  // some node only got it by push-pull
    } else {
      toAll.push_back(last);
    }
    std::this_thread::sleep_for(500ms);
  }
  std::printf("user events (%d sent; %d did not reach every node within 120 s; %zu reached some node only by push-pull):\n",
              events, incomplete, repaired.size());
  report("time until every node has it (by gossip)", toAll);
  if (!repaired.empty()) report("time until every node has it (push-pull)", repaired);
  report("delivery to one node", perNode);

  // Queries: every node acks and answers; the node ends the query once all have answered.
  std::vector<double> allAcks, allAnswers, oneAnswer;
  int short_ = 0;
  for (int k = 0; k < queries; ++k) {
    auto& asker = *nodes[static_cast<std::size_t>(k * 7) % nodes.size()];
    mesh::http::ClientOptions opts;
    opts.timeout = 30s;
    auto r = mesh::http::request(asker.admin(), "POST", "/v1/query",
                                 json{{"name", "bench"}, {"ack", true}, {"timeout", "15s"}}.dump(), opts);
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "query refused: %s\n", r.ok() ? r->body.c_str() : r.error().message().c_str());
      return 1;
    }
    auto j = json::parse(r->body, nullptr, false);
    const auto acks = j.value("acks", json::array());
    const auto answers = j.value("responses", json::array());
    if (acks.size() != nodes.size() || answers.size() != nodes.size()) {
      ++short_;
      continue;
    }
    double a = 0, b = 0;
    for (const auto& x : acks) a = std::max(a, x.value("after_ms", 0.0));
    for (const auto& x : answers) {
      b = std::max(b, x.value("after_ms", 0.0));
      oneAnswer.push_back(x.value("after_ms", 0.0));
    }
    allAcks.push_back(a);
    allAnswers.push_back(b);
    std::this_thread::sleep_for(300ms);
  }
  std::printf("queries (%d asked, %d without every ack and answer within 15 s):\n", queries, short_);
  report("round trip until every node acked", allAcks);
  report("round trip until every node answered", allAnswers);
  report("round trip of one node's answer", oneAnswer);
  return 0;
}
