#include "tests/support/meshd_node.h"

#include <nlohmann/json.hpp>
#include <signal.h>

#include "common/http/client.h"
#include "tests/support/env.h"

namespace mesh::testing {

MeshdNode::MeshdNode(MeshdOptions options) : options_(std::move(options)) {}

MeshdNode::~MeshdNode() {
  if (proc_) proc_->kill();
}

void MeshdNode::start() {
  std::vector<std::string> argv = {
      meshdPath(),
      "--node-name", options_.name,
      "--bind", options_.address + ":" + std::to_string(options_.gossipPort),
      "--admin", options_.address + ":" + std::to_string(options_.adminPort),
      "--data-dir", options_.dataDir,
  };
  argv.insert(argv.end(), options_.extraArgs.begin(), options_.extraArgs.end());
  proc_.emplace(ChildProcess::start(argv, options_.logDir, options_.name));
}

bool MeshdNode::waitReady(std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        if (!proc_ || !proc_->running()) return true;  // exited: stop waiting, caller checks
        auto r = get("/healthz");
        return r.ok() && r->status == 200;
      },
      timeout) &&
         proc_ && proc_->running();
}

HostPort MeshdNode::admin() const {
  return HostPort{options_.address, options_.adminPort, false, true};
}

std::string MeshdNode::gossipAddress() const {
  return options_.address + ":" + std::to_string(options_.gossipPort);
}

Result<http::Response> MeshdNode::get(const std::string& path) const {
  http::ClientOptions opts;
  opts.timeout = std::chrono::seconds(2);
  return http::get(admin(), path, opts);
}

std::optional<ExitStatus> MeshdNode::stop(std::chrono::milliseconds timeout) {
  if (!proc_) return std::nullopt;
  proc_->signal(SIGTERM);
  return proc_->wait(timeout);
}

bool everyNodeSeesAlive(const std::vector<MeshdNode>& nodes, std::size_t expected, std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        for (const auto& node : nodes) {
          auto r = node.get("/v1/members");
          if (!r.ok()) return false;
          std::size_t alive = 0;
          for (const auto& m : nlohmann::json::parse(r->body, nullptr, false)) alive += m.value("status", "") == "alive";
          if (alive != expected) return false;
        }
        return true;
      },
      timeout);
}

}  // namespace mesh::testing
