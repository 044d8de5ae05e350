#pragma once
// An injectable clock. Code that measures time or schedules work takes a Clock&, so that gossip,
// retries and health checks can be tested with VirtualClock: time moves only when the test says,
// and timers fire in deadline order, so a test of 10 simulated minutes runs in milliseconds.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>

namespace mesh {

using Duration = std::chrono::nanoseconds;
// Monotonic time: for timeouts, intervals and RTTs. Never compare it across processes.
using TimePoint = std::chrono::steady_clock::time_point;
// Wall time: for timestamps people read and for expiry of signed documents.
using WallTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
  virtual WallTime wallNow() const = 0;
};

// The process's real clocks. Thread-safe.
class SystemClock final : public Clock {
 public:
  static SystemClock& instance();
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
};

// Time that moves only through advance()/advanceTo(). Timers scheduled on it fire in deadline
// order (ties in scheduling order) while the clock is advanced, with now() equal to each
// timer's deadline as it fires. Single-threaded: use it from the test's thread only.
class VirtualClock final : public Clock {
 public:
  using TimerId = std::uint64_t;

  VirtualClock();
  TimePoint now() const override { return now_; }
  WallTime wallNow() const override { return wallStart_ + (now_ - start_); }

  // Schedules fn at `at` (or at now() if `at` is in the past). A callback may schedule or cancel
  // other timers, including ones due at the same instant.
  TimerId schedule(TimePoint at, std::function<void()> fn);
  TimerId scheduleAfter(Duration d, std::function<void()> fn) { return schedule(now_ + d, std::move(fn)); }
  // True when the timer was pending and is now cancelled.
  bool cancel(TimerId id);

  // Moves time forward by d, firing every timer due on the way. Returns timers fired.
  std::size_t advance(Duration d);
  std::size_t advanceTo(TimePoint t);
  // Fires timers one deadline at a time until none is left or `limit` is reached.
  std::size_t runUntilIdle(Duration limit);

  std::size_t pendingTimers() const { return timers_.size(); }
  std::optional<TimePoint> nextDeadline() const;

 private:
  // Ordered by (deadline, sequence) so that equal deadlines keep scheduling order.
  using Key = std::pair<TimePoint, TimerId>;
  std::map<Key, std::function<void()>> timers_;
  std::map<TimerId, TimePoint> deadlines_;
  TimePoint start_;
  TimePoint now_;
  WallTime wallStart_;
  TimerId nextId_ = 1;
};

}  // namespace mesh
