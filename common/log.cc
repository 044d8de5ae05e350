#include "common/log.h"

#include <chrono>
#include <ctime>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/json_escape.h"

namespace mesh::log {
namespace {

std::string isoUtc(std::chrono::system_clock::time_point tp) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(tp);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tp - secs).count();
  std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03lldZ", static_cast<long long>(ms));
  return buf;
}

// One JSON object per line, so log shippers (Loki, Fluent Bit, Vector) take it without a parser.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto lv = spdlog::level::to_string_view(msg.level);
    std::string line = formatJson(isoUtc(msg.time), std::string_view(lv.data(), lv.size()),
                                  std::string_view(msg.logger_name.data(), msg.logger_name.size()),
                                  std::string_view(msg.payload.data(), msg.payload.size()));
    line.push_back('\n');
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

void applyFormat(spdlog::sinks::sink& sink, Format format);

struct State {
  // Text until setup() says otherwise, so that loggers made before setup() still format.
  State() { applyFormat(*sink, Format::text); }
  std::mutex mu;
  std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink =
      std::make_shared<spdlog::sinks::stderr_sink_mt>();
  spdlog::level::level_enum level = spdlog::level::info;
};

State& state() {
  static State s;
  return s;
}

void applyFormat(spdlog::sinks::sink& sink, Format format) {
  if (format == Format::json) {
    sink.set_formatter(std::make_unique<JsonFormatter>());
  } else {
    sink.set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%eZ %-5l [%n] %v", spdlog::pattern_time_type::utc));
  }
}

}  // namespace

Result<spdlog::level::level_enum> parseLevel(std::string_view s) {
  using spdlog::level::level_enum;
  if (s == "trace") return level_enum::trace;
  if (s == "debug") return level_enum::debug;
  if (s == "info") return level_enum::info;
  if (s == "warn" || s == "warning") return level_enum::warn;
  if (s == "error") return level_enum::err;
  if (s == "off") return level_enum::off;
  return Error(errc::invalid_argument, "log level must be one of trace, debug, info, warn, error, "
                                       "off (got '" + std::string(s) + "')");
}

Result<Format> parseFormat(std::string_view s) {
  if (s == "text") return Format::text;
  if (s == "json") return Format::json;
  return Error(errc::invalid_argument,
               "log format must be text or json (got '" + std::string(s) + "')");
}

void setup(spdlog::level::level_enum level, Format format) {
  State& st = state();
  std::lock_guard lock(st.mu);
  st.level = level;
  applyFormat(*st.sink, format);
  spdlog::apply_all([level](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level); });
}

std::shared_ptr<spdlog::logger> get(const std::string& module) {
  State& st = state();
  std::lock_guard lock(st.mu);
  if (auto existing = spdlog::get(module)) return existing;
  auto logger = std::make_shared<spdlog::logger>(module, st.sink);
  logger->set_level(st.level);
  // Warnings and errors reach stderr at once; info may wait for the next flush.
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

std::string formatJson(std::string_view ts, std::string_view level, std::string_view logger,
                       std::string_view msg) {
  std::string out;
  out.reserve(64 + msg.size());
  out += "{\"ts\":\"";
  appendJsonEscaped(out, ts);
  out += "\",\"level\":\"";
  appendJsonEscaped(out, level);
  out += "\",\"logger\":\"";
  appendJsonEscaped(out, logger);
  out += "\",\"msg\":\"";
  appendJsonEscaped(out, msg);
  out += "\"}";
  return out;
}

}  // namespace mesh::log
