#include "cli/client.h"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/http/client.h"

namespace mesh::cli {

Result<nlohmann::json> NodeClient::getJson(const std::string& path) const { return call("GET", path, {}); }

Result<nlohmann::json> NodeClient::call(const std::string& method, const std::string& path,
                                        const std::string& requestBody) const {
  http::ClientOptions opts;
  opts.timeout = timeout;
  opts.headers.emplace_back("Accept", "application/json");
  auto resp = http::request(node, method, path, requestBody, opts);
  if (!resp) {
    return Error(resp.error().code,
                 "cannot reach node at " + node.toString() + ": " + resp.error().message());
  }
  nlohmann::json body = nlohmann::json::parse(resp->body, nullptr, /*allow_exceptions=*/false);
  if (resp->status < 200 || resp->status > 299) {
    std::string why = body.is_object() && body.contains("error") && body["error"].is_string()
                          ? body["error"].get<std::string>()
                          : resp->body.substr(0, 200);
    return Error(errc::unavailable, "node at " + node.toString() + " answered " +
                                        std::to_string(resp->status) + " for " + path + ": " + why);
  }
  if (body.is_discarded()) {
    return Error(errc::malformed, "node at " + node.toString() + " sent a body that is not JSON for " + path);
  }
  return body;
}

namespace {

std::string str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string humanDuration(double seconds) {
  auto s = static_cast<long long>(std::floor(seconds));
  std::ostringstream out;
  if (s >= 86400) out << s / 86400 << "d";
  if (s >= 3600) out << (s % 86400) / 3600 << "h";
  if (s >= 60) out << (s % 3600) / 60 << "m";
  out << s % 60 << "s";
  return out.str();
}

}  // namespace

std::string formatStatus(const nlohmann::json& self) {
  const nlohmann::json addrs = self.value("addresses", nlohmann::json::object());
  double uptime = self.contains("uptime_seconds") && self["uptime_seconds"].is_number()
                      ? self["uptime_seconds"].get<double>()
                      : 0.0;
  std::vector<std::pair<std::string, std::string>> rows = {
      {"NAME", str(self, "name")},
      {"CLUSTER", str(self, "cluster")},
      {"ROLE", str(self, "role")},
      {"VERSION", str(self, "version") + " (commit " + str(self, "commit") + ")"},
      {"GOSSIP", str(addrs, "gossip_bind") + " (advertised as " + str(addrs, "gossip_advertise") + ")"},
      {"ADMIN", str(addrs, "admin")},
      {"DATA DIR", str(self, "data_dir")},
      {"PID", str(self, "pid")},
      {"STARTED", str(self, "started_at") + " (up " + humanDuration(uptime) + ")"},
  };
  std::size_t width = 0;
  for (const auto& r : rows) width = std::max(width, r.first.size());
  std::string out;
  for (const auto& [k, v] : rows) {
    out += k;
    out.append(width - k.size() + 2, ' ');
    out += v;
    out += '\n';
  }
  return out;
}

std::string formatMembers(const nlohmann::json& members) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ADDRESS", "STATE", "STATUS", "INCARNATION", "PROTOCOL", "TAGS"}};
  if (members.is_array()) {
    for (const auto& m : members) {
      const auto proto = m.value("protocol", nlohmann::json::object());
      const auto dproto = m.value("delegate_protocol", nlohmann::json::object());
      std::string addr = str(m, "addr");
      addr = (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" + str(m, "port");
      // Serf's tags when the node has them (sorted, as serf members prints them); else the raw
      // meta a plain memberlist peer carries.
      std::string tags;
      if (m.contains("tags") && m["tags"].is_object() && !m["tags"].empty()) {
        for (const auto& [k, v] : m["tags"].items()) {
          if (!tags.empty()) tags += ',';
          tags += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
        }
      } else {
        tags = str(m, "meta");
      }
      if (tags.empty()) tags = "-";
      rows.push_back({str(m, "name"), addr, str(m, "state"), str(m, "status"), str(m, "incarnation"),
                      str(proto, "current") + "/" + str(dproto, "current"), tags});
    }
  }
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out.append(width[i] - r[i].size() + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

}  // namespace mesh::cli
