#include "common/duration.h"

#include <gtest/gtest.h>

namespace mesh {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesGoStyle) {
  EXPECT_EQ(*parseDuration("500ms"), 500ms);
  EXPECT_EQ(*parseDuration("1s"), 1s);
  EXPECT_EQ(*parseDuration("1m30s"), 90s);
  EXPECT_EQ(*parseDuration("1.5s"), 1500ms);
  EXPECT_EQ(*parseDuration("2h"), 2h);
  EXPECT_EQ(*parseDuration("250us"), 250us);
  EXPECT_EQ(*parseDuration("10ns"), 10ns);
  EXPECT_EQ(*parseDuration("0"), 0s);
  for (const char* bad : {"", "5", "s", "1x", "-1s", "1s2", "1..5s", "ms"}) {
    EXPECT_FALSE(parseDuration(bad).ok()) << bad;
  }
}

TEST(Duration, Formats) {
  EXPECT_EQ(formatDuration(0s), "0s");
  EXPECT_EQ(formatDuration(200ms), "200ms");
  EXPECT_EQ(formatDuration(1500ms), "1.5s");
  EXPECT_EQ(formatDuration(90s), "1m30s");
  EXPECT_EQ(formatDuration(2min), "2m");
  EXPECT_EQ(formatDuration(3h + 1s), "3h1s");
}

}  // namespace
}  // namespace mesh
