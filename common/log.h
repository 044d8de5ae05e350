#pragma once
// Logging: one named spdlog logger per module ("node", "gossip", "admin", ...), all writing to
// one stderr sink whose format (text or JSON lines) and level are chosen once from flags.
// Messages carry their context as key=value pairs: log->info("joined node={} peers={}", n, p).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "common/result.h"

namespace mesh::log {

enum class Format { text, json };

// "trace", "debug", "info", "warn", "error", "off".
Result<spdlog::level::level_enum> parseLevel(std::string_view s);
// "text" or "json".
Result<Format> parseFormat(std::string_view s);

// Sets level and format for every logger, existing and future. Safe to call more than once.
void setup(spdlog::level::level_enum level, Format format);

// The logger of a module, created on first use. Thread-safe.
std::shared_ptr<spdlog::logger> get(const std::string& module);

// A warning that can repeat many times a second (an accept failing for want of descriptors,
// which retries every few milliseconds) is written the first time, then at most once per
// `every`, saying how many were left out: a full disk must not be what the fault causes next.
class Throttle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Throttle(Clock::duration every = std::chrono::seconds(10)) : every_(every) {}
  // Whether to write it now; when so, `skipped` is how many were left out since the last one.
  bool allow(Clock::time_point now, std::uint64_t& skipped) {
    if (written_ && now - last_ < every_) {
      ++skipped_;
      return false;
    }
    written_ = true;
    last_ = now;
    skipped = skipped_;
    skipped_ = 0;
    return true;
  }

 private:
  Clock::duration every_;
  Clock::time_point last_{};
  bool written_ = false;
  std::uint64_t skipped_ = 0;
};

// Renders one record as a JSON object (exposed for tests).
std::string formatJson(std::string_view ts, std::string_view level, std::string_view logger,
                       std::string_view msg);

}  // namespace mesh::log
