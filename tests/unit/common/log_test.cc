#include "common/log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/json_escape.h"

namespace mesh {
namespace {

TEST(Log, ParsesLevels) {
  EXPECT_EQ(*log::parseLevel("trace"), spdlog::level::trace);
  EXPECT_EQ(*log::parseLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(*log::parseLevel("info"), spdlog::level::info);
  EXPECT_EQ(*log::parseLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(*log::parseLevel("error"), spdlog::level::err);
  EXPECT_EQ(*log::parseLevel("off"), spdlog::level::off);
  auto bad = log::parseLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("'loud'"), std::string::npos);
}

TEST(Log, ParsesFormats) {
  EXPECT_EQ(*log::parseFormat("text"), log::Format::text);
  EXPECT_EQ(*log::parseFormat("json"), log::Format::json);
  EXPECT_FALSE(log::parseFormat("xml").ok());
}

TEST(Log, JsonLinesAreValidJsonWhateverTheMessage) {
  std::string line = log::formatJson("2026-01-01T00:00:00.000Z", "info", "gossip",
                                     "peer=\"a\"\tsaid\n\x01 \xff\xfe bye");
  auto j = nlohmann::json::parse(line);  // throws, failing the test, if not valid JSON
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["logger"], "gossip");
  EXPECT_EQ(j["msg"], "peer=\"a\"\tsaid\n\x01 \xEF\xBF\xBD\xEF\xBF\xBD bye");
}

TEST(Log, OneLoggerPerModule) {
  auto a = log::get("unit-a");
  auto b = log::get("unit-a");
  auto c = log::get("unit-b");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(a->name(), "unit-a");
  log::setup(spdlog::level::warn, log::Format::json);
  EXPECT_EQ(a->level(), spdlog::level::warn);
  EXPECT_EQ(log::get("unit-c")->level(), spdlog::level::warn);
  log::setup(spdlog::level::info, log::Format::text);
}

TEST(Log, LoggersMadeAfterSetupKeepTheChosenFormat) {
  log::setup(spdlog::level::info, log::Format::json);
  ::testing::internal::CaptureStderr();
  auto l = log::get("unit-made-after-setup");
  l->info("joined node={} peers={}", "a", 3);
  l->flush();
  std::string out = ::testing::internal::GetCapturedStderr();
  log::setup(spdlog::level::info, log::Format::text);
  ASSERT_FALSE(out.empty());
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["logger"], "unit-made-after-setup");
  EXPECT_EQ(j["msg"], "joined node=a peers=3");
}

TEST(LogThrottle, WritesTheFirstThenOncePerIntervalCountingTheRest) {
  using namespace std::chrono_literals;
  log::Throttle t(10s);
  const log::Throttle::Clock::time_point t0{};
  std::uint64_t skipped = 99;
  EXPECT_TRUE(t.allow(t0 + 1s, skipped));
  EXPECT_EQ(skipped, 0u);
  for (int i = 0; i < 200; ++i) EXPECT_FALSE(t.allow(t0 + 1s + i * 45ms, skipped));
  EXPECT_TRUE(t.allow(t0 + 11s, skipped));
  EXPECT_EQ(skipped, 200u);
  EXPECT_FALSE(t.allow(t0 + 12s, skipped));
  EXPECT_TRUE(t.allow(t0 + 30s, skipped));
  EXPECT_EQ(skipped, 1u);
}

TEST(JsonEscape, EscapesControlsAndKeepsValidUtf8) {
  std::string out;
  appendJsonEscaped(out, "a\"b\\c\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  EXPECT_EQ(out, "a\\\"b\\\\c\\u007f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}

TEST(JsonEscape, ReplacesInvalidUtf8) {
  std::string out;
  // Overlong '/', a lone continuation byte, a surrogate, a truncated sequence.
  appendJsonEscaped(out, "\xc0\xaf|\x80|\xed\xa0\x80|\xe2\x82");
  EXPECT_EQ(out,
            "\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|"
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace mesh
