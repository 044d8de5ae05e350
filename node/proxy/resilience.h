#pragma once
// A cluster's circuit breakers and outlier detection (issue 8): a DestinationPolicy's
// connectionPool limits and outlierDetection, as Envoy and Istio apply them.
//
// Both need counts over every worker (a limit of 10 requests means 10 for the node, not 10 per
// worker), so unlike the rest of the request path their state is shared: atomics, one
// ClusterState per cluster (a service, or one of its subsets, as Istio makes each subset a
// cluster of its own), carried from one snapshot to the next by the cluster's key so that a
// policy or catalog change neither resets an ejection nor forgets requests in flight. Times are
// passed in (a steady clock's), so the rules are tested with made-up times.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace mesh::proxy {

using SteadyTime = std::chrono::steady_clock::time_point;

// connectionPool. 0: no limit.
struct ConnectionLimits {
  std::uint32_t maxConnections = 0;      // upstream connections open to the cluster
  std::uint32_t maxPendingRequests = 0;  // requests waiting for a connection
  std::uint32_t maxRequests = 0;         // requests in flight to the cluster
  std::uint32_t maxRetries = 0;          // a Route's retries in flight to the cluster
  std::chrono::milliseconds connectTimeout{0};  // 0: the proxy's own
  std::chrono::milliseconds idleTimeout{0};     // a pooled connection idle this long closes (0: the proxy's)
  std::uint32_t maxRequestsPerConnection = 0;   // an HTTP/1.1 connection is closed after this many
};

// outlierDetection. Enabled by any of its three detectors.
struct OutlierPolicy {
  std::uint32_t consecutive5xx = 0;      // 0: off
  std::uint32_t consecutiveGateway = 0;  // 0: off
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds baseEjection{30000};
  double maxEjectionPercent = 10;
  std::uint32_t successRateMinimumHosts = 0;  // 0: success-rate detection off
  double successRateStdevFactor = 1.9;
  // An endpoint's success rate counts once it served this many requests in an interval (Envoy's
  // success_rate_request_volume default).
  std::uint32_t successRateRequestVolume = 100;
  bool enabled() const { return consecutive5xx > 0 || consecutiveGateway > 0 || successRateMinimumHosts > 0; }
};

// The longest an ejection lasts however often it repeats (Envoy's max_ejection_time default),
// unless the base time alone is longer.
inline constexpr std::chrono::milliseconds kMaxEjection{300000};

// One endpoint of one cluster, as every worker sees it.
struct EndpointHealth {
  std::atomic<std::uint32_t> consecutive5xx{0}, consecutiveGateway{0};
  std::atomic<std::uint32_t> requests{0}, successes{0};  // in the current interval
  std::atomic<std::int64_t> ejectedUntil{0};  // steady clock, ns since its epoch; 0: never ejected
  std::atomic<std::uint32_t> ejections{0};    // the ejection time's multiplier (less one per healthy interval)
  // Ejected, and its time not yet over.
  bool ejected(SteadyTime now) const {
    auto until = ejectedUntil.load(std::memory_order_relaxed);
    return until != 0 && now.time_since_epoch().count() < until;
  }
};

// Which limit refused a request.
enum class Overflow { none, maxConnections, maxPendingRequests, maxRequests, maxRetries };
const char* overflowName(Overflow o);  // "max_connections", ...

// Why an endpoint was ejected.
enum class Ejection { none, consecutive5xx, consecutiveGateway, successRate };
const char* ejectionName(Ejection e);

// What one attempt on an endpoint came to, for outlier detection.
enum class Outcome {
  success,       // a response below 500
  error5xx,      // 500, 501, 505...: the app's own error
  gatewayError,  // 502, 503, 504, or no response (connect failure, reset, timeout)
};
Outcome outcomeOf(int status);  // from a response's status (0: no response)

class ClusterState {
 public:
  // Counters over every worker. Each is taken (tryAcquire) before what it counts begins and
  // given back when it ends.
  std::atomic<std::int64_t> connections{0}, pending{0}, requests{0}, retries{0};
  // Requests waiting because maxConnections are open (a part of pending): while there are any,
  // connections are closed when done instead of pooled, so that one of them can connect.
  std::atomic<std::int64_t> waiting{0};

  // Takes one of `counter` when below `limit` (0: no limit). False: over the limit, nothing taken.
  static bool tryAcquire(std::atomic<std::int64_t>& counter, std::uint32_t limit);

  // The health of the endpoint `key`: the same object for as long as the cluster keeps it.
  // `keep`: the keys of the cluster's endpoints now (others are forgotten). Control thread.
  std::shared_ptr<EndpointHealth> health(const std::string& key);
  void retain(const std::vector<std::string>& keys);

  // Records an attempt's outcome on one endpoint (any worker). Returns the ejection it caused,
  // if any: consecutive errors past a threshold eject at once, within maxEjectionPercent of
  // `endpoints` (the cluster's, for counting how many are out).
  Ejection record(const OutlierPolicy& p, EndpointHealth& h, Outcome o,
                  const std::vector<EndpointHealth*>& endpoints, SteadyTime now);

  // Once per interval (any one thread calls it often; it acts when the interval is over):
  // returns endpoints whose ejection ended, decays the multipliers of healthy ones, and runs
  // success-rate detection. `returned`/`ejected` count what it did.
  struct Evaluation {
    bool ran = false;
    int returned = 0, ejected = 0;
  };
  Evaluation evaluate(const OutlierPolicy& p, const std::vector<EndpointHealth*>& endpoints, SteadyTime now);

 private:
  // Ejects `h` unless maxEjectionPercent of `endpoints` are out already. Under mu_.
  bool eject(const OutlierPolicy& p, EndpointHealth& h, const std::vector<EndpointHealth*>& endpoints,
             SteadyTime now);
  std::mutex mu_;  // ejection decisions and the map (never on a request's path but to eject)
  std::unordered_map<std::string, std::shared_ptr<EndpointHealth>> byKey_;
  std::int64_t nextEvaluation_ = 0;  // under mu_
};

// A counter taken for as long as this lives (requests in flight, pending requests).
class Slot {
 public:
  Slot() = default;
  Slot(std::shared_ptr<ClusterState> s, std::atomic<std::int64_t>* counter) : state_(std::move(s)), counter_(counter) {}
  Slot(Slot&& o) noexcept : state_(std::move(o.state_)), counter_(o.counter_) { o.counter_ = nullptr; }
  Slot& operator=(Slot&& o) noexcept {
    if (this != &o) {
      release();
      state_ = std::move(o.state_);
      counter_ = o.counter_;
      o.counter_ = nullptr;
    }
    return *this;
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() { release(); }
  void release() {
    if (counter_) counter_->fetch_sub(1, std::memory_order_relaxed);
    counter_ = nullptr;
    state_.reset();
  }
  explicit operator bool() const { return counter_ != nullptr; }
  const ClusterState* state() const { return state_.get(); }

 private:
  std::shared_ptr<ClusterState> state_;  // keeps the counter alive past a snapshot change
  std::atomic<std::int64_t>* counter_ = nullptr;
};

}  // namespace mesh::proxy
