#pragma once
// Health checks run by the node that owns the service (issue 5): one Check a definition, on the
// control thread's EventLoop. A Prober does the I/O (HTTP, TCP connect, exec, gRPC health); the
// Check turns its results into a state without flapping: one bad probe makes a passing check
// `warning` (still serving), `failures_before_critical` in a row make it `critical`, and a
// critical check needs `success_before_passing` good probes in a row to pass again. The first
// result after start applies at once (a new instance is not held back for several intervals).
// TTL checks have no prober: they go critical when not updated within their TTL.
//
// Thread rules: everything on the EventLoop's thread; callbacks run there.

#include <functional>
#include <memory>
#include <string>

#include "common/event_loop.h"
#include "node/catalog/service.h"

namespace mesh::health {

using catalog::CheckDef;
using catalog::Health;

struct ProbeResult {
  Health result = Health::critical;
  std::string output;  // what the probe saw: "HTTP GET http://...: 200 OK", a command's output, ...
};

class Prober {
 public:
  virtual ~Prober() = default;
  // Runs one probe of `def`; done exactly once, on the loop's thread, within def.timeout (plus
  // scheduling). A probe that cannot finish in time is a critical result ("timed out").
  virtual void probe(const CheckDef& def, std::function<void(ProbeResult)> done) = 0;
};

struct CheckStatus {
  std::string id;
  Health health = Health::critical;
  std::string output;
  int consecutiveFailures = 0;
  int consecutiveSuccesses = 0;
  std::uint64_t runs = 0;
  TimePoint lastRun{};
  TimePoint lastChange{};
};

class Check {
 public:
  using OnChange = std::function<void(const CheckStatus&)>;
  // prober may be null for TTL checks. onChange runs whenever the health changes.
  Check(CheckDef def, EventLoop& loop, Prober* prober, OnChange onChange);
  ~Check();
  Check(const Check&) = delete;
  Check& operator=(const Check&) = delete;

  // Starts probing (the first probe at once, then every interval) or the TTL timer.
  void start();
  void stop();
  // TTL checks: a new status and output, which also restarts the TTL. Refused for other kinds.
  Result<void> update(Health health, std::string output);

  const CheckStatus& status() const;
  const CheckDef& definition() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh::health
