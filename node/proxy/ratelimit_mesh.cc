#include "node/proxy/ratelimit_mesh.h"

#include <charconv>
#include <cmath>

namespace mesh::proxy {

// Text, a field a line: "mesh-usage/1", the node, the version, then "RATE ID" per rule. Rates
// are written with %.3f; ids and names may hold any byte but a newline.
std::string encodeUsage(const UsageRecord& r) {
  std::string out = "mesh-usage/1\n" + r.node + "\n" + std::to_string(r.version) + "\n";
  for (const auto& [id, rate] : r.demand) {
    char buf[64];
    auto n = std::snprintf(buf, sizeof buf, "%.3f ", std::isfinite(rate) && rate > 0 ? rate : 0.0);
    out.append(buf, static_cast<std::size_t>(n)).append(id).append("\n");
  }
  return out;
}

namespace {

bool nextLine(std::string_view& in, std::string_view& line) {
  auto nl = in.find('\n');
  if (nl == std::string_view::npos) return false;
  line = in.substr(0, nl);
  in.remove_prefix(nl + 1);
  return true;
}

}  // namespace

Result<UsageRecord> decodeUsage(std::string_view in) {
  auto bad = [](const std::string& why) { return Error(errc::malformed, "usage record: " + why); };
  if (in.size() > kMaxUsageBytes) return bad("larger than " + std::to_string(kMaxUsageBytes) + " bytes");
  std::string_view line;
  if (!nextLine(in, line) || line != "mesh-usage/1") return bad("not a mesh-usage/1 record");
  UsageRecord r;
  if (!nextLine(in, line) || line.empty() || line.size() > 256) return bad("no node name");
  r.node = std::string(line);
  if (!nextLine(in, line)) return bad("no version");
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), r.version);
  if (ec != std::errc() || p != line.data() + line.size()) return bad("version is not a number");
  while (!in.empty()) {
    if (!nextLine(in, line)) return bad("truncated entry");
    if (r.demand.size() >= kMaxUsageEntries) return bad("more than " + std::to_string(kMaxUsageEntries) + " rules");
    auto sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return bad("an entry is not 'RATE ID'");
    double rate = 0;
    auto [q, ec2] = std::from_chars(line.data(), line.data() + sp, rate);
    if (ec2 != std::errc() || q != line.data() + sp || !std::isfinite(rate) || rate < 0 || rate > 1e12) {
      return bad("a rate is not a number from 0");
    }
    r.demand.emplace_back(std::string(line.substr(sp + 1)), rate);
  }
  return r;
}

std::string meshRuleId(const RateLimitTable& table, const RateLimitRule& rule) {
  return table.document + "@" + std::to_string(table.version) + "#" + rule.name;
}

double meshShare(double own, const std::vector<double>& others, double limit) {
  if (others.empty() || limit <= 0) return 1.0;
  const double n = static_cast<double>(others.size() + 1);
  double total = own;
  for (double d : others) total += d;
  const double floor = limit / 10.0;
  return std::clamp((own + floor / n) / (total + floor), 1e-6, 1.0);
}

}  // namespace mesh::proxy
