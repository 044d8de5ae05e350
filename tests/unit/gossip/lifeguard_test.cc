#include "gossip/lifeguard.h"

#include <gtest/gtest.h>

#include "gossip/broadcast_queue.h"

namespace mesh::gossip {
namespace {

using namespace std::chrono_literals;

TEST(Lifeguard, SuspicionTimeoutScalesWithLog10) {
  // memberlist util_test.go's table.
  EXPECT_EQ(suspicionTimeout(3, 10, 1s), 3s);
  EXPECT_EQ(suspicionTimeout(4, 3, 1s), 4s);  // max(1, log10 3)
  EXPECT_EQ(suspicionTimeout(3, 1000, 1s), 9s);
  EXPECT_EQ(suspicionTimeout(3, 100, 1s), 6s);
  // log10(50) = 1.69897, truncated to 1698 thousandths as Go's Duration conversion does.
  EXPECT_EQ(suspicionTimeout(3, 50, 1s), std::chrono::milliseconds(5094));
  EXPECT_EQ(suspicionTimeout(4, 0, 1s), 4s);
}

TEST(Lifeguard, RetransmitLimit) {
  EXPECT_EQ(retransmitLimit(3, 0), 0);
  EXPECT_EQ(retransmitLimit(3, 1), 3);
  EXPECT_EQ(retransmitLimit(3, 99), 6);
  EXPECT_EQ(retransmitLimit(4, 9999), 16);
}

TEST(Lifeguard, PushPullScale) {
  EXPECT_EQ(pushPullScale(1s, 32), 1s);
  EXPECT_EQ(pushPullScale(1s, 33), 2s);
  EXPECT_EQ(pushPullScale(1s, 64), 2s);
  EXPECT_EQ(pushPullScale(1s, 65), 3s);
  EXPECT_EQ(pushPullScale(30s, 10000), 300s);
}

TEST(Lifeguard, RemainingSuspicionTimeTable) {
  // memberlist suspicion_test.go TestSuspicion_remainingSuspicionTime.
  struct Case {
    int n, k;
    Duration elapsed, min, max, want;
  } cases[] = {
      {0, 3, 0s, 2s, 30s, 30s},
      {1, 3, 2s, 2s, 30s, 14s},
      {2, 3, 3s, 2s, 30s, std::chrono::milliseconds(4810)},
      {3, 3, 4s, 2s, 30s, -2s},
      {4, 3, 5s, 2s, 30s, -3s},
      {5, 3, 10s, 2s, 30s, -8s},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(remainingSuspicionTime(c.n, c.k, c.elapsed, c.min, c.max), c.want) << c.n;
  }
}

TEST(Lifeguard, AwarenessIsBoundedAndScales) {
  Awareness a(8);
  EXPECT_EQ(a.scale(1s), 1s);
  EXPECT_FALSE(a.applyDelta(-1));
  EXPECT_TRUE(a.applyDelta(3));
  EXPECT_EQ(a.scale(1s), 4s);
  a.applyDelta(100);
  EXPECT_EQ(a.score(), 7);
  a.applyDelta(-100);
  EXPECT_EQ(a.score(), 0);
}

TEST(Lifeguard, SuspicionShrinksWithIndependentConfirmations) {
  const TimePoint t0{};
  Suspicion s("a", 3, 2s, 30s, t0);
  EXPECT_EQ(s.deadline(), t0 + 30s);
  EXPECT_FALSE(s.confirm("a", t0 + 1s));  // the accuser itself does not count twice
  EXPECT_TRUE(s.confirm("b", t0 + 2s));
  EXPECT_EQ(s.deadline(), t0 + 16s);  // one of three: 30 - log(2)/log(4) x 28 = 16 s in all
  EXPECT_FALSE(s.confirm("b", t0 + 2s));
  EXPECT_TRUE(s.confirm("c", t0 + 3s));
  EXPECT_TRUE(s.confirm("d", t0 + 4s));
  EXPECT_EQ(s.deadline(), t0 + 4s);  // already due: fire now
  EXPECT_FALSE(s.confirm("e", t0 + 5s));  // k reached
  Suspicion none("a", 0, 2s, 30s, t0);
  EXPECT_EQ(none.deadline(), t0 + 2s);
}

TEST(BroadcastQueue, OrderInvalidationAndLimit) {
  std::size_t n = 10;  // retransmit limit 4 x ceil(log10 11) = 8
  BroadcastQueue q(4, [&] { return n; });
  q.queue("a", std::string(10, 'a'));
  q.queue("b", std::string(30, 'b'));
  q.queue("", std::string(20, 'u'));
  EXPECT_EQ(q.size(), 3u);
  // Fewest transmits first, largest first among equals.
  auto got = q.get(2, 1000);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0][0], 'b');
  EXPECT_EQ(got[1][0], 'u');
  EXPECT_EQ(got[2][0], 'a');
  // A newer message about "a" replaces the queued one, and is sent before the others now.
  int finished = 0;
  q.queue("a", "A-new", [&] { ++finished; });
  EXPECT_EQ(q.size(), 3u);
  got = q.get(2, 1000);
  EXPECT_EQ(got[0], "A-new");
  q.queue("a", "A-newer");
  EXPECT_EQ(finished, 1);  // invalidated
  // The byte budget: only what fits.
  got = q.get(2, 25);
  ASSERT_EQ(got.size(), 1u);  // "A-newer" takes 9 of 25; neither 20+2 nor 30+2 fits in the rest
  EXPECT_EQ(got[0], "A-newer");
  for (int i = 0; i < 20; ++i) q.get(2, 1000);
  EXPECT_EQ(q.size(), 0u);  // everything reached its retransmit limit
}

TEST(BroadcastQueue, PruneKeepsTheFreshest) {
  BroadcastQueue q(4, [] { return std::size_t{10}; });
  for (int i = 0; i < 10; ++i) q.queue("n" + std::to_string(i), "m" + std::to_string(i));
  q.get(2, 8);  // sends one, which now has a transmit
  q.prune(5);
  EXPECT_EQ(q.size(), 5u);
}

}  // namespace
}  // namespace mesh::gossip
