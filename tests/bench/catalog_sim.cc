// The catalog's dissemination at 10,000 nodes, simulated: N Dissemination instances (the code
// meshd runs) on virtual time, each holding the version of every owner's record; packets and
// streams between them with 0.2-2 ms of delay (and optional loss). Every owner starts with its
// record everywhere; then 1% of the owners change (a new version each) at once. Prints the time
// until every node holds every new version (by gossip and pulls; anti-entropy every 10 s
// repairs what is missed), the bytes each node sends per second while that happens and at rest,
// and the memory of the real catalog (catalog::Catalog) per 10,000 instances.
// Prints figures; asserts nothing.
//
//   bench_catalog_sim [--nodes 10000] [--instances 10] [--change 0.01] [--loss 0]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <malloc.h>
#include <cmath>
#include <random>

#include <CLI/CLI.hpp>

#include "common/process.h"
#include "gossip/dissem/dissemination.h"
#include "node/catalog/catalog.h"
#include "tests/bench/dissem_sim.h"

using namespace std::chrono_literals;
using mesh::Duration;
using mesh::Result;

namespace {

// One record per owner, of the size a node with `instances` instances has (the body is only
// carried, never kept: holders keep versions, bodies are made on demand).
std::string bodyFor(std::uint32_t owner, std::uint64_t version, int instances) {
  mesh::catalog::NodeServices n;
  n.owner = "n" + std::to_string(owner);
  n.version = version;
  for (int i = 0; i < instances; ++i) {
    mesh::catalog::Instance in;
    in.id = "svc-" + std::to_string(i);
    in.name = "svc-" + std::to_string(i);
    in.address = "10.0." + std::to_string(owner / 256) + "." + std::to_string(owner % 256);
    in.port = static_cast<std::uint16_t>(8000 + i);
    in.labels = {{"version", "v1"}};
    in.zone = "z" + std::to_string(owner % 3);
    in.health = mesh::catalog::Health::passing;
    n.instances.push_back(std::move(in));
  }
  return mesh::catalog::encode(n);
}


struct Sim;

struct SimNode : mesh::dissem::Records, mesh::bench::SimWiring {
  Sim* sim = nullptr;
  std::uint32_t id = 0;
  std::string name;
  std::vector<std::uint64_t> held;  // version by owner
  std::uint64_t h = 0;              // XOR of entryHash over held

  std::map<std::string, std::uint64_t> versions() override {
    std::map<std::string, std::uint64_t> out;
    for (std::uint32_t i = 0; i < held.size(); ++i) out["n" + std::to_string(i)] = held[i];
    return out;
  }
  std::uint64_t version(const std::string& key) override { return held[mesh::bench::SimFabric::idOf(key)]; }
  std::uint64_t hash() override { return h; }
  std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) override;
  bool offer(const std::string& key, std::uint64_t version, std::string_view body) override {
    const auto o = mesh::bench::SimFabric::idOf(key);
    if (version <= held[o]) return false;
    auto rec = mesh::catalog::decodeNodeServices(body);
    if (!rec || rec->version != version) return false;
    set(o, version);
    return true;
  }
  void set(std::uint32_t o, std::uint64_t v) {
    const std::string key = "n" + std::to_string(o);
    h ^= mesh::dissem::entryHash(key, held[o]);
    held[o] = v;
    h ^= mesh::dissem::entryHash(key, v);
  }
};

struct Sim : mesh::bench::SimFabric {
  std::vector<std::unique_ptr<SimNode>> nodes;
  int instances = 10;
};

std::optional<std::pair<std::uint64_t, std::string>> SimNode::body(const std::string& key) {
  const auto o = mesh::bench::SimFabric::idOf(key);
  if (held[o] == 0) return std::nullopt;
  return std::pair{held[o], bodyFor(o, held[o], sim->instances)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_catalog_sim: catalog dissemination at scale, simulated"};
  int n = 10000, instances = 10;
  double change = 0.01, loss = 0;
  app.add_option("--nodes", n)->check(CLI::Range(10, 100000));
  app.add_option("--instances", instances)->check(CLI::Range(1, 100));
  app.add_option("--change", change, "fraction of owners that change")->check(CLI::Range(0.0001, 1.0));
  app.add_option("--loss", loss, "packet loss (streams are reliable)")->check(CLI::Range(0.0, 0.9));
  CLI11_PARSE(app, argc, argv);

  // Memory of the real catalog per 10,000 instances (what meshd holds).
  {
    const auto before = mesh::process::residentBytes().value_or(0);
    malloc_trim(0);
    auto* c = new mesh::catalog::Catalog();
    const int owners = 10000 / instances;
    for (int o = 0; o < owners; ++o) {
      c->apply(*mesh::catalog::decodeNodeServices(bodyFor(static_cast<std::uint32_t>(o), 1, instances)));
    }
    const auto after = mesh::process::residentBytes().value_or(0);
    std::printf("catalog memory: %d owners x %d instances = 10,000 instances: %.2f MB RSS (%.0f bytes an instance)\n",
                owners, instances, double(after - before) / 1e6, double(after - before) / 10000.0);
    delete c;
  }

  Sim sim;
  sim.loss = loss;
  sim.instances = instances;
  for (int i = 0; i < n; ++i) sim.names.push_back("n" + std::to_string(i));
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t initialHash = 0;
  for (int o = 0; o < n; ++o) initialHash ^= mesh::dissem::entryHash(sim.names[static_cast<std::size_t>(o)], 1);
  for (int i = 0; i < n; ++i) {
    auto node = std::make_unique<SimNode>();
    node->sim = &sim;
    node->id = static_cast<std::uint32_t>(i);
    node->name = sim.names[static_cast<std::size_t>(i)];
    node->held.assign(static_cast<std::size_t>(n), 1);
    node->h = initialHash;
    node->wire(sim, node->id, 1, "catalog", *node);
    sim.nodes.push_back(std::move(node));
  }
  const double restBytes = mesh::bench::startAndMeasureRest(sim);

  // 1% of the owners change.
  std::vector<std::uint32_t> changed(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) changed[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(i);
  std::shuffle(changed.begin(), changed.end(), sim.rng);
  changed.resize(std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(change * n))));
  sim.bytes = 0;
  const mesh::TimePoint start = sim.clock.now();
  for (auto o : changed) {
    sim.nodes[o]->set(o, 2);
    sim.nodes[o]->d->announce(1, sim.names[o], 2);
  }
  std::vector<double> reached;  // per changed owner: time until every node holds it
  std::vector<bool> done(changed.size(), false);
  std::size_t remaining = changed.size();
  while (remaining > 0 && sim.clock.now() - start < 120s) {
    sim.clock.advance(50ms);
    for (std::size_t k = 0; k < changed.size(); ++k) {
      if (done[k]) continue;
      bool all = true;
      for (auto& node : sim.nodes) {
        if (node->held[changed[k]] != 2) {
          all = false;
          break;
        }
      }
      if (all) {
        done[k] = true;
        --remaining;
        reached.push_back(std::chrono::duration<double>(sim.clock.now() - start).count());
      }
    }
  }
  const double spread = std::chrono::duration<double>(sim.clock.now() - start).count();
  const double changeBytes = double(sim.bytes) / n / std::max(spread, 0.05);
  std::sort(reached.begin(), reached.end());
  auto pct = [&](double p) {
    if (reached.empty()) return 0.0;
    return reached[std::min(reached.size() - 1, static_cast<std::size_t>(p / 100.0 * double(reached.size())))];
  };
  std::printf("catalog_sim nodes=%d instances/node=%d changed=%zu owners (%.1f%%) loss=%.0f%%\n", n, instances,
              changed.size(), 100.0 * double(changed.size()) / n, loss * 100);
  std::printf("  every node holds every change after %.2f s (per change: p50 %.2f s, p99 %.2f s); %zu not converged in 120 s\n",
              reached.size() == changed.size() ? spread : -1.0, pct(50), pct(99), remaining);
  std::printf("  bytes per node per second: %.0f while spreading, %.0f at rest (anti-entropy hashes)\n", changeBytes, restBytes);
  std::printf("  run: %.1f s, RSS %.0f MB\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              double(mesh::process::residentBytes().value_or(0)) / 1e6);
  return 0;
}
