#include "node/agent.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "common/asio.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/version.h"
#include "node/admin/server.h"

namespace mesh::node {

namespace asio = boost::asio;

namespace {

std::string isoTime(WallTime t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// How long requestStop() waits for open admin connections to close before the loop is stopped
// regardless. Well inside the 2 s an orchestrator should have to wait after SIGTERM.
constexpr auto kStopGrace = std::chrono::milliseconds(500);
constexpr auto kStopPoll = std::chrono::milliseconds(5);

}  // namespace

struct Agent::Impl {
  Impl(NodeConfig cfg, HostPort adv, DataDir dir, Clock& clk, metrics::Registry& reg)
      : config(std::move(cfg)),
        advertise(std::move(adv)),
        dataDir(std::move(dir)),
        clock(clk),
        registry(reg),
        admin(io, reg),
        stopTimer(io),
        log(log::get("node")),
        startedMono(clk.now()),
        startedWall(clk.wallNow()) {}

  NodeConfig config;
  HostPort advertise;
  DataDir dataDir;
  Clock& clock;
  metrics::Registry& registry;
  asio::io_context io{1};
  admin::Server admin;
  asio::steady_timer stopTimer;
  std::shared_ptr<spdlog::logger> log;
  TimePoint startedMono;
  WallTime startedWall;
  HostPort adminBound;
  std::atomic<bool> stopping{false};
  // Keeps run() from returning while nothing is queued, until a stop is asked for.
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;

  double uptimeSeconds() const {
    return std::chrono::duration<double>(clock.now() - startedMono).count();
  }

  nlohmann::json selfJson() const {
    nlohmann::json join = nlohmann::json::array();
    for (const auto& j : config.join) join.push_back(j.toString());
    return {
        {"name", config.nodeName},
        {"cluster", config.cluster},
        {"role", roleName(config.role)},
        {"version", version::string()},
        {"commit", version::commit()},
        {"addresses",
         {{"gossip_bind", config.bind.toString()},
          {"gossip_advertise", advertise.toString()},
          {"admin", adminBound.toString()}}},
        {"join", join},
        {"data_dir", dataDir.path()},
        {"pid", ::getpid()},
        {"started_at", isoTime(startedWall)},
        {"uptime_seconds", uptimeSeconds()},
    };
  }

  void registerMetrics() {
    registry.gauge("mesh_build_info", "Build of this meshd: always 1, with version labels.",
                   {{"version", version::string()},
                    {"commit", version::commit()},
                    {"compiler", version::compiler()},
                    {"role", roleName(config.role)}})
        .set(1);
    registry.gaugeFn("mesh_node_uptime_seconds", "Seconds since this meshd started.", {},
                     [this] { return uptimeSeconds(); });
    metrics::registerProcessMetrics(registry);
  }

  void registerRoutes() {
    admin.route("GET", "/healthz", [this](const http::Request&) {
      if (stopping.load()) return http::Response::text(503, "stopping\n");
      return http::Response::text(200, "ok\n");
    });
    admin.route("GET", "/metrics", [this](const http::Request&) {
      return http::Response{
          200, {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}}, registry.render()};
    });
    admin.route("GET", "/v1/self", [this](const http::Request&) {
      return http::Response::json(200, selfJson().dump(2) + "\n");
    });
  }

  void stopNow() {
    log->info("stopping node={}", config.nodeName);
    admin.stop();
    work.reset();
    waitForClose(std::chrono::steady_clock::now() + kStopGrace);
  }

  // Stops the loop once the closed connections have wound down, or at the deadline: whatever
  // is still open then is cut off.
  void waitForClose(std::chrono::steady_clock::time_point deadline) {
    if (admin.openConnections() == 0 || std::chrono::steady_clock::now() >= deadline) {
      io.stop();
      return;
    }
    stopTimer.expires_after(kStopPoll);
    stopTimer.async_wait([this, deadline](boost::system::error_code ec) {
      if (!ec) waitForClose(deadline);
    });
  }
};

Agent::Agent(NodeConfig config, HostPort advertise, DataDir dataDir, Clock& clock,
             metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(advertise), std::move(dataDir),
                                   clock, registry)) {}

Agent::~Agent() = default;

Result<void> Agent::start() {
  Impl& m = *impl_;
  m.registerMetrics();
  m.registerRoutes();
  auto bound = m.admin.listen(m.config.admin);
  if (!bound) return bound.error();
  m.adminBound = *bound;
  m.work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      m.io.get_executor());
  m.log->info("started node={} cluster={} role={} admin={} gossip_advertise={} data_dir={} version={}",
              m.config.nodeName, m.config.cluster, roleName(m.config.role), m.adminBound.toString(),
              m.advertise.toString(), m.dataDir.path(), version::string());
  return {};
}

void Agent::run() {
  impl_->io.run();
  impl_->log->info("stopped node={}", impl_->config.nodeName);
  impl_->log->flush();
}

void Agent::requestStop() {
  if (impl_->stopping.exchange(true)) return;
  asio::post(impl_->io, [this] { impl_->stopNow(); });
}

const HostPort& Agent::adminAddress() const { return impl_->adminBound; }

}  // namespace mesh::node
