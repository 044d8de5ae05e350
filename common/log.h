#pragma once
// Logging: one named spdlog logger per module ("node", "gossip", "admin", ...), all writing to
// one stderr sink whose format (text or JSON lines) and level are chosen once from flags.
// Messages carry their context as key=value pairs: log->info("joined node={} peers={}", n, p).

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

// Renders one record as a JSON object (exposed for tests).
std::string formatJson(std::string_view ts, std::string_view level, std::string_view logger,
                       std::string_view msg);

}  // namespace mesh::log
