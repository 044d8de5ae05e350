#pragma once
// The simulated network the dissemination benchmarks (catalog, policy) run on: N nodes named
// "n<i>" on virtual time, every node a member of every other's list (steady SWIM), packets and
// stream requests delivered after 0.2-2 ms, packets lost with probability `loss` (streams are
// reliable), every byte counted. Each node's Dissemination is registered in `endpoints`.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "common/virtual_clock.h"
#include "gossip/dissem/dissemination.h"

namespace mesh::bench {

struct SimFabric {
  VirtualClock clock;
  metrics::Registry registry;
  std::vector<std::string> names;
  std::vector<dissem::Dissemination*> endpoints;
  std::mt19937_64 rng{7};
  double loss = 0;
  std::uint64_t bytes = 0;

  Duration delay() { return std::chrono::microseconds(std::uniform_int_distribution<int>(200, 2000)(rng)); }
  bool lose() { return loss > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < loss; }
  static std::uint32_t idOf(const std::string& name) { return static_cast<std::uint32_t>(std::stoul(name.substr(1))); }
};

// One node's view of the fabric.
class SimPeers : public dissem::Network {
 public:
  SimPeers(SimFabric& f, std::uint32_t id) : f_(f), id_(id) {}

  std::size_t peerCount() override { return f_.names.size() - 1; }

  std::vector<std::string> randomPeers(std::size_t k) override {
    std::vector<std::string> out;
    std::uniform_int_distribution<std::size_t> pick(0, f_.names.size() - 1);
    for (int tries = 0; out.size() < k && tries < 10 * static_cast<int>(k); ++tries) {
      const auto i = pick(f_.rng);
      if (i == id_ || std::find(out.begin(), out.end(), f_.names[i]) != out.end()) continue;
      out.push_back(f_.names[i]);
    }
    return out;
  }

  void send(const std::string& peer, std::string packet) override {
    f_.bytes += packet.size();
    if (f_.lose()) return;
    auto* to = f_.endpoints[SimFabric::idOf(peer)];
    f_.clock.runAfter(f_.delay(), [to, packet = std::move(packet)] { to->onPacket(packet); });
  }

  void request(const std::string& peer, std::string body, Duration, std::function<void(Result<std::string>)> done) override {
    f_.bytes += body.size();
    auto* to = f_.endpoints[SimFabric::idOf(peer)];
    SimFabric* f = &f_;
    f_.clock.runAfter(f_.delay(), [f, to, body = std::move(body), done = std::move(done)] {
      to->onRequest(body, [f, done](Result<std::string> r) {
        if (r) f->bytes += r->size();
        f->clock.runAfter(f->delay(), [done, r] { done(r); });
      });
    });
  }

 private:
  SimFabric& f_;
  std::uint32_t id_;
};

// One simulated node's wiring: its view of the fabric, and its Dissemination serving `records`
// as `kind` (registered in the fabric's endpoints).
struct SimWiring {
  std::unique_ptr<SimPeers> net;
  std::unique_ptr<dissem::Dissemination> d;

  void wire(SimFabric& f, std::uint32_t id, std::uint8_t kind, const char* kindName, dissem::Records& records) {
    dissem::Config c;
    c.self = f.names[id];
    net = std::make_unique<SimPeers>(f, id);
    d = std::make_unique<dissem::Dissemination>(c, f.clock, *net, f.registry);
    d->addKind(kind, kindName, records);
    f.endpoints.push_back(d.get());
  }
};

// Starts every node's dissemination and lets 20 s pass; then returns what a node sends per
// second over 20 s more at rest (anti-entropy hashes only, when everyone agrees).
inline double startAndMeasureRest(SimFabric& f) {
  using namespace std::chrono_literals;
  for (auto* d : f.endpoints) d->start();
  f.clock.advance(20s);
  f.bytes = 0;
  f.clock.advance(20s);
  return double(f.bytes) / double(f.endpoints.size()) / 20.0;
}

}  // namespace mesh::bench
