// Gossip simulator: N real Memberlists (the code meshd runs) on the in-memory network, in one
// thread on virtual time. For a join and for a failure it prints how long until 50%, 99% and
// 100% of nodes know, the bytes each node sends per second, and false suspicions (accusations
// of live nodes, seen as refutations) and false deaths; next to memberlist's own formulas.
// Prints figures; asserts nothing.
//
//   bench_gossip_sim --nodes 1000 --loss 0.1 [--seed 1] [--settle 60] [--observe 60]

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/log.h"
#include "common/metrics.h"
#include "common/virtual_clock.h"
#include "gossip/lifeguard.h"
#include "gossip/mem_transport.h"
#include "gossip/memberlist.h"

using namespace mesh;
using namespace mesh::gossip;
using namespace std::chrono_literals;

namespace {

double secs(Duration d) { return std::chrono::duration<double>(d).count(); }

long rssMb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

// Records, per node, when it first heard that `target` joined or left.
struct Watch : EventDelegate {
  std::string target;
  TimePoint joinedAt{}, leftAt{};
  bool sawJoin = false, sawLeave = false;
  int falseLeaves = 0;  // leave events about nodes other than the one that failed
  const VirtualClock* clock = nullptr;
  const std::string* victim = nullptr;
  void notifyJoin(const Node& n) override {
    if (n.name == target && !sawJoin) sawJoin = true, joinedAt = clock->now();
  }
  void notifyLeave(const Node& n) override {
    if (victim && n.name == *victim) {
      if (!sawLeave) sawLeave = true, leftAt = clock->now();
    } else {
      ++falseLeaves;
    }
  }
  void notifyUpdate(const Node&) override {}
};

struct Sim {
  VirtualClock clock;
  MemNetwork net{clock, 1};
  metrics::Registry registry;
  std::vector<std::unique_ptr<MemTransport>> transports;
  std::vector<std::unique_ptr<Watch>> watches;
  std::vector<std::unique_ptr<Memberlist>> nodes;
  std::string victimName;

  static NodeAddress addr(std::size_t i) {
    return NodeAddress{std::string{10, static_cast<char>(i >> 16), static_cast<char>((i >> 8) & 0xff),
                                   static_cast<char>(i & 0xff)},
                       7946};
  }

  Memberlist& add(std::size_t i, std::uint64_t seed) {
    transports.push_back(net.attach(addr(i)));
    watches.push_back(std::make_unique<Watch>());
    watches.back()->clock = &clock;
    watches.back()->victim = &victimName;
    Config c = Config::lan();
    c.name = "node-" + std::to_string(i);
    c.advertise = addr(i);
    c.randomSeed = seed * 1'000'003 + i + 1;
    auto ml = Memberlist::create(c, clock, *transports.back(), Delegates{nullptr, watches.back().get()}, registry);
    nodes.push_back(std::move(*ml));
    return *nodes.back();
  }

  std::uint64_t counter(const std::string& series) {
    // Sums a counter family's samples from the text format (the sim shares one registry).
    const std::string text = registry.render();
    std::uint64_t total = 0;
    std::size_t pos = 0;
    while ((pos = text.find("\n" + series, pos)) != std::string::npos) {
      pos += 1;
      const std::size_t sp = text.find(' ', pos), nl = text.find('\n', pos);
      const std::string name = text.substr(pos, sp - pos);
      if (name == series || name.rfind(series + "{", 0) == 0) total += std::stoull(text.substr(sp + 1, nl - sp - 1));
    }
    return total;
  }
};

struct Spread {
  double p50 = NAN, p99 = NAN, p100 = NAN;
  std::size_t reached = 0, of = 0;
};

Spread spread(std::vector<double> t, std::size_t of) {
  Spread s;
  s.reached = t.size();
  s.of = of;
  std::sort(t.begin(), t.end());
  auto at = [&](double q) -> double {
    const std::size_t need = static_cast<std::size_t>(std::ceil(q * of));
    if (need == 0 || need > t.size()) return NAN;
    return t[need - 1];
  };
  s.p50 = at(0.5), s.p99 = at(0.99), s.p100 = at(1.0);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gossip_sim: memberlist convergence on virtual time"};
  std::size_t n = 1000;
  double loss = 0;
  std::uint64_t seed = 1;
  double settle = 60, observe = 60;
  app.add_option("--nodes", n, "cluster size")->check(CLI::Range(3, 100000));
  app.add_option("--loss", loss, "packet loss probability (0 to 0.5)")->check(CLI::Range(0.0, 0.5));
  app.add_option("--seed", seed);
  app.add_option("--settle", settle, "virtual seconds to settle after the bootstrap");
  app.add_option("--observe", observe, "virtual seconds to watch each event");
  CLI11_PARSE(app, argc, argv);
  log::setup(spdlog::level::err, log::Format::text);

  const auto wall0 = std::chrono::steady_clock::now();
  Sim sim;
  sim.net.setDelay(200us, 2ms);
  // Bootstrap: the measurement starts from one settled cluster, so every node's table is
  // preloaded with the other N-2 members (the joiner comes later); then the cluster runs
  // lossless for --settle seconds, so probing and push-pulls reach their steady state.
  std::mt19937_64 rng(seed);
  std::vector<MemberInfo> everyone;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    MemberInfo mi;
    mi.node.name = "node-" + std::to_string(i);
    mi.node.addr = Sim::addr(i);
    mi.node.pmin = 1, mi.node.pmax = 5, mi.node.pcur = 2;
    mi.incarnation = 1;
    mi.state = NodeState::alive;
    everyone.push_back(mi);
  }
  for (std::size_t i = 0; i + 1 < n; ++i) sim.add(i, seed).preload(everyone);
  sim.clock.advance(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(settle)));
  std::size_t agreeing = 0;
  for (auto& ml : sim.nodes) agreeing += ml->numLive() == n - 1;
  const double bootstrapWall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  sim.net.setPacketLoss(loss);

  // Steady state: traffic and false suspicions with nothing happening.
  const auto bytes0 = sim.net.totals();
  const auto refute0 = sim.counter("mesh_gossip_refutations_total");
  const auto suspect0 = sim.counter("mesh_gossip_suspicions_total");
  const Duration steady = 30s;
  sim.clock.advance(steady);
  const auto bytes1 = sim.net.totals();
  const double steadyBytes =
      double(bytes1.packetBytesSent - bytes0.packetBytesSent + bytes1.streamBytesSent - bytes0.streamBytesSent) /
      double(n - 1) / secs(steady);
  const double steadyUdp = double(bytes1.packetBytesSent - bytes0.packetBytesSent) / double(n - 1) / secs(steady);
  const auto falseSuspicionsSteady = sim.counter("mesh_gossip_suspicions_total") - suspect0;
  const auto refutationsSteady = sim.counter("mesh_gossip_refutations_total") - refute0;

  // A join: the last node joins one random member.
  const std::string joiner = "node-" + std::to_string(n - 1);
  for (auto& w : sim.watches) w->target = joiner;
  auto& newcomer = sim.add(n - 1, seed);
  sim.watches.back()->target = joiner;
  const TimePoint joinAt = sim.clock.now();
  newcomer.join({Sim::addr(std::uniform_int_distribution<std::size_t>(0, n - 2)(rng))}, [](int, Result<void>) {});
  const auto jb0 = sim.net.totals();
  sim.clock.advance(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(observe)));
  const auto jb1 = sim.net.totals();
  std::vector<double> joinTimes;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    if (sim.watches[i]->sawJoin) joinTimes.push_back(secs(sim.watches[i]->joinedAt - joinAt));
  }
  const Spread js = spread(joinTimes, n - 1);
  const double joinBytes = double(jb1.packetBytesSent - jb0.packetBytesSent + jb1.streamBytesSent - jb0.streamBytesSent) /
                           double(n) / observe;

  // A failure: a random node stops without a word.
  const std::size_t victim = std::uniform_int_distribution<std::size_t>(0, n - 2)(rng);
  sim.victimName = "node-" + std::to_string(victim);
  for (auto& w : sim.watches) w->falseLeaves = 0;
  const auto refute2 = sim.counter("mesh_gossip_refutations_total");
  const TimePoint failAt = sim.clock.now();
  sim.nodes[victim]->shutdown();
  const auto fb0 = sim.net.totals();
  sim.clock.advance(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(observe)));
  const auto fb1 = sim.net.totals();
  std::vector<double> failTimes;
  int falseDeaths = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (i == victim) continue;
    if (sim.watches[i]->sawLeave) failTimes.push_back(secs(sim.watches[i]->leftAt - failAt));
    falseDeaths += sim.watches[i]->falseLeaves;
  }
  const Spread fs = spread(failTimes, n - 1);
  const double failBytes = double(fb1.packetBytesSent - fb0.packetBytesSent + fb1.streamBytesSent - fb0.streamBytesSent) /
                           double(n - 1) / observe;
  const auto refutationsFailure = sim.counter("mesh_gossip_refutations_total") - refute2;

  // memberlist's formulas for the same cluster.
  const Config c = Config::lan();
  const double suspMin = secs(suspicionTimeout(c.suspicionMult, n, c.probeInterval));
  const double suspMax = suspMin * c.suspicionMaxTimeoutMult;
  const int retransmits = retransmitLimit(c.retransmitMult, n);
  // Gossip reaches ~all nodes in about log_fanout(n) rounds of the gossip interval.
  const double rounds = std::log(double(n)) / std::log(double(c.gossipNodes));
  const double gossipSpread = rounds * secs(c.gossipInterval);

  std::printf("gossip_sim nodes=%zu loss=%.0f%% seed=%llu delay=0.2-2ms settle=%.0fs observe=%.0fs\n", n, loss * 100,
              static_cast<unsigned long long>(seed), settle, observe);
  std::printf("  bootstrap: %zu/%zu nodes agree on %zu live members after settling\n", agreeing, n - 1, n - 1);
  std::printf("  steady state: %.0f bytes/node/s sent (%.0f UDP), %llu suspicions of live nodes in %.0fs, %llu refuted\n",
              steadyBytes, steadyUdp, static_cast<unsigned long long>(falseSuspicionsSteady), secs(steady),
              static_cast<unsigned long long>(refutationsSteady));
  std::printf("  join:    50%% %.2fs  99%% %.2fs  100%% %.2fs  (%zu/%zu knew)  %.0f bytes/node/s\n", js.p50, js.p99,
              js.p100, js.reached, js.of, joinBytes);
  std::printf("  failure: 50%% %.2fs  99%% %.2fs  100%% %.2fs  (%zu/%zu knew)  %.0f bytes/node/s  false deaths %d  refutations %llu\n",
              fs.p50, fs.p99, fs.p100, fs.reached, fs.of, failBytes, falseDeaths,
              static_cast<unsigned long long>(refutationsFailure));
  std::printf("  memberlist formulas: suspicion timeout %.1fs (min) to %.1fs (max); detection <= probe round + timeout;"
              " broadcast retransmits %d; gossip spread ~ log3(n) x 200ms = %.2fs\n",
              suspMin, suspMax, retransmits, gossipSpread);
  std::printf("  cost: %.1fs wall, peak RSS %ld MB (%zu member tables of %zu; %.0f bytes a member entry)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count(), rssMb(), n, n,
              double(rssMb()) * 1048576.0 / double(n) / double(n));
  (void)bootstrapWall;
  return 0;
}
