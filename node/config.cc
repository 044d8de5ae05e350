#include "node/config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include "common/duration.h"
#include "common/version.h"
#include "gossip/keyring.h"

namespace mesh::node {
namespace {

using Apply = std::function<Result<void>(NodeConfig&, const std::string&)>;

struct OptionSpec {
  const char* name;  // key in YAML, flag with "--" in front
  const char* valueName;
  const char* help;
  bool repeatable;
  Apply apply;               // sets (or, when repeatable, appends) one value
  std::function<void(NodeConfig&)> clear;  // repeatable only: forget earlier values
};

Result<HostPort> addressValue(const std::string& v, AddressRules rules) {
  return parseHostPort(v, rules);
}

// A duration option stored in an optional field of the gossip overrides.
OptionSpec durationOption(const char* name, const char* help,
                          std::optional<Duration> NodeConfig::GossipOverrides::*field, bool allowZero) {
  return {name, "DURATION", help, false,
          [field, allowZero](NodeConfig& c, const std::string& v) -> Result<void> {
            auto d = parseDuration(v);
            if (!d) return d.error();
            if (*d < Duration::zero() || (*d == Duration::zero() && !allowZero)) {
              return Error(errc::invalid_argument, "'" + v + "' must be a positive duration");
            }
            c.gossip.*field = *d;
            return {};
          },
          nullptr};
}

OptionSpec boolOption(const char* name, const char* help, bool NodeConfig::GossipOverrides::*field) {
  return {name, "true|false", help, false,
          [field](NodeConfig& c, const std::string& v) -> Result<void> {
            if (v == "true") {
              c.gossip.*field = true;
            } else if (v == "false") {
              c.gossip.*field = false;
            } else {
              return Error(errc::invalid_argument, "'" + v + "' must be true or false");
            }
            return {};
          },
          nullptr};
}

OptionSpec intOption(const char* name, const char* help, std::optional<int> NodeConfig::GossipOverrides::*field,
                     int min, int max) {
  return {name, "N", help, false,
          [field, min, max](NodeConfig& c, const std::string& v) -> Result<void> {
            int n = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < min || n > max) {
              return Error(errc::invalid_argument, "'" + v + "' must be a whole number from " + std::to_string(min) +
                                                       " to " + std::to_string(max));
            }
            c.gossip.*field = n;
            return {};
          },
          nullptr};
}

const std::vector<OptionSpec>& optionTable() {
  static const std::vector<OptionSpec> table = {
      {"node-name", "NAME", "Name of this node, unique in the cluster (default: host name)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (!validName(v)) {
           return Error(errc::invalid_argument,
                        "'" + v + "' is not a valid node name (1-128 of A-Z a-z 0-9 . _ -)");
         }
         c.nodeName = v;
         return {};
       },
       nullptr},
      {"bind", "ADDR:PORT", "Gossip UDP+TCP bind address (default 0.0.0.0:7946)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto a = addressValue(v, {.allowPortZero = false});
         if (!a) return a.error();
         c.bind = *a;
         return {};
       },
       nullptr},
      {"advertise", "ADDR:PORT", "Gossip address peers use to reach this node (default: from bind)",
       false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto a = addressValue(v, {});
         if (!a) return a.error();
         if (a->isUnspecified()) {
           return Error(errc::invalid_argument, "'" + v + "' cannot be advertised: it is not a "
                                                          "specific address");
         }
         c.advertise = *a;
         return {};
       },
       nullptr},
      {"join", "ADDR:PORT", "Gossip address of a node to join at start (repeatable; host names allowed)",
       true,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto a = addressValue(v, {.allowHostname = true, .requirePort = false, .defaultPort = 7946});
         if (!a) return a.error();
         c.join.push_back(*a);
         return {};
       },
       [](NodeConfig& c) { c.join.clear(); }},
      {"cluster", "NAME", "Name of the cluster this node belongs to (default: default)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (!validName(v)) {
           return Error(errc::invalid_argument,
                        "'" + v + "' is not a valid cluster name (1-128 of A-Z a-z 0-9 . _ -)");
         }
         c.cluster = v;
         return {};
       },
       nullptr},
      {"zone", "NAME", "Zone (failure domain) of this node, a serf tag (default: default)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (!validName(v)) {
           return Error(errc::invalid_argument, "'" + v + "' is not a valid zone name (1-128 of A-Z a-z 0-9 . _ -)");
         }
         c.zone = v;
         return {};
       },
       nullptr},
      {"tag", "KEY=VALUE", "A serf tag announced with this node (repeatable; a list in YAML)", true,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         const auto eq = v.find('=');
         if (eq == std::string::npos || eq == 0) return Error(errc::invalid_argument, "'" + v + "' is not KEY=VALUE");
         const std::string key = v.substr(0, eq);
         if (key == "role" || key == "cluster" || key == "zone" || key == "version") {
           return Error(errc::invalid_argument, "tag '" + key + "' is set by meshd itself" +
                                                    (key == "version" ? std::string(" (the build version)")
                                                                      : " (use --" + key + ")"));
         }
         c.tags[key] = v.substr(eq + 1);
         return {};
       },
       [](NodeConfig& c) { c.tags.clear(); }},
      {"query-handler", "NAME=COMMAND",
       "Answer serf queries named NAME ('*': any) with COMMAND's output; payload on stdin (repeatable)", true,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         const auto eq = v.find('=');
         if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) {
           return Error(errc::invalid_argument, "'" + v + "' is not NAME=COMMAND");
         }
         const std::string name = v.substr(0, eq);
         if (name.starts_with("_serf_")) return Error(errc::invalid_argument, "query names starting with _serf_ are serf's own");
         c.queryHandlers[name] = v.substr(eq + 1);
         return {};
       },
       [](NodeConfig& c) { c.queryHandlers.clear(); }},
      {"data-dir", "DIR", "Directory for durable state (default: /var/lib/meshd)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "data dir must not be empty");
         c.dataDir = v;
         return {};
       },
       nullptr},
      {"admin", "ADDR:PORT", "Admin HTTP API address (default 127.0.0.1:15000; port 0: any free)",
       false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto a = addressValue(v, {.allowPortZero = true});
         if (!a) return a.error();
         c.admin = *a;
         return {};
       },
       nullptr},
      {"role", "node|edge", "Role of this node (default: node)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v == "node") c.role = Role::node;
         else if (v == "edge") c.role = Role::edge;
         else return Error(errc::invalid_argument, "role must be node or edge (got '" + v + "')");
         return {};
       },
       nullptr},
      {"log-level", "LEVEL", "trace, debug, info, warn, error or off (default: info)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto l = log::parseLevel(v);
         if (!l) return l.error();
         c.logLevel = *l;
         return {};
       },
       nullptr},
      {"log-format", "text|json", "Log line format (default: text)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto f = log::parseFormat(v);
         if (!f) return f.error();
         c.logFormat = *f;
         return {};
       },
       nullptr},
      {"encrypt", "KEY_BASE64", "Gossip encryption key: 16, 24 or 32 bytes, base64 (as `serf keygen`)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto key = gossip::base64Decode(v);
         if (!key) return Error(errc::invalid_argument, "the key is not valid base64");
         if (auto ok = gossip::Keyring::validateKey(*key); !ok) return Error(errc::invalid_argument, ok.error().message());
         c.encryptKey = *key;
         return {};
       },
       nullptr},
      {"policy-trusted-key", "FILE", "Operator public key (PEM) whose policy signatures this node trusts (repeatable)", true,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "trusted key file must not be empty");
         c.policyTrustedKeys.push_back(v);
         return {};
       },
       [](NodeConfig& c) { c.policyTrustedKeys.clear(); }},
      {"policy-threshold", "N", "How many distinct trusted keys must sign a policy document (default 1)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         int n = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
         if (ec != std::errc() || p != v.data() + v.size() || n < 1 || n > 16) {
           return Error(errc::invalid_argument, "'" + v + "' is not a threshold from 1 to 16");
         }
         c.policyThreshold = n;
         return {};
       },
       nullptr},
      {"tls-dir", "DIR", "The node's certificate, key and trust bundle (meshcli cert issue): checked at start", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "tls dir must not be empty");
         c.tlsDir = v;
         return {};
       },
       nullptr},
      {"outbound", "ADDR:PORT", "Proxy listener for local apps: plain HTTP/1.1 and redirected TCP (default 127.0.0.1:15001)",
       false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto a = addressValue(v, {.allowPortZero = true});
         if (!a) return a.error();
         c.outbound = *a;
         return {};
       },
       nullptr},
      {"inbound", "ADDR:PORT", "Proxy listener for peers, mTLS only (default 0.0.0.0:15006)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto a = addressValue(v, {.allowPortZero = true});
         if (!a) return a.error();
         c.inbound = *a;
         return {};
       },
       nullptr},
      {"workers", "N", "Proxy worker threads, each with its own event loop (default: one per core)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         int n = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
         if (ec != std::errc() || p != v.data() + v.size() || n < 1 || n > 256) {
           return Error(errc::invalid_argument, "'" + v + "' is not a worker count from 1 to 256");
         }
         c.workers = n;
         return {};
       },
       nullptr},
      {"access-log", "stdout|stderr|FILE", "JSON access log line per proxied request (default: off)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "access log must name stdout, stderr or a file");
         c.accessLog = v;
         return {};
       },
       nullptr},
      {"egress-ca-file", "FILE",
       "CA certificates (PEM) that external hosts' certificates are verified against when the proxy originates "
       "TLS for an ExternalService (default: the system's)",
       false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "the egress CA file must be named");
         c.egressCaFile = v;
         return {};
       },
       nullptr},
      {"peer-protocol", "http1|http2",
       "How HTTP/1.1 requests travel to peers' proxies: http2 (multiplexed on one connection per peer) "
       "or http1 (one connection per request in flight; http2 and grpc services go over HTTP/2 anyway) "
       "(default http2)",
       false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v != "http1" && v != "http2") return Error(errc::invalid_argument, "'" + v + "' is not http1 or http2");
         c.peerHttp2 = v == "http2";
         return {};
       },
       nullptr},
      {"drain-timeout", "DURATION", "On stop, how long requests in flight may take to finish (default 5s)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         auto d = parseDuration(v);
         if (!d || *d < Duration::zero() || *d > std::chrono::minutes(10)) {
           return Error(errc::invalid_argument, "'" + v + "' is not a duration up to 10m");
         }
         c.drainTimeout = *d;
         return {};
       },
       nullptr},
      {"services-dir", "DIR", "Directory of service definition files (*.yaml), re-read every 2 s", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "services dir must not be empty");
         c.servicesDir = v;
         return {};
       },
       nullptr},
      {"keyring-file", "FILE", "Gossip keyring (JSON list of base64 keys, primary first); kept up to date on key changes",
       false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.empty()) return Error(errc::invalid_argument, "keyring file must not be empty");
         c.keyringFile = v;
         return {};
       },
       nullptr},
      {"gossip-profile", "lan|wan|local", "Gossip timing profile (default: lan; wan for gateways across sites)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v != "lan" && v != "wan" && v != "local") {
           return Error(errc::invalid_argument, "gossip profile must be lan, wan or local (got '" + v + "')");
         }
         c.gossipProfile = v;
         return {};
       },
       nullptr},
      durationOption("gossip-probe-interval", "Time between failure-detection probes (lan: 1s)",
                     &NodeConfig::GossipOverrides::probeInterval, false),
      durationOption("gossip-probe-timeout", "Wait for a direct ack before indirect probes (lan: 500ms)",
                     &NodeConfig::GossipOverrides::probeTimeout, false),
      durationOption("gossip-interval", "Time between gossip rounds (lan: 200ms)", &NodeConfig::GossipOverrides::gossipInterval,
                     false),
      durationOption("gossip-push-pull-interval", "Time between full state exchanges (lan: 30s; 0 disables)",
                     &NodeConfig::GossipOverrides::pushPullInterval, true),
      durationOption("gossip-tcp-timeout", "Deadline of a gossip TCP exchange (lan: 10s)",
                     &NodeConfig::GossipOverrides::tcpTimeout, false),
      durationOption("gossip-to-the-dead-time", "Keep gossiping to, then forget, dead nodes after (lan: 30s)",
                     &NodeConfig::GossipOverrides::gossipToTheDeadTime, false),
      durationOption("gossip-left-node-gc-time", "Forget nodes that left after (lan: 30s)",
                     &NodeConfig::GossipOverrides::leftNodeGcTime, false),
      durationOption("gossip-reconnect-interval", "Try a push-pull with a dead node this often (lan: 10s; 0 disables)",
                     &NodeConfig::GossipOverrides::reconnectInterval, true),
      durationOption("gossip-dead-node-reclaim-time", "A dead node's name may move to a new address after (0: never)",
                     &NodeConfig::GossipOverrides::deadNodeReclaimTime, true),
      intOption("gossip-suspicion-mult", "Suspicion timeout multiplier (lan: 4)", &NodeConfig::GossipOverrides::suspicionMult, 1, 100),
      intOption("gossip-suspicion-max-timeout-mult", "Upper bound of the suspicion timeout, x minimum (lan: 6)",
                &NodeConfig::GossipOverrides::suspicionMaxTimeoutMult, 1, 100),
      intOption("gossip-retransmit-mult", "Broadcast retransmits, x log10(n+1) (lan: 4)", &NodeConfig::GossipOverrides::retransmitMult,
                1, 100),
      intOption("gossip-indirect-checks", "Peers asked for indirect probes (lan: 3)", &NodeConfig::GossipOverrides::indirectChecks,
                0, 32),
      intOption("gossip-nodes", "Peers gossiped to each round (lan: 3)", &NodeConfig::GossipOverrides::gossipNodes, 1, 64),
      intOption("gossip-protocol-version", "memberlist protocol version spoken, 1 to 5 (default 2)",
                &NodeConfig::GossipOverrides::protocolVersion, 1, 5),
      boolOption("gossip-verify-incoming", "Refuse unencrypted gossip when a key is set (default true)",
                 &NodeConfig::GossipOverrides::verifyIncoming),
      boolOption("gossip-verify-outgoing", "Encrypt outgoing gossip when a key is set (default true)",
                 &NodeConfig::GossipOverrides::verifyOutgoing),
      {"gossip-label", "LABEL", "Label on every gossip packet and stream (memberlist v0.3+; default none)", false,
       [](NodeConfig& c, const std::string& v) -> Result<void> {
         if (v.size() > 255) return Error(errc::invalid_argument, "label longer than 255 bytes");
         c.gossip.label = v;
         return {};
       },
       nullptr},
  };
  return table;
}

const OptionSpec* findOption(const std::string& name) {
  for (const auto& o : optionTable()) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

std::string at(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.is_null()) return {};
  return " (line " + std::to_string(m.line + 1) + ")";
}

std::string defaultNodeName() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == 0) return "meshd";
  std::string h(host);
  // A host name is a valid node name unless it has odd characters; fall back when it does.
  return validName(h) ? h : "meshd";
}

}  // namespace

const char* roleName(Role r) { return r == Role::edge ? "edge" : "node"; }

bool validName(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::vector<std::string> configKeys() {
  std::vector<std::string> keys;
  for (const auto& o : optionTable()) keys.emplace_back(o.name);
  return keys;
}

Result<void> applyYaml(NodeConfig& cfg, const std::string& yamlText, const std::string& source) {
  const std::string where = "config file " + source;
  YAML::Node root;
  try {
    root = YAML::Load(yamlText);
  } catch (const YAML::Exception& e) {
    return Error(errc::malformed, where + ": malformed YAML at line " +
                                      std::to_string(e.mark.line + 1) + ", column " +
                                      std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (root.IsNull()) return {};  // an empty file sets nothing
  if (!root.IsMap()) {
    return Error(errc::malformed, where + ": the top level must be a map of keys to values" + at(root));
  }
  std::set<std::string> seen;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      return Error(errc::malformed, where + ": keys must be plain strings" + at(kv.first));
    }
    const std::string key = kv.first.Scalar();
    const OptionSpec* spec = findOption(key);
    if (!spec) {
      return Error(errc::unknown_key, where + ": unknown key '" + key + "'" + at(kv.first));
    }
    if (!seen.insert(key).second) {
      return Error(errc::malformed, where + ": key '" + key + "' appears twice" + at(kv.first));
    }
    const YAML::Node& val = kv.second;
    auto applyOne = [&](const YAML::Node& v) -> Result<void> {
      if (!v.IsScalar()) {
        return Error(errc::invalid_argument,
                     where + ": key '" + key + "'" + at(v) + ": expected a single value");
      }
      auto r = spec->apply(cfg, v.Scalar());
      if (!r) {
        return Error(r.error().code, where + ": key '" + key + "'" + at(v) + ": " + r.error().message());
      }
      return {};
    };
    if (spec->repeatable) {
      spec->clear(cfg);
      if (val.IsSequence()) {
        for (const auto& item : val) {
          if (auto r = applyOne(item); !r) return r;
        }
        continue;
      }
    }
    if (val.IsNull() || val.IsSequence() || val.IsMap()) {
      return Error(errc::invalid_argument, where + ": key '" + key + "'" + at(val) +
                                               (spec->repeatable ? ": expected a value or a list of values"
                                                                 : ": expected a single value"));
    }
    if (auto r = applyOne(val); !r) return r;
  }
  return {};
}

Result<CommandLine> parseCommandLine(int argc, const char* const* argv) {
  CLI::App app{"meshd: service mesh node (proxy and agent in one process)", "meshd"};
  app.get_formatter()->column_width(34);
  std::string configFile;
  bool showVersion = false;
  app.add_option("--config", configFile, "YAML config file; its keys are the flags below")
      ->option_text("FILE");
  app.add_flag("--version", showVersion, "Print the version and exit");

  // Flags are collected as strings, then validated by the same code that validates YAML values.
  std::vector<std::vector<std::string>> values(optionTable().size());
  for (std::size_t i = 0; i < optionTable().size(); ++i) {
    const auto& o = optionTable()[i];
    auto* opt = app.add_option(std::string("--") + o.name, values[i], o.help)
                    ->option_text(o.valueName)
                    ->type_size(1)
                    ->allow_extra_args(false);
    if (!o.repeatable) opt->multi_option_policy(CLI::MultiOptionPolicy::Throw);
  }

  CommandLine out;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.action = CommandLine::Action::help;
    out.helpText = app.help();
    return out;
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    return Error(errc::invalid_argument, msg);
  }
  if (showVersion) {
    out.action = CommandLine::Action::version;
    return out;
  }

  NodeConfig& cfg = out.config;
  cfg.nodeName = defaultNodeName();
  if (!configFile.empty()) {
    std::ifstream in(configFile);
    if (!in) {
      return Error(errc::io_error, "config file " + configFile + ": cannot read: " +
                                       std::strerror(errno));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    if (auto r = applyYaml(cfg, ss.str(), configFile); !r) return r.error();
    cfg.configFile = configFile;
  }
  for (std::size_t i = 0; i < optionTable().size(); ++i) {
    const auto& o = optionTable()[i];
    if (values[i].empty()) continue;
    if (!o.repeatable && values[i].size() > 1) {
      return Error(errc::invalid_argument, std::string("flag --") + o.name +
                                               " given more than once (it takes one value)");
    }
    if (o.repeatable) o.clear(cfg);
    for (const auto& v : values[i]) {
      auto r = o.apply(cfg, v);
      if (!r) {
        return Error(r.error().code, std::string("flag --") + o.name + ": " + r.error().message());
      }
    }
  }
  return out;
}

Result<HostPort> resolveAdvertise(const NodeConfig& cfg) {
  if (cfg.advertise) return *cfg.advertise;
  if (!cfg.bind.isUnspecified()) return cfg.bind;

  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return Error(errc::io_error, std::string("cannot list network interfaces: ") + std::strerror(errno));
  }
  // memberlist prefers a private IPv4 address (RFC 1918 and RFC 6598), then any other
  // non-loopback address of the bind's family.
  std::string privateAddr, otherAddr;
  const bool v6 = cfg.bind.isIpv6;
  for (ifaddrs* ifa = list; ifa; ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (!v6 && ifa->ifa_addr->sa_family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(ifa->ifa_addr);
      std::uint32_t a = ntohl(sin->sin_addr.s_addr);
      if ((a >> 24) == 127) continue;
      inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
      bool isPrivate = (a >> 24) == 10 || (a >> 20) == (172u << 4 | 1) ||
                       (a >> 16) == (192u << 8 | 168) || (a >> 22) == (100u << 2 | 1);
      if (isPrivate && privateAddr.empty()) privateAddr = buf;
      if (otherAddr.empty()) otherAddr = buf;
    } else if (v6 && ifa->ifa_addr->sa_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(ifa->ifa_addr);
      if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) || IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) continue;
      inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
      bool isUla = (sin6->sin6_addr.s6_addr[0] & 0xFE) == 0xFC;
      if (isUla && privateAddr.empty()) privateAddr = buf;
      if (otherAddr.empty()) otherAddr = buf;
    }
  }
  ::freeifaddrs(list);
  std::string chosen = !privateAddr.empty() ? privateAddr : otherAddr;
  if (chosen.empty()) {
    return Error(errc::invalid_argument,
                 "bind " + cfg.bind.toString() +
                     " is not a specific address and this host has no other address to "
                     "advertise: set --advertise");
  }
  return HostPort{chosen, cfg.bind.port, v6, true};
}

}  // namespace mesh::node
