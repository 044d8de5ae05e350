#pragma once
// An injectable clock. Code that measures time takes a Clock& (and code that also schedules work
// an EventLoop&, event_loop.h), so that gossip, retries and health checks can be tested with
// VirtualClock (virtual_clock.h): time moves only when the test says, and timers fire in
// deadline order, so a test of 10 simulated minutes runs in milliseconds.

#include <chrono>
#include <cstdint>

namespace mesh {

using Duration = std::chrono::nanoseconds;
// Monotonic time: for timeouts, intervals and RTTs. Never compare it across processes.
using TimePoint = std::chrono::steady_clock::time_point;
// Wall time: for timestamps people read and for expiry of signed documents.
using WallTime = std::chrono::system_clock::time_point;

// Unix seconds of a wall time (signed-document times, certificate validity).
inline std::int64_t unixSeconds(WallTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

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

}  // namespace mesh
