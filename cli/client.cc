#include "cli/client.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <algorithm>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http/client.h"
#include "gossip/keyring.h"

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
    return Error(resp->status == 404 ? errc::not_found : errc::unavailable, "node at " + node.toString() + " answered " +
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

int fail(const std::string& message, int code) {
  std::cout << std::flush;  // what was said before the error comes before it
  std::fprintf(stderr, "meshcli: error: %s\n", message.c_str());
  return code;
}

std::string columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
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
  return columns(rows);
}

std::string formatServices(const nlohmann::json& catalog) {
  std::vector<std::vector<std::string>> rows = {{"SERVICE", "INSTANCES", "PASSING", "WARNING", "CRITICAL", "NODES"}};
  if (catalog.is_object()) {
    for (const auto& [name, list] : catalog.items()) {
      int n = 0, pass = 0, warn = 0, crit = 0;
      std::vector<std::string> nodes;
      for (const auto& in : list) {
        ++n;
        const std::string h = in.value("health", "");
        // An instance on a node SWIM holds dead counts as critical, whatever it last said.
        const bool up = in.value("node_available", true);
        pass += up && h == "passing";
        warn += up && h == "warning";
        crit += !up || h == "critical";
        const std::string node = in.value("node", "");
        if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
      }
      std::string nodeList;
      for (const auto& x : nodes) nodeList += (nodeList.empty() ? "" : ",") + x;
      rows.push_back({name, std::to_string(n), std::to_string(pass), std::to_string(warn), std::to_string(crit), nodeList});
    }
  }
  return columns(rows);
}

std::string formatService(const nlohmann::json& instances) {
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "ID", "ADDRESS", "PROTOCOL", "HEALTH", "ZONE", "WEIGHT", "LABELS", "NOTE"}};
  if (instances.is_array()) {
    for (const auto& in : instances) {
      std::string labels;
      const auto labelMap = in.value("labels", nlohmann::json::object());
      for (const auto& [k, v] : labelMap.items()) {
        labels += (labels.empty() ? "" : ",") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      }
      std::string health = in.value("health", "");
      if (!in.value("node_available", true)) health += " (node dead)";
      if (in.value("stale", false)) health += " (stale)";
      rows.push_back({str(in, "node"), str(in, "id"), str(in, "address") + ":" + str(in, "port"), str(in, "protocol"),
                      health, str(in, "zone"), str(in, "weight"), labels.empty() ? "-" : labels,
                      in.value("note", "").empty() ? "-" : in.value("note", "")});
    }
  }
  return columns(rows);
}

std::string formatQuery(const nlohmann::json& result) {
  std::string out = "Query '" + result.value("name", "") + "' dispatched\n";
  // Acks and answers in the order they arrived, as serf query prints them while it waits.
  struct Line {
    double at;
    std::string text;
  };
  std::vector<Line> lines;
  const auto acks = result.value("acks", nlohmann::json::array());
  const auto answers = result.value("responses", nlohmann::json::array());
  for (const auto& a : acks) lines.push_back({a.value("after_ms", 0.0), "Ack from '" + a.value("from", "") + "'"});
  for (const auto& r : answers) {
    // The payload as the member sent it (a handler's output): one trailing newline dropped.
    std::string payload = r.value("payload", "");
    if (auto raw = gossip::base64Decode(r.value("payload_base64", "")); raw) payload = *raw;
    if (payload.ends_with('\n')) payload.pop_back();
    lines.push_back({r.value("after_ms", 0.0), "Response from '" + r.value("from", "") + "': " + payload});
  }
  std::stable_sort(lines.begin(), lines.end(), [](const Line& a, const Line& b) { return a.at < b.at; });
  for (const auto& l : lines) out += l.text + "\n";
  if (result.value("ack", false)) out += "Total Acks: " + std::to_string(acks.size()) + "\n";
  out += "Total Responses: " + std::to_string(answers.size()) + "\n";
  return out;
}

KeysOutput formatKeys(const std::string& op, const nlohmann::json& result) {
  KeysOutput o;
  const std::string error = result.value("error", "");
  const auto messages = result.value("messages", nlohmann::json::object());
  if (!error.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [node, msg] : messages.items()) {
      rows.push_back({"failed:", node, msg.is_string() ? msg.get<std::string>() : msg.dump()});
    }
    o.err = columns(rows) + "\n";
    static const std::map<std::string, std::string> what = {{"list", "Failed to gather member keys"},
                                                            {"install", "Error installing key"},
                                                            {"use", "Error changing primary key"},
                                                            {"remove", "Error removing key"}};
    o.err += what.at(op) + ": " + error + "\n";
    return o;
  }
  o.ok = true;
  if (op == "list") {
    o.out = "==> Keys gathered, listing cluster keys...\n\n";
    const std::string total = std::to_string(result.value("num_nodes", 0));
    std::vector<std::vector<std::string>> rows;
    const auto primaries = result.value("primary_keys", nlohmann::json::object());
    const auto keys = result.value("keys", nlohmann::json::object());
    for (const auto& [key, n] : keys.items()) {
      const auto p = primaries.find(key);
      const std::string primary = p == primaries.end() ? "" : " (primary on " + p->dump() + ")";
      rows.push_back({key, "[" + n.dump() + "/" + total + "]" + primary});
    }
    o.out += columns(rows);
    return o;
  }
  static const std::map<std::string, std::string> done = {{"install", "Successfully installed key!"},
                                                          {"use", "Successfully changed primary key!"},
                                                          {"remove", "Successfully removed key!"}};
  o.out = "==> " + done.at(op) + "\n";
  return o;
}

}  // namespace mesh::cli
