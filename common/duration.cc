#include "common/duration.h"

#include <cmath>
#include <cstdint>

namespace mesh {

Result<Duration> parseDuration(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Error(errc::invalid_argument, "'" + std::string(text) + "' is not a duration: " + why +
                                             " (examples: 500ms, 1s, 1m30s)");
  };
  if (text.empty()) return bad("empty");
  if (text == "0") return Duration::zero();
  std::string_view s = text;
  long double total = 0;
  bool any = false;
  while (!s.empty()) {
    std::size_t i = 0;
    bool digits = false, dot = false;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '.' && !dot))) {
      if (s[i] == '.') dot = true; else digits = true;
      ++i;
    }
    if (!digits) return bad("expected a number");
    const long double value = std::stold(std::string(s.substr(0, i)));
    s.remove_prefix(i);
    std::size_t u = 0;
    while (u < s.size() && ((s[u] >= 'a' && s[u] <= 'z') || s[u] == '\xc2' || s[u] == '\xb5')) ++u;
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    long double scale;
    if (unit == "ns") scale = 1;
    else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xb5s") scale = 1e3;
    else if (unit == "ms") scale = 1e6;
    else if (unit == "s") scale = 1e9;
    else if (unit == "m") scale = 60e9;
    else if (unit == "h") scale = 3600e9;
    else if (unit.empty()) return bad("missing unit");
    else return bad("unknown unit '" + std::string(unit) + "'");
    total += value * scale;
    any = true;
  }
  if (!any) return bad("empty");
  if (total > 9.2e18L) return bad("too long");
  return Duration(static_cast<std::int64_t>(std::llround(total)));
}

std::string formatDuration(Duration d) {
  const std::int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string out;
  std::int64_t rest = ns;
  if (ns < 0) {
    out = "-";
    rest = -ns;
  }
  if (rest < 1'000'000'000) {
    if (rest % 1'000'000 == 0) return out + std::to_string(rest / 1'000'000) + "ms";
    if (rest % 1000 == 0) return out + std::to_string(rest / 1000) + "us";
    return out + std::to_string(rest) + "ns";
  }
  const std::int64_t h = rest / 3'600'000'000'000, m = rest / 60'000'000'000 % 60;
  const std::int64_t sns = rest % 60'000'000'000;
  if (h) out += std::to_string(h) + "h";
  if (m) out += std::to_string(m) + "m";
  if (sns) {
    std::string sec = std::to_string(sns / 1'000'000'000);
    std::int64_t frac = sns % 1'000'000'000;
    if (frac) {
      std::string f = std::to_string(frac);
      f = std::string(9 - f.size(), '0') + f;
      while (f.back() == '0') f.pop_back();
      sec += "." + f;
    }
    out += sec + "s";
  }
  return out;
}

}  // namespace mesh
