#pragma once
// Picking an endpoint for a request (issue 7): round robin, least request (power of two
// choices), ring hash and random, all weighted, over the snapshot's precomputed sets. The state
// a pick changes (round-robin position, requests in flight per endpoint) belongs to one worker:
// nothing on the request path is shared between threads. Each worker balancing on its own is
// what Envoy and HAProxy's threads do too; with N workers the spread is still even.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "node/proxy/snapshot.h"

namespace mesh::proxy {

// 64-bit FNV-1a then a finalizer (stable across runs and nodes: the same key always lands on
// the same ring point, on every node).
std::uint64_t hashKey(std::string_view key);

class Balancer {
 public:
  explicit Balancer(std::uint64_t seed);

  // hashInput: the header value or source address for ring hash (ignored otherwise; when empty
  // ring hash falls back to random). `exclude`: an endpoint key not to pick (a retry after a
  // failed connect avoids the one that failed) unless it is the only one.
  const Endpoint* pick(const Cluster& cluster, std::string_view hashInput, std::string_view exclude = {});

  // Requests in flight per endpoint, for least request: the proxy counts them around each
  // upstream exchange.
  void started(const Endpoint& e) { ++active_[e.key]; }
  void finished(const Endpoint& e);
  std::uint32_t active(const std::string& key) const;
  // A uniformly drawn 64-bit value from this worker's generator (weighted route splits).
  std::uint64_t draw() { return next(); }

 private:
  std::uint64_t next();  // xorshift64*
  std::uint32_t weightedIndex(const EndpointSet& set);
  std::uint64_t state_;
  std::unordered_map<std::string, std::uint64_t> position_;  // round robin, by cluster key
  std::unordered_map<std::string, std::uint32_t> active_;
};

}  // namespace mesh::proxy
