#pragma once
// What single-threaded, event-driven modules (gossip, health checks, the snapshot compiler) run
// on: a clock plus timers plus "run this soon". Two implementations: AsioEventLoop (the control
// thread's io_context, real time) and VirtualClock (tests and the gossip simulator, virtual
// time). Code written against EventLoop runs unchanged in both, which is what lets a simulated
// 10,000-node cluster exercise the same SWIM code that meshd runs.
//
// Thread rules: every method is called from the loop's own thread, and every callback runs on it.

#include <functional>

#include "common/clock.h"

namespace mesh {

class EventLoop : public Clock {
 public:
  using TimerId = std::uint64_t;  // 0 is never a valid id

  // Runs fn at `at` (at once, but not inside this call, when `at` has passed).
  virtual TimerId runAt(TimePoint at, std::function<void()> fn) = 0;
  TimerId runAfter(Duration d, std::function<void()> fn) { return runAt(now() + d, std::move(fn)); }
  // True when the timer was pending and is now cancelled. Cancelling a fired or unknown timer
  // is harmless.
  virtual bool cancel(TimerId id) = 0;
  // Runs fn soon, after the current callback returns.
  void post(std::function<void()> fn) { runAt(now(), std::move(fn)); }
};

}  // namespace mesh
