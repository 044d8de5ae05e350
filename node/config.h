#pragma once
// meshd's configuration: defaults, then the YAML file given by --config, then flags (flags win).
// Every key of the file is also a flag of the same name (`data-dir:` and `--data-dir`), both
// described by one table in config.cc, so the two can never drift apart.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/common.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net_address.h"
#include "common/result.h"

namespace mesh::node {

enum class Role { node, edge };
const char* roleName(Role r);

struct NodeConfig {
  std::string nodeName;  // default: the host name
  HostPort bind{"0.0.0.0", 7946, false, true};
  std::optional<HostPort> advertise;  // default: derived from bind (see resolveAdvertise)
  std::vector<HostPort> join;
  std::string cluster = "default";
  std::string zone = "default";
  // Extra serf tags (--tag KEY=VALUE); role, cluster, zone and version are always set.
  std::map<std::string, std::string> tags;
  // Commands that answer serf queries (--query-handler NAME=COMMAND; NAME "*" for any): run with
  // /bin/sh -c, the payload on stdin, the output is the answer (as serf agent's query handlers).
  std::map<std::string, std::string> queryHandlers;
  std::string dataDir = "/var/lib/meshd";
  HostPort admin{"127.0.0.1", 15000, false, true};
  Role role = Role::node;
  spdlog::level::level_enum logLevel = spdlog::level::info;
  // Gossip encryption: a 16/24/32-byte key (given base64), and/or a keyring file (serf's
  // format: a JSON list of base64 keys, the first one primary). The file wins when it exists.
  std::string encryptKey;
  std::string keyringFile;
  // Service definitions (YAML files, re-read every 2 s); empty: only the local API registers.
  std::string servicesDir;
  // Operator keys whose signatures on policy this node trusts (public key PEM files), and how
  // many distinct ones must sign a document (TUF-style threshold).
  std::vector<std::string> policyTrustedKeys;
  int policyThreshold = 1;
  // The node's mTLS identity (issue 7): node.crt, node.key, ca.crt as meshcli cert issue writes
  // them. Empty: no identity, and so no proxy (its inbound listener is mTLS only).
  std::string tlsDir;
  // The proxy (issue 7), when tlsDir is set.
  HostPort outbound{"127.0.0.1", 15001, false, true};
  HostPort inbound{"0.0.0.0", 15006, false, true};
  int workers = 0;         // 0: one per core
  std::string accessLog;   // "", "stdout", "stderr" or a file
  std::string egressCaFile;  // TLS origination's trust (empty: the system's)
  bool peerHttp2 = true;  // --peer-protocol: HTTP/1.1 requests go to peers over HTTP/2 (http1: as HTTP/1.1)
  Duration drainTimeout = std::chrono::seconds(5);
  // Gossip tuning: a profile (lan, wan, local), then any timing overridden one by one.
  std::string gossipProfile = "lan";
  struct GossipOverrides {
    std::optional<Duration> probeInterval, probeTimeout, gossipInterval, pushPullInterval, tcpTimeout,
        gossipToTheDeadTime, leftNodeGcTime, reconnectInterval, deadNodeReclaimTime;
    std::optional<int> suspicionMult, suspicionMaxTimeoutMult, retransmitMult, indirectChecks, gossipNodes;
    std::optional<int> protocolVersion;
    std::string label;
    // Key rollout: accept plaintext while keys are being installed (incoming off), and send
    // plaintext until every node holds the key (outgoing off). Both on by default.
    bool verifyIncoming = true;
    bool verifyOutgoing = true;
  } gossip;
  log::Format logFormat = log::Format::text;
  std::string configFile;  // the --config it came from, if any
};

struct CommandLine {
  enum class Action { run, help, version };
  Action action = Action::run;
  NodeConfig config;
  std::string helpText;
};

// Parses argv (argv[0] included) and the --config file. The error's detail is one line that
// names the flag or key at fault; meshd prints it and exits with status 2.
Result<CommandLine> parseCommandLine(int argc, const char* const* argv);

// Applies a YAML document to cfg, as if from a file named `source`. Exposed for tests.
Result<void> applyYaml(NodeConfig& cfg, const std::string& yamlText, const std::string& source);

// The names of all keys (and flags), in the order of the table.
std::vector<std::string> configKeys();

// Node and cluster names: 1 to 128 characters of letters, digits, '.', '_' and '-'.
bool validName(const std::string& s);

// The address to advertise to peers: --advertise when set; else bind's address when it is
// specific; else (bind on 0.0.0.0 or ::) the first private address of this host's interfaces,
// as memberlist chooses it. Errors when no usable address exists.
Result<HostPort> resolveAdvertise(const NodeConfig& cfg);

}  // namespace mesh::node
