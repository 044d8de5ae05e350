#pragma once
// SWIM's and Lifeguard's arithmetic as small pure functions (memberlist util.go, suspicion.go,
// awareness.go), tested alone. Durations are nanoseconds (mesh::Duration).

#include <cstdint>
#include <string>
#include <unordered_set>

#include "common/clock.h"

namespace mesh::gossip {

// The minimum suspicion timeout: suspicionMult x max(1, log10(n)) x probeInterval, where n is
// the number of known nodes. Grows slowly with cluster size so that news has time to spread.
Duration suspicionTimeout(int suspicionMult, std::size_t n, Duration probeInterval);

// How often a broadcast is retransmitted: retransmitMult x ceil(log10(n + 1)).
int retransmitLimit(int retransmitMult, std::size_t n);

// Push-pull interval scaled for large clusters: above 32 nodes, x (ceil(log2 n - log2 32) + 1),
// so that anti-entropy traffic per node stays flat as the cluster grows.
Duration pushPullScale(Duration interval, std::size_t n);

// Lifeguard's suspicion timeout after `confirmations` of `k` expected independent
// confirmations: it falls from max toward min as log(n+1)/log(k+1), never below min, and is
// returned minus the time already elapsed (it may be negative: the timer is due).
Duration remainingSuspicionTime(int confirmations, int k, Duration elapsed, Duration min, Duration max);

// Lifeguard's local health awareness: a score from 0 (healthy) to max-1 that grows when our own
// probes fail in ways that suggest we are the slow one (missed nacks, refutations) and falls
// with successful probes; timeouts are scaled by score+1 so that a struggling node waits longer
// before accusing others.
class Awareness {
 public:
  explicit Awareness(int max) : max_(max) {}
  // Returns true when the score changed.
  bool applyDelta(int delta);
  int score() const { return score_; }
  Duration scale(Duration d) const { return d * (score_ + 1); }

 private:
  int max_;
  int score_ = 0;
};

// One suspicion of one node: the confirmations seen and when it expires. The owner schedules the
// timer at deadline() and calls confirm() for each suspect message; after a successful
// confirm() the deadline may have moved earlier.
class Suspicion {
 public:
  Suspicion(std::string from, int k, Duration min, Duration max, TimePoint start);
  // A new confirmation from `from`: true if it counted (not a repeat, and fewer than k so far).
  bool confirm(const std::string& from, TimePoint now);
  TimePoint deadline() const { return deadline_; }
  int confirmations() const { return n_; }
  int expected() const { return k_; }

 private:
  int k_;
  int n_ = 0;
  Duration min_;
  Duration max_;
  TimePoint start_;
  TimePoint deadline_;
  std::unordered_set<std::string> from_;
};

}  // namespace mesh::gossip
