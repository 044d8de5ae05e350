#include "common/clock.h"
#include "common/virtual_clock.h"

#include <gtest/gtest.h>

#include <vector>

namespace mesh {
namespace {

using namespace std::chrono_literals;

TEST(VirtualClock, TimeMovesOnlyWhenAdvanced) {
  VirtualClock c;
  auto t0 = c.now();
  auto w0 = c.wallNow();
  EXPECT_EQ(c.now(), t0);
  c.advance(1500ms);
  EXPECT_EQ(c.now() - t0, 1500ms);
  EXPECT_EQ(c.wallNow() - w0, 1500ms);
}

TEST(VirtualClock, FiresInDeadlineOrderWithNowAtDeadline) {
  VirtualClock c;
  const auto t0 = c.now();
  std::vector<std::pair<int, Duration>> fired;
  c.scheduleAfter(300ms, [&] { fired.emplace_back(3, c.now() - t0); });
  c.scheduleAfter(100ms, [&] { fired.emplace_back(1, c.now() - t0); });
  c.scheduleAfter(200ms, [&] { fired.emplace_back(2, c.now() - t0); });
  EXPECT_EQ(c.advance(250ms), 2u);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0], std::make_pair(1, Duration(100ms)));
  EXPECT_EQ(fired[1], std::make_pair(2, Duration(200ms)));
  EXPECT_EQ(c.now() - t0, 250ms);
  EXPECT_EQ(c.advance(100ms), 1u);
  EXPECT_EQ(fired[2], std::make_pair(3, Duration(300ms)));
}

TEST(VirtualClock, EqualDeadlinesKeepSchedulingOrder) {
  VirtualClock c;
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) c.scheduleAfter(10ms, [&, i] { order.push_back(i); });
  c.advance(10ms);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(VirtualClock, CancelledTimersDoNotFire) {
  VirtualClock c;
  int fired = 0;
  auto id = c.scheduleAfter(10ms, [&] { ++fired; });
  EXPECT_TRUE(c.cancel(id));
  EXPECT_FALSE(c.cancel(id));
  c.advance(1s);
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(c.pendingTimers(), 0u);
}

TEST(VirtualClock, CallbacksMayScheduleAndCancel) {
  VirtualClock c;
  std::vector<int> order;
  VirtualClock::TimerId later = 0;
  c.scheduleAfter(10ms, [&] {
    order.push_back(1);
    c.scheduleAfter(0ms, [&] { order.push_back(2); });  // same instant: still fires this advance
    c.cancel(later);
  });
  later = c.scheduleAfter(20ms, [&] { order.push_back(99); });
  c.scheduleAfter(30ms, [&] { order.push_back(3); });
  c.advance(30ms);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(VirtualClock, PastDeadlinesFireAtNow) {
  VirtualClock c;
  c.advance(1s);
  bool fired = false;
  c.schedule(c.now() - 500ms, [&] { fired = true; });
  EXPECT_EQ(c.nextDeadline(), c.now());
  c.advance(0ms);
  EXPECT_TRUE(fired);
}

TEST(VirtualClock, RunUntilIdleStopsAtLimit) {
  VirtualClock c;
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    c.scheduleAfter(1s, tick);  // a periodic timer never goes idle
  };
  c.scheduleAfter(1s, tick);
  const auto t0 = c.now();
  c.runUntilIdle(10s);
  EXPECT_EQ(ticks, 10);
  EXPECT_LE(c.now() - t0, 10s);
}

TEST(SystemClock, IsMonotonicAndNearWallTime) {
  auto& c = SystemClock::instance();
  auto a = c.now();
  auto b = c.now();
  EXPECT_LE(a, b);
  auto wall = std::chrono::system_clock::now();
  EXPECT_LT(std::chrono::abs(c.wallNow() - wall), 1s);
}

}  // namespace
}  // namespace mesh
