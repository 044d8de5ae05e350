#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "common/event_loop.h"

namespace mesh {

// Time that moves only through advance()/advanceTo(). Timers scheduled on it fire in deadline
// order (ties in scheduling order) while the clock is advanced, with now() equal to each
// timer's deadline as it fires. Single-threaded: use it from the test's thread only. It is also
// an EventLoop (event_loop.h), so event-driven modules run on virtual time.
class VirtualClock final : public EventLoop {
 public:
  VirtualClock();
  TimePoint now() const override { return now_; }
  WallTime wallNow() const override { return wallStart_ + (now_ - start_); }

  // Schedules fn at `at` (or at now() if `at` is in the past). A callback may schedule or cancel
  // other timers, including ones due at the same instant.
  TimerId schedule(TimePoint at, std::function<void()> fn);
  TimerId scheduleAfter(Duration d, std::function<void()> fn) { return schedule(now_ + d, std::move(fn)); }
  TimerId runAt(TimePoint at, std::function<void()> fn) override { return schedule(at, std::move(fn)); }
  // True when the timer was pending and is now cancelled.
  bool cancel(TimerId id) override;

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
