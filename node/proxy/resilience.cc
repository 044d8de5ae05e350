#include "node/proxy/resilience.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace mesh::proxy {

const char* overflowName(Overflow o) {
  switch (o) {
    case Overflow::none:
      return "none";
    case Overflow::maxConnections:
      return "max_connections";
    case Overflow::maxPendingRequests:
      return "max_pending_requests";
    case Overflow::maxRequests:
      return "max_requests";
    case Overflow::maxRetries:
      return "max_retries";
  }
  return "?";
}

const char* ejectionName(Ejection e) {
  switch (e) {
    case Ejection::none:
      return "none";
    case Ejection::consecutive5xx:
      return "consecutive_5xx";
    case Ejection::consecutiveGateway:
      return "consecutive_gateway_errors";
    case Ejection::successRate:
      return "success_rate";
  }
  return "?";
}

Outcome outcomeOf(int status) {
  if (status == 0 || status == 502 || status == 503 || status == 504) return Outcome::gatewayError;
  return status >= 500 ? Outcome::error5xx : Outcome::success;
}

bool ClusterState::tryAcquire(std::atomic<std::int64_t>& counter, std::uint32_t limit) {
  if (limit == 0) {
    counter.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  auto cur = counter.load(std::memory_order_relaxed);
  do {
    if (cur >= static_cast<std::int64_t>(limit)) return false;
  } while (!counter.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

std::shared_ptr<EndpointHealth> ClusterState::health(const std::string& key) {
  std::lock_guard lock(mu_);
  auto& h = byKey_[key];
  if (!h) h = std::make_shared<EndpointHealth>();
  return h;
}

void ClusterState::retain(const std::vector<std::string>& keys) {
  std::unordered_set<std::string> keep(keys.begin(), keys.end());
  std::lock_guard lock(mu_);
  std::erase_if(byKey_, [&](const auto& kv) { return !keep.count(kv.first); });
}

namespace {

std::int64_t ns(SteadyTime t) { return t.time_since_epoch().count(); }

}  // namespace

bool ClusterState::eject(const OutlierPolicy& p, EndpointHealth& h, const std::vector<EndpointHealth*>& endpoints,
                         SteadyTime now) {
  if (h.ejected(now) || endpoints.empty()) return false;
  // As Envoy: no ejection once the share already out reaches the maximum (so with few
  // endpoints the first may go even when it alone is more than the share).
  std::size_t out = 0;
  for (const auto* e : endpoints) out += e->ejected(now) ? 1 : 0;
  if (100.0 * static_cast<double>(out) / static_cast<double>(endpoints.size()) >= p.maxEjectionPercent) return false;
  const auto times = h.ejections.fetch_add(1, std::memory_order_relaxed) + 1;
  // The ejection grows with each repeat: base x times, capped.
  auto cap = std::max(p.baseEjection, kMaxEjection);
  auto d = std::min<std::chrono::milliseconds>(p.baseEjection * times, cap);
  h.ejectedUntil.store(ns(now + d), std::memory_order_relaxed);
  h.consecutive5xx.store(0, std::memory_order_relaxed);
  h.consecutiveGateway.store(0, std::memory_order_relaxed);
  return true;
}

Ejection ClusterState::record(const OutlierPolicy& p, EndpointHealth& h, Outcome o,
                              const std::vector<EndpointHealth*>& endpoints, SteadyTime now) {
  h.requests.fetch_add(1, std::memory_order_relaxed);
  if (o == Outcome::success) {
    h.successes.fetch_add(1, std::memory_order_relaxed);
    // Stores only when there is something to reset (no cache-line traffic on the common path).
    if (h.consecutive5xx.load(std::memory_order_relaxed)) h.consecutive5xx.store(0, std::memory_order_relaxed);
    if (h.consecutiveGateway.load(std::memory_order_relaxed)) h.consecutiveGateway.store(0, std::memory_order_relaxed);
    return Ejection::none;
  }
  // Every 5xx counts toward consecutive 5xx; gateway errors (502-504, no response) also count
  // on their own; an app's 500 breaks a run of gateway errors.
  const auto n5xx = h.consecutive5xx.fetch_add(1, std::memory_order_relaxed) + 1;
  std::uint32_t nGw = 0;
  if (o == Outcome::gatewayError) {
    nGw = h.consecutiveGateway.fetch_add(1, std::memory_order_relaxed) + 1;
  } else if (h.consecutiveGateway.load(std::memory_order_relaxed)) {
    h.consecutiveGateway.store(0, std::memory_order_relaxed);
  }
  Ejection why = Ejection::none;
  if (p.consecutiveGateway > 0 && nGw >= p.consecutiveGateway) why = Ejection::consecutiveGateway;
  if (p.consecutive5xx > 0 && n5xx >= p.consecutive5xx) why = Ejection::consecutive5xx;
  if (why == Ejection::none) return why;
  std::lock_guard lock(mu_);
  return eject(p, h, endpoints, now) ? why : Ejection::none;
}

ClusterState::Evaluation ClusterState::evaluate(const OutlierPolicy& p, const std::vector<EndpointHealth*>& endpoints,
                                                SteadyTime now) {
  Evaluation out;
  std::lock_guard lock(mu_);
  if (nextEvaluation_ == 0) nextEvaluation_ = ns(now + p.interval);
  if (ns(now) < nextEvaluation_) return out;
  nextEvaluation_ = ns(now + p.interval);
  out.ran = true;
  for (auto* h : endpoints) {
    auto until = h->ejectedUntil.load(std::memory_order_relaxed);
    if (until != 0 && ns(now) >= until) {
      // Its time is over: it is back (a pick already treats it so; this makes it official).
      h->ejectedUntil.store(0, std::memory_order_relaxed);
      ++out.returned;
    } else if (until == 0 && h->ejections.load(std::memory_order_relaxed) > 0) {
      // A whole interval in the pool: the next ejection, if any, is one step shorter.
      h->ejections.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (p.successRateMinimumHosts > 0) {
    // Success-rate detection (Envoy's): among endpoints with enough requests this interval,
    // those below mean - factor x stdev are ejected, when at least the minimum have enough.
    std::vector<std::pair<EndpointHealth*, double>> rates;
    for (auto* h : endpoints) {
      auto n = h->requests.load(std::memory_order_relaxed);
      if (n >= p.successRateRequestVolume && !h->ejected(now)) {
        rates.emplace_back(h, static_cast<double>(h->successes.load(std::memory_order_relaxed)) / n);
      }
    }
    if (rates.size() >= p.successRateMinimumHosts && !rates.empty()) {
      double mean = 0;
      for (auto& [h, r] : rates) mean += r;
      mean /= static_cast<double>(rates.size());
      double var = 0;
      for (auto& [h, r] : rates) var += (r - mean) * (r - mean);
      const double stdev = std::sqrt(var / static_cast<double>(rates.size()));
      const double threshold = mean - p.successRateStdevFactor * stdev;
      for (auto& [h, r] : rates) {
        if (r < threshold && eject(p, *h, endpoints, now)) ++out.ejected;
      }
    }
  }
  for (auto* h : endpoints) {
    h->requests.store(0, std::memory_order_relaxed);
    h->successes.store(0, std::memory_order_relaxed);
  }
  return out;
}

}  // namespace mesh::proxy
