#include "node/proxy/balancer.h"

#include <algorithm>

namespace mesh::proxy {

std::uint64_t hashKey(std::string_view key) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // FNV's low bits mix poorly on short keys; a murmur3 finalizer spreads them over the ring.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

Balancer::Balancer(std::uint64_t seed) : state_(seed | 1) {}

std::uint64_t Balancer::next() {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return state_ * 0x2545F4914F6CDD1Dull;
}

void Balancer::finished(const Endpoint& e) {
  // Entries stay at zero rather than go: no allocation per request once an endpoint is known.
  auto it = active_.find(e.key);
  if (it != active_.end() && it->second > 0) --it->second;
}

std::uint32_t Balancer::active(const std::string& key) const {
  auto it = active_.find(key);
  return it == active_.end() ? 0 : it->second;
}

std::uint32_t Balancer::weightedIndex(const EndpointSet& set) {
  auto r = next() % set.cumulative.back();
  return static_cast<std::uint32_t>(std::upper_bound(set.cumulative.begin(), set.cumulative.end(), r) -
                                    set.cumulative.begin());
}

const Endpoint* Balancer::pick(const Cluster& cluster, std::string_view hashInput, std::string_view exclude) {
  const EndpointSet* set = &cluster.pickSet();
  if (set->empty()) return nullptr;
  // A retry avoids the endpoint that just failed: in this zone if another is there, else in any.
  if (!exclude.empty() && set->endpoints.size() == 1 && set->endpoints[0]->key == exclude && set != &cluster.all) {
    set = &cluster.all;
  }
  // Outlier detection's ejections, as of one clock reading per pick (none without it).
  const bool outlier = cluster.outlier.enabled();
  const auto now = outlier ? std::chrono::steady_clock::now() : SteadyTime{};
  if (set != &cluster.all && outlier) {
    // This zone's endpoints all ejected: the others take its traffic, as when all are unhealthy.
    if (std::all_of(set->endpoints.begin(), set->endpoints.end(),
                    [&](const Endpoint* e) { return e->health && e->health->ejected(now); })) {
      set = &cluster.all;
    }
  }
  const auto n = set->endpoints.size();
  auto choose = [&]() -> std::uint32_t {
    switch (cluster.lb.algorithm) {
      case Algorithm::roundRobin: {
        auto& pos = position_[cluster.key.empty() ? cluster.service : cluster.key];
        return set->schedule[pos++ % set->schedule.size()];
      }
      case Algorithm::random:
        return weightedIndex(*set);
      case Algorithm::leastRequest: {
        // Power of two choices (Mitzenmacher): two weighted random picks, the one with fewer
        // requests in flight per unit of weight wins; ties go to the first.
        auto a = weightedIndex(*set), b = weightedIndex(*set);
        if (a == b && n > 1) b = (a + 1 + static_cast<std::uint32_t>(next() % (n - 1))) % n;
        auto load = [&](std::uint32_t i) {
          return static_cast<double>(active(set->endpoints[i]->key)) /
                 std::max<std::uint32_t>(1, set->endpoints[i]->weight);
        };
        return load(b) < load(a) ? b : a;
      }
      case Algorithm::ringHash: {
        if (hashInput.empty()) return weightedIndex(*set);
        auto h = hashKey(hashInput);
        auto it = std::lower_bound(set->ring.begin(), set->ring.end(), std::make_pair(h, std::uint32_t{0}));
        if (it == set->ring.end()) it = set->ring.begin();
        return it->second;
      }
    }
    return 0;
  };
  auto i = choose();
  auto ejected = [&](std::uint32_t k) {
    const auto* h = set->endpoints[k]->health.get();
    return outlier && h && h->ejected(now);
  };
  auto excluded = [&](std::uint32_t k) { return !exclude.empty() && n > 1 && set->endpoints[k]->key == exclude; };
  if (excluded(i) || ejected(i)) {
    // The next endpoint in the set that is neither (ring hash: the next on the ring's order of
    // endpoints, so a key's requests all move to the same one); if every one is ejected, the
    // next not excluded (Envoy's "panic": better an ejected endpoint than none).
    std::uint32_t fallback = i;
    bool found = false;
    for (std::uint32_t step = 1; step <= n; ++step) {
      auto j = static_cast<std::uint32_t>((i + step) % n);
      if (excluded(j)) continue;
      if (fallback == i && excluded(i)) fallback = j;
      if (!ejected(j)) {
        i = j;
        found = true;
        break;
      }
    }
    if (!found) i = fallback;
  }
  return set->endpoints[i];
}

}  // namespace mesh::proxy
