#include "node/catalog/service.h"

#include <yaml-cpp/yaml.h>

#include <regex>
#include <set>

#include "common/duration.h"
#include "common/errc.h"
#include "common/net_address.h"

namespace mesh::catalog {
namespace {

constexpr std::size_t kMaxTags = 64;
constexpr std::size_t kMaxLabels = 64;
constexpr std::size_t kMaxChecks = 16;
constexpr std::size_t kMaxText = 256;
constexpr auto kMinInterval = std::chrono::milliseconds(100);
constexpr auto kMaxInterval = std::chrono::hours(24);

// Names: what DNS labels and serf tags accept.
bool validName(const std::string& s) {
  static const std::regex re("[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?");
  return std::regex_match(s, re);
}

// Where a field is, for errors: "source:line: service 'x': path".
struct Ctx {
  const std::string& source;
  std::string service;

  Error fail(const YAML::Node& n, const std::string& path, const std::string& why) const {
    std::string out = source;
    if (n.IsDefined() && n.Mark().line >= 0) out += ":" + std::to_string(n.Mark().line + 1);
    out += ": ";
    if (!service.empty()) out += "service '" + service + "': ";
    if (!path.empty()) out += path + ": ";
    return Error(errc::invalid_argument, out + why);
  }
};

Result<std::string> scalar(const Ctx& c, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) return c.fail(n, path, "expected a single value");
  std::string v = n.Scalar();
  if (v.size() > kMaxText) return c.fail(n, path, "longer than " + std::to_string(kMaxText) + " characters");
  return v;
}

Result<long> integer(const Ctx& c, const YAML::Node& n, const std::string& path, long lo, long hi) {
  auto s = scalar(c, n, path);
  if (!s) return s.error();
  std::size_t used = 0;
  long v = 0;
  try {
    v = std::stol(*s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s->size()) return c.fail(n, path, "'" + *s + "' is not a whole number");
  if (v < lo || v > hi) return c.fail(n, path, std::to_string(v) + " is out of range " + std::to_string(lo) + "-" + std::to_string(hi));
  return v;
}

Result<Duration> duration(const Ctx& c, const YAML::Node& n, const std::string& path) {
  auto s = scalar(c, n, path);
  if (!s) return s.error();
  auto d = parseDuration(*s);
  if (!d) return c.fail(n, path, "'" + *s + "' is not a duration (e.g. 500ms, 10s, 1m)");
  return *d;
}

Result<void> onlyKeys(const Ctx& c, const YAML::Node& map, const std::string& path, const std::set<std::string>& allowed) {
  for (const auto& kv : map) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (!allowed.contains(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return c.fail(kv.first, path.empty() ? k : path + "." + k, "unknown field (known: " + list + ")");
    }
  }
  return {};
}

Result<CheckDef> parseCheck(const Ctx& c, const YAML::Node& n, const std::string& path, const std::string& serviceId,
                            std::size_t index) {
  if (!n.IsMap()) return c.fail(n, path, "a check is a map (http:, tcp:, grpc:, exec: or ttl:, and its settings)");
  static const std::set<std::string> keys = {"http", "tcp", "grpc", "exec", "ttl", "id", "name", "method", "status",
                                             "interval", "timeout", "failures_before_warning",
                                             "failures_before_critical", "success_before_passing", "initial"};
  if (auto r = onlyKeys(c, n, path, keys); !r) return r.error();
  CheckDef d;
  int kinds = 0;
  for (auto [key, kind] : {std::pair{"http", CheckDef::Kind::http}, std::pair{"tcp", CheckDef::Kind::tcp},
                           std::pair{"grpc", CheckDef::Kind::grpc}, std::pair{"exec", CheckDef::Kind::exec},
                           std::pair{"ttl", CheckDef::Kind::ttl}}) {
    if (!n[key]) continue;
    ++kinds;
    d.kind = kind;
    if (kind == CheckDef::Kind::ttl) {
      auto t = duration(c, n[key], path + ".ttl");
      if (!t) return t.error();
      d.ttl = *t;
    } else {
      auto t = scalar(c, n[key], path + "." + key);
      if (!t) return t.error();
      d.target = *t;
    }
  }
  if (kinds != 1) return c.fail(n, path, "give exactly one of http, tcp, grpc, exec or ttl");
  auto str = [&](const char* k, std::string& out) -> Result<void> {
    if (!n[k]) return {};
    auto v = scalar(c, n[k], path + "." + k);
    if (!v) return v.error();
    out = *v;
    return {};
  };
  if (auto r = str("id", d.id); !r) return r.error();
  if (auto r = str("name", d.name); !r) return r.error();
  if (auto r = str("method", d.method); !r) return r.error();
  if (n["status"]) {
    // "200-299" or a single code.
    auto s = scalar(c, n["status"], path + ".status");
    if (!s) return s.error();
    std::smatch m;
    static const std::regex range("([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?");
    if (!std::regex_match(*s, m, range)) return c.fail(n["status"], path + ".status", "'" + *s + "' is not a status or range (200-299)");
    d.statusMin = std::stoi(m[1].str());
    d.statusMax = m[2].matched ? std::stoi(m[2].str()) : d.statusMin;
  }
  for (auto [k, out] : {std::pair{"interval", &d.interval}, std::pair{"timeout", &d.timeout}}) {
    if (!n[k]) continue;
    auto v = duration(c, n[k], path + "." + k);
    if (!v) return v.error();
    *out = *v;
  }
  for (auto [k, out] : {std::pair{"failures_before_warning", &d.failuresBeforeWarning},
                        std::pair{"failures_before_critical", &d.failuresBeforeCritical},
                        std::pair{"success_before_passing", &d.successBeforePassing}}) {
    if (!n[k]) continue;
    auto v = integer(c, n[k], path + "." + k, 1, 100);
    if (!v) return v.error();
    *out = static_cast<int>(*v);
  }
  if (n["initial"]) {
    auto s = scalar(c, n["initial"], path + ".initial");
    if (!s) return s.error();
    if (*s == "passing") d.initial = Health::passing;
    else if (*s == "warning") d.initial = Health::warning;
    else if (*s == "critical") d.initial = Health::critical;
    else return c.fail(n["initial"], path + ".initial", "'" + *s + "' is not passing, warning or critical");
  }
  if (d.id.empty()) d.id = serviceId + ":" + std::to_string(index);
  if (d.name.empty()) d.name = std::string(checkKindName(d.kind)) + (d.target.empty() ? "" : " " + d.target);
  return d;
}

Result<ServiceDef> parseService(const Ctx& outer, const YAML::Node& n, const std::string& path, const Defaults& defaults) {
  Ctx c{outer.source, {}};
  if (!n.IsMap()) return c.fail(n, path, "a service is a map of fields");
  if (n["name"] && n["name"].IsScalar()) c.service = n["name"].Scalar();
  static const std::set<std::string> keys = {"id", "name", "address", "port", "protocol", "tags",
                                             "labels", "zone", "weight", "checks"};
  if (auto r = onlyKeys(c, n, "", keys); !r) return r.error();
  ServiceDef s;
  if (!n["name"]) return c.fail(n, "name", "missing (the name clients ask for)");
  auto name = scalar(c, n["name"], "name");
  if (!name) return name.error();
  s.name = *name;
  s.id = s.name;
  if (n["id"]) {
    auto id = scalar(c, n["id"], "id");
    if (!id) return id.error();
    s.id = *id;
  }
  s.address = defaults.address;
  if (n["address"]) {
    auto a = scalar(c, n["address"], "address");
    if (!a) return a.error();
    s.address = *a;
  }
  if (!n["port"]) return c.fail(n, "port", "missing");
  auto port = integer(c, n["port"], "port", 1, 65535);
  if (!port) return port.error();
  s.port = static_cast<std::uint16_t>(*port);
  if (n["protocol"]) {
    auto p = scalar(c, n["protocol"], "protocol");
    if (!p) return p.error();
    auto proto = parseProtocol(*p);
    if (!proto) return c.fail(n["protocol"], "protocol", "'" + *p + "' is not http, http2, grpc or tcp");
    s.protocol = *proto;
  }
  if (n["tags"]) {
    const auto& t = n["tags"];
    if (!t.IsSequence()) return c.fail(t, "tags", "expected a list");
    if (t.size() > kMaxTags) return c.fail(t, "tags", "more than " + std::to_string(kMaxTags));
    for (std::size_t i = 0; i < t.size(); ++i) {
      auto v = scalar(c, t[i], "tags[" + std::to_string(i) + "]");
      if (!v) return v.error();
      s.tags.push_back(*v);
    }
  }
  if (n["labels"]) {
    const auto& l = n["labels"];
    if (!l.IsMap()) return c.fail(l, "labels", "expected a map (version: v2)");
    if (l.size() > kMaxLabels) return c.fail(l, "labels", "more than " + std::to_string(kMaxLabels));
    for (const auto& kv : l) {
      auto k = scalar(c, kv.first, "labels");
      if (!k) return k.error();
      auto v = scalar(c, kv.second, "labels." + *k);
      if (!v) return v.error();
      if (!validName(*k)) return c.fail(kv.first, "labels." + *k, "a label name is letters, digits, '.', '_', '-'");
      s.labels[*k] = *v;
    }
  }
  s.zone = defaults.zone;
  if (n["zone"]) {
    auto z = scalar(c, n["zone"], "zone");
    if (!z) return z.error();
    s.zone = *z;
  }
  if (n["weight"]) {
    auto w = integer(c, n["weight"], "weight", 1, 1000000);
    if (!w) return w.error();
    s.weight = static_cast<std::uint32_t>(*w);
  }
  if (n["checks"]) {
    const auto& ch = n["checks"];
    if (!ch.IsSequence()) return c.fail(ch, "checks", "expected a list");
    if (ch.size() > kMaxChecks) return c.fail(ch, "checks", "more than " + std::to_string(kMaxChecks));
    for (std::size_t i = 0; i < ch.size(); ++i) {
      auto d = parseCheck(c, ch[i], "checks[" + std::to_string(i) + "]", s.id, i);
      if (!d) return d.error();
      s.checks.push_back(std::move(*d));
    }
  }
  if (auto v = validate(s, c.source + (n.Mark().line >= 0 ? ":" + std::to_string(n.Mark().line + 1) : "")); !v) {
    return v.error();
  }
  return s;
}

Result<YAML::Node> load(std::string_view text, const std::string& source) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return Error(errc::malformed, source + ":" + std::to_string(e.mark.line + 1) + ": malformed: " + e.msg);
  }
}

}  // namespace

const char* protocolName(Protocol p) {
  switch (p) {
    case Protocol::http: return "http";
    case Protocol::http2: return "http2";
    case Protocol::grpc: return "grpc";
    case Protocol::tcp: return "tcp";
  }
  return "unknown";
}

std::optional<Protocol> parseProtocol(std::string_view s) {
  if (s == "http") return Protocol::http;
  if (s == "http2") return Protocol::http2;
  if (s == "grpc") return Protocol::grpc;
  if (s == "tcp") return Protocol::tcp;
  return std::nullopt;
}

const char* healthName(Health h) {
  switch (h) {
    case Health::passing: return "passing";
    case Health::warning: return "warning";
    case Health::critical: return "critical";
  }
  return "unknown";
}

const char* checkKindName(CheckDef::Kind k) {
  switch (k) {
    case CheckDef::Kind::http: return "http";
    case CheckDef::Kind::tcp: return "tcp";
    case CheckDef::Kind::grpc: return "grpc";
    case CheckDef::Kind::exec: return "exec";
    case CheckDef::Kind::ttl: return "ttl";
  }
  return "unknown";
}

Result<void> validate(const ServiceDef& s, const std::string& where) {
  auto fail = [&](const std::string& path, const std::string& why) {
    return Error(errc::invalid_argument, where + ": service '" + s.name + "': " + path + ": " + why);
  };
  if (!validName(s.name)) return fail("name", "'" + s.name + "' is not a name (letters, digits, '.', '_', '-'; 1-128)");
  if (!validName(s.id)) return fail("id", "'" + s.id + "' is not a name (letters, digits, '.', '_', '-'; 1-128)");
  if (s.address.empty()) return fail("address", "missing, and the node has no address to default to");
  if (!validName(s.zone)) return fail("zone", "'" + s.zone + "' is not a name");
  if (s.port == 0) return fail("port", "missing");
  std::set<std::string> ids;
  for (std::size_t i = 0; i < s.checks.size(); ++i) {
    const CheckDef& c = s.checks[i];
    const std::string p = "checks[" + std::to_string(i) + "]";
    if (!ids.insert(c.id).second) return fail(p + ".id", "'" + c.id + "' is used twice");
    if (c.kind != CheckDef::Kind::ttl) {
      if (c.interval < kMinInterval || c.interval > kMaxInterval) return fail(p + ".interval", "must be 100ms to 24h");
      if (c.timeout <= Duration::zero() || c.timeout > c.interval) {
        return fail(p + ".timeout", "must be above 0 and at most the interval");
      }
    } else if (c.ttl < std::chrono::seconds(1) || c.ttl > kMaxInterval) {
      return fail(p + ".ttl", "must be 1s to 24h");
    }
    if (c.failuresBeforeWarning > c.failuresBeforeCritical) {
      return fail(p + ".failures_before_warning", "must not exceed failures_before_critical");
    }
    switch (c.kind) {
      case CheckDef::Kind::http:
        if (!c.target.starts_with("http://")) return fail(p + ".http", "'" + c.target + "' is not an http:// URL");
        if (c.method.empty() || c.method.find_first_of(" \r\n") != std::string::npos) return fail(p + ".method", "not a method");
        if (c.statusMin > c.statusMax) return fail(p + ".status", "the range is empty");
        break;
      case CheckDef::Kind::grpc:
      case CheckDef::Kind::tcp: {
        const std::string hostPort = c.target.substr(0, c.target.find('/'));
        if (auto hp = parseHostPort(hostPort, {.allowHostname = true}); !hp) {
          return fail(p + "." + checkKindName(c.kind), "'" + c.target + "': " + hp.error().message());
        }
        break;
      }
      case CheckDef::Kind::exec:
        if (c.target.empty()) return fail(p + ".exec", "the command is empty");
        break;
      case CheckDef::Kind::ttl:
        break;
    }
  }
  return {};
}

Result<std::vector<ServiceDef>> parseServicesYaml(std::string_view text, const std::string& source,
                                                  const Defaults& defaults) {
  auto root = load(text, source);
  if (!root) return root.error();
  Ctx c{source, {}};
  std::vector<ServiceDef> out;
  if (!root->IsDefined() || root->IsNull()) return out;  // an empty file defines nothing
  if (!root->IsMap()) return c.fail(*root, "", "expected `service:` or `services:` at the top");
  if (auto r = onlyKeys(c, *root, "", {"service", "services"}); !r) return r.error();
  if ((*root)["service"]) {
    auto s = parseService(c, (*root)["service"], "service", defaults);
    if (!s) return s.error();
    out.push_back(std::move(*s));
  }
  if (const auto& list = (*root)["services"]; list) {
    if (!list.IsSequence()) return c.fail(list, "services", "expected a list of services");
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto s = parseService(c, list[i], "services[" + std::to_string(i) + "]", defaults);
      if (!s) return s.error();
      out.push_back(std::move(*s));
    }
  }
  std::set<std::string> ids;
  for (const auto& s : out) {
    if (!ids.insert(s.id).second) return Error(errc::invalid_argument, source + ": service id '" + s.id + "' is defined twice");
  }
  return out;
}

Result<ServiceDef> parseServiceJson(std::string_view text, const std::string& id, const Defaults& defaults) {
  // JSON is YAML: one parser, the same field rules and messages.
  auto root = load(text, "request body");
  if (!root) return root.error();
  Ctx c{"request body", {}};
  if (!root->IsMap()) return c.fail(*root, "", "expected a JSON object");
  YAML::Node n = YAML::Clone(*root);
  if (n["id"] && n["id"].IsScalar() && n["id"].Scalar() != id) {
    return c.fail(n["id"], "id", "'" + n["id"].Scalar() + "' differs from the id in the path ('" + id + "')");
  }
  n["id"] = id;
  return parseService(c, n, "", defaults);
}

}  // namespace mesh::catalog
