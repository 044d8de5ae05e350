#pragma once
// Rate limits in the proxy (issue 8): a RateLimit document compiled into token buckets that the
// inbound route phase takes from, before a request reaches the local instance of the service it
// guards. Each rule that matches a request takes one token from its bucket: one bucket for the
// rule (keyBy ROUTE), one per service it guards (SERVICE: a RateLimit for "*" limits each
// service on its own), one per calling node's identity (SOURCE_IDENTITY) or per value of a
// header (HEADER; a request without the header is not limited by that rule). An empty bucket
// refuses with 429 and Retry-After.
//
// Buckets are shared by the workers (a limit of 10/s is 10/s for the node) behind one mutex per
// rule, taken once per request per matching rule; they are kept across snapshots while the
// document's version stays, so a catalog change does not refill them. Rules of scope MESH share
// one limit across the nodes that enforce it: each node's bucket fills at its share of the rate,
// which the mesh-wide exchange of usage sets (ratelimit_mesh.h); until it has, the whole rate.
// Times are passed in, so the buckets are tested with made-up times.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "node/proxy/resilience.h"
#include "node/proxy/routing.h"

namespace mesh::proxy {

// A token bucket: `capacity` tokens at most, refilled at `perSecond`.
class TokenBucket {
 public:
  TokenBucket(double capacity, double perSecond, SteadyTime now)
      : tokens_(capacity), capacity_(capacity), rate_(perSecond), last_(now) {}
  // Takes a token. None left: false, and `wait` is how long until there is one.
  bool take(SteadyTime now, std::chrono::milliseconds& wait);
  // Full, as of `now`: the same as a bucket never used (so it may be forgotten).
  bool full(SteadyTime now) const;
  void setRate(double perSecond, double capacity, SteadyTime now);

 private:
  void refill(SteadyTime now);
  double tokens_, capacity_, rate_;
  SteadyTime last_;
};

struct RateLimitRule {
  std::string name;
  std::vector<RouteMatch> matches;  // any one; none: every request
  enum class KeyBy { route, service, sourceIdentity, header };
  KeyBy keyBy = KeyBy::route;
  std::string header;  // keyBy header: its name, lower case
  std::uint32_t requestsPerUnit = 0;
  std::chrono::seconds unit{1};
  std::uint32_t burst = 0;  // the bucket's size
  bool mesh = false;        // scope MESH
  double perSecond() const { return static_cast<double>(requestsPerUnit) / static_cast<double>(unit.count()); }
};
const char* keyByName(RateLimitRule::KeyBy k);

// The buckets of one rule, by key, shared by the workers.
class RateLimiter {
 public:
  // At most this many keyed buckets per rule: past it, full buckets are forgotten (they are as
  // good as new), and if none is full the rule's oldest half goes (those clients start afresh:
  // a flood of distinct keys can loosen a per-key limit, never tighten it).
  static constexpr std::size_t kMaxKeys = 10000;

  explicit RateLimiter(const RateLimitRule& rule) : rule_(rule) {}
  bool take(std::string_view key, SteadyTime now, std::chrono::milliseconds& wait);
  // Scope MESH: this node's share of the rule's rate (0 < share <= 1), set by the mesh-wide
  // exchange; the buckets fill at rate x share and hold burst x share (at least 1).
  void setShare(double share, SteadyTime now);
  double share() const { return share_.load(std::memory_order_relaxed); }
  // Requests this rule saw (matched), allowed or not: the demand the mesh-wide exchange shares.
  std::uint64_t seen() const { return seen_.load(std::memory_order_relaxed); }
  std::size_t keys() const;
  const RateLimitRule& rule() const { return rule_; }

 private:
  double capacity(double share) const;
  RateLimitRule rule_;  // a copy: the limiter outlives the table it was made for
  mutable std::mutex mu_;
  // Looked up by the request's string_view (no key string built per request).
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view k) const { return std::hash<std::string_view>{}(k); }
  };
  std::unordered_map<std::string, TokenBucket, KeyHash, std::equal_to<>> buckets_;
  std::atomic<double> share_{1.0};
  std::atomic<std::uint64_t> seen_{0};
};

struct RateLimitTable {
  std::string document;  // "RateLimit/NAME"
  std::uint64_t version = 0;
  std::string service;   // the service it guards, or "*"
  std::vector<RateLimitRule> rules;
  std::vector<std::shared_ptr<RateLimiter>> limiters;  // one per rule, in order

  struct Refusal {
    const RateLimitRule* rule = nullptr;
    std::chrono::milliseconds retryAfter{0};
  };
  // Takes a token of every rule that matches the request to `service` from `identity` (the
  // calling node's SPIFFE ID); the first rule found empty refuses.
  std::optional<Refusal> check(const h1::Head& req, std::string_view service, std::string_view identity,
                               SteadyTime now) const;
};

// A RateLimit document's body (canonical Cap'n Proto, already validated). `previous`: the same
// document's table in force before; its buckets are kept when the version is the same.
Result<std::shared_ptr<const RateLimitTable>> compileRateLimit(std::string_view name, std::uint64_t version,
                                                                std::string_view body,
                                                                const RateLimitTable* previous = nullptr);

}  // namespace mesh::proxy
