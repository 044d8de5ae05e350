#pragma once
// Lamport clocks (serf lamport.go): a counter that only moves forward. Local events increment
// it; every time seen in a message is witnessed, pushing ours past it, so that causally later
// events always carry larger times across the cluster. Serf keeps three: member status, user
// events, queries.
//
// Single-threaded: used on the serf's event loop.

#include <cstdint>

namespace mesh::gossip::serf {

using LamportTime = std::uint64_t;

class LamportClock {
 public:
  LamportTime time() const { return counter_; }
  LamportTime increment() { return ++counter_; }
  // Makes our time greater than v (v + 1) unless it already is.
  void witness(LamportTime v) {
    if (v >= counter_) counter_ = v + 1;
  }
  // Restores a saved time (a snapshot): never moves backwards.
  void restore(LamportTime v) {
    if (v > counter_) counter_ = v;
  }

 private:
  LamportTime counter_ = 0;
};

}  // namespace mesh::gossip::serf
