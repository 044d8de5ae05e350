#include "common/virtual_clock.h"

namespace mesh {

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

VirtualClock::VirtualClock()
    // A fixed, non-zero origin: code under test must never assume time starts at zero, and a
    // fixed wall origin (2026-01-01T00:00:00Z) makes logged timestamps repeatable.
    : start_(TimePoint{} + std::chrono::hours(1000)),
      now_(start_),
      wallStart_(WallTime{} + std::chrono::seconds(1767225600)) {}

VirtualClock::TimerId VirtualClock::schedule(TimePoint at, std::function<void()> fn) {
  if (at < now_) at = now_;
  TimerId id = nextId_++;
  timers_.emplace(Key{at, id}, std::move(fn));
  deadlines_.emplace(id, at);
  return id;
}

bool VirtualClock::cancel(TimerId id) {
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return false;
  timers_.erase(Key{it->second, id});
  deadlines_.erase(it);
  return true;
}

std::size_t VirtualClock::advanceTo(TimePoint t) {
  std::size_t fired = 0;
  while (!timers_.empty() && timers_.begin()->first.first <= t) {
    auto node = timers_.extract(timers_.begin());
    deadlines_.erase(node.key().second);
    now_ = node.key().first;
    node.mapped()();
    ++fired;
  }
  if (t > now_) now_ = t;
  return fired;
}

std::size_t VirtualClock::advance(Duration d) { return advanceTo(now_ + d); }

std::size_t VirtualClock::runUntilIdle(Duration limit) {
  const TimePoint end = now_ + limit;
  std::size_t fired = 0;
  while (!timers_.empty() && timers_.begin()->first.first <= end) {
    fired += advanceTo(timers_.begin()->first.first);
  }
  return fired;
}

std::optional<TimePoint> VirtualClock::nextDeadline() const {
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first.first;
}

}  // namespace mesh
