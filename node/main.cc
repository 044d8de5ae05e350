// meshd: the mesh node (agent and proxy in one process).
//
// Exit status: 0 after an orderly stop (SIGTERM, SIGINT); 2 for a bad flag, config file or data
// dir (one line on stderr names it); 1 when the node cannot start for another reason (an
// address already in use, say).

#include <chrono>
#include <cstdio>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "common/version.h"
#include "node/agent.h"
#include "node/config.h"
#include "node/data_dir.h"
#include "node/keyring_file.h"
#include "node/identity/identity.h"
#include "node/policy/signing.h"

namespace {

int usageError(const std::string& message) {
  std::fprintf(stderr, "meshd: error: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mesh;
  // Before any thread exists, so that every thread inherits the mask (see signals.h).
  signals::blockStopSignals();

  auto cl = node::parseCommandLine(argc, argv);
  if (!cl) return usageError(cl.error().message());
  if (cl->action == node::CommandLine::Action::help) {
    std::fputs(cl->helpText.c_str(), stdout);
    return 0;
  }
  if (cl->action == node::CommandLine::Action::version) {
    std::printf("meshd %s (commit %s, %s)\n", version::string(), version::commit(),
                version::compiler());
    return 0;
  }
  node::NodeConfig& cfg = cl->config;
  log::setup(cfg.logLevel, cfg.logFormat);

  auto advertise = node::resolveAdvertise(cfg);
  if (!advertise) return usageError(advertise.error().message());
  auto dataDir = node::DataDir::open(cfg.dataDir);
  if (!dataDir) return usageError(dataDir.error().message());
  std::string warning;
  auto keyring = node::loadKeyring(cfg, warning);
  if (!keyring) return usageError(keyring.error().message());
  if (!warning.empty()) log::get("node")->warn("{}", warning);
  // The node's identity is checked now: a node with a broken or expired certificate must not
  // start (it would be refused by every peer).
  if (!cfg.tlsDir.empty()) {
    const auto now = unixSeconds(SystemClock::instance().wallNow());
    auto id = identity::loadTlsDir(cfg.tlsDir, now);
    if (!id) return usageError("tls-dir " + id.error().message());
    if (id->spiffeId != identity::nodeSpiffeId(id->trustDomain, cfg.nodeName)) {
      return usageError("tls-dir " + cfg.tlsDir + " holds the certificate of " + id->spiffeId + ", not of this node (" +
                        identity::nodeSpiffeId(id->trustDomain, cfg.nodeName) + ")");
    }
    log::get("node")->info("identity {} (trust domain {}) valid for {} more days", id->spiffeId, id->trustDomain,
                           (id->notAfter - now) / 86400);
  }
  // Trusted policy keys are checked now: a node that would refuse every policy must not start
  // believing it can verify one.
  std::string trustedIds;
  for (const auto& path : cfg.policyTrustedKeys) {
    auto k = policy::readPublicKeyFile(path);
    if (!k) return usageError("policy-trusted-key " + k.error().message());
    trustedIds += (trustedIds.empty() ? "" : ",") + k->keyId;
  }
  if (!cfg.policyTrustedKeys.empty() && cfg.policyThreshold > static_cast<int>(cfg.policyTrustedKeys.size())) {
    return usageError("policy-threshold " + std::to_string(cfg.policyThreshold) + " exceeds the " +
                      std::to_string(cfg.policyTrustedKeys.size()) + " trusted key(s)");
  }
  if (!trustedIds.empty()) {
    log::get("node")->info("policy signers trusted keys={} threshold={}", trustedIds, cfg.policyThreshold);
  }

  node::Agent agent(std::move(cfg), std::move(*advertise), std::move(*dataDir), std::move(*keyring),
                    metrics::Registry::global());
  if (auto started = agent.start(); !started) {
    std::fprintf(stderr, "meshd: error: %s\n", started.error().message().c_str());
    return 1;
  }
  signals::StopSignalWatcher watcher([&agent](int sig) {
    log::get("node")->info("received signal={}", sig);
    agent.requestStop();
  });
  agent.run();
  return 0;
}
