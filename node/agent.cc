#include "node/agent.h"

#include <netdb.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "common/asio.h"
#include "common/asio_event_loop.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/version.h"
#include "gossip/asio_transport.h"
#include "gossip/memberlist.h"
#include "gossip/serf/serf.h"

#include <deque>
#include "node/admin/server.h"

namespace mesh::node {

namespace asio = boost::asio;
using namespace std::chrono_literals;

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
// regardless. With serf's leave (at most 0.5 s for the intent, 0.5 s for memberlist's dead
// message, 0.3 s to let them spread) well inside the 2 s an orchestrator waits after SIGTERM.
constexpr auto kStopGrace = std::chrono::milliseconds(500);
constexpr auto kStopPoll = std::chrono::milliseconds(5);
// A --join that found nobody is retried (like serf's retry-join), so that nodes can start in any
// order: after 1 s, then twice as long each time, up to 30 s.
constexpr auto kJoinRetryFirst = std::chrono::seconds(1);
constexpr auto kJoinRetryMax = std::chrono::seconds(30);
// User events kept for GET /v1/events.
constexpr std::size_t kRecentEvents = 256;

gossip::Config gossipConfig(const NodeConfig& c, const HostPort& advertise,
                            std::shared_ptr<gossip::Keyring> keyring) {
  gossip::Config g = c.gossipProfile == "wan"     ? gossip::Config::wan()
                     : c.gossipProfile == "local" ? gossip::Config::local()
                                                  : gossip::Config::lan();
  g.name = c.nodeName;
  g.advertise = gossip::NodeAddress::fromHostPort(advertise).value();
  const auto& o = c.gossip;
  if (o.probeInterval) g.probeInterval = *o.probeInterval;
  if (o.probeTimeout) g.probeTimeout = *o.probeTimeout;
  if (o.gossipInterval) g.gossipInterval = *o.gossipInterval;
  if (o.pushPullInterval) g.pushPullInterval = *o.pushPullInterval;
  if (o.tcpTimeout) g.tcpTimeout = *o.tcpTimeout;
  if (o.gossipToTheDeadTime) g.gossipToTheDeadTime = *o.gossipToTheDeadTime;
  if (o.leftNodeGcTime) g.leftNodeGcTime = *o.leftNodeGcTime;
  if (o.reconnectInterval) g.reconnectInterval = *o.reconnectInterval;
  if (o.deadNodeReclaimTime) g.deadNodeReclaimTime = *o.deadNodeReclaimTime;
  if (o.suspicionMult) g.suspicionMult = *o.suspicionMult;
  if (o.suspicionMaxTimeoutMult) g.suspicionMaxTimeoutMult = *o.suspicionMaxTimeoutMult;
  if (o.retransmitMult) g.retransmitMult = *o.retransmitMult;
  if (o.indirectChecks) g.indirectChecks = *o.indirectChecks;
  if (o.gossipNodes) g.gossipNodes = *o.gossipNodes;
  if (o.protocolVersion) g.protocolVersion = static_cast<std::uint8_t>(*o.protocolVersion);
  g.label = o.label;
  g.gossipVerifyIncoming = o.verifyIncoming;
  g.gossipVerifyOutgoing = o.verifyOutgoing;
  g.keyring = std::move(keyring);
  return g;
}

// --join names may be host names: resolved (blocking, once per attempt) to every address.
std::vector<gossip::NodeAddress> resolve(const std::vector<HostPort>& join, std::string& errors) {
  std::vector<gossip::NodeAddress> out;
  for (const auto& hp : join) {
    if (hp.isIpLiteral) {
      if (auto a = gossip::NodeAddress::fromHostPort(hp)) out.push_back(*a);
      continue;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(hp.host.c_str(), nullptr, &hints, &res); rc != 0) {
      errors += (errors.empty() ? "" : "; ") + ("cannot resolve " + hp.host + ": " + gai_strerror(rc));
      continue;
    }
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      if (ai->ai_family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(ai->ai_addr);
        out.push_back({std::string(reinterpret_cast<char*>(&sin->sin_addr), 4), hp.port});
      } else if (ai->ai_family == AF_INET6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(ai->ai_addr);
        out.push_back({std::string(reinterpret_cast<char*>(&sin6->sin6_addr), 16), hp.port});
      }
    }
    ::freeaddrinfo(res);
  }
  return out;
}

}  // namespace

struct Agent::Impl {
  Impl(NodeConfig cfg, HostPort adv, DataDir dir, std::shared_ptr<gossip::Keyring> ring, metrics::Registry& reg)
      : config(std::move(cfg)),
        advertise(std::move(adv)),
        dataDir(std::move(dir)),
        keyring(std::move(ring)),
        registry(reg),
        loop(io),
        admin(io, reg),
        stopTimer(io),
        log(log::get("node")),
        startedMono(loop.now()),
        startedWall(loop.wallNow()) {}

  NodeConfig config;
  HostPort advertise;
  DataDir dataDir;
  std::shared_ptr<gossip::Keyring> keyring;
  metrics::Registry& registry;
  asio::io_context io{1};
  AsioEventLoop loop;
  admin::Server admin;
  asio::steady_timer stopTimer;
  std::shared_ptr<spdlog::logger> log;
  TimePoint startedMono;
  WallTime startedWall;
  HostPort adminBound;
  std::unique_ptr<gossip::AsioTransport> transport;
  std::unique_ptr<gossip::serf::Serf> serf;
  gossip::Memberlist* members = nullptr;  // serf's memberlist
  struct ReceivedEvent {
    gossip::serf::UserEventDelivery event;
    WallTime at;
  };
  std::deque<ReceivedEvent> recentEvents;
  std::atomic<bool> stopping{false};
  bool joined = false;
  Duration joinRetry = kJoinRetryFirst;
  // Keeps run() from returning while nothing is queued, until a stop is asked for.
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;

  double uptimeSeconds() const { return std::chrono::duration<double>(loop.now() - startedMono).count(); }

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
        {"gossip",
         {{"members_alive", members ? members->numLive() : 0},
          {"members_known", members ? members->estimatedSize() : 0},
          {"health_score", members ? members->healthScore() : 0},
          {"encrypted", keyring && !keyring->empty()},
          {"protocol_version", members ? members->config().protocolVersion : 0},
          {"profile", config.gossipProfile}}},
    };
  }

  std::map<std::string, std::string> tags() const {
    auto t = config.tags;
    t["role"] = roleName(config.role);
    t["cluster"] = config.cluster;
    t["zone"] = config.zone;
    t["version"] = version::string();
    return t;
  }

  // One entry a member: memberlist's view (state, incarnation, versions) joined with serf's
  // (status, tags). Serf keeps left and failed members longer than memberlist does.
  nlohmann::json membersJson() const {
    nlohmann::json out = nlohmann::json::array();
    if (!members) return out;
    auto list = members->members();
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.node.name < b.node.name; });
    std::map<std::string, gossip::serf::Member> serfView;
    for (auto& m : serf->members()) serfView.emplace(m.name, std::move(m));
    const TimePoint now = loop.now();
    auto serfFields = [&](nlohmann::json& j, const std::string& name) {
      auto it = serfView.find(name);
      if (it == serfView.end()) {
        j["status"] = "none";
        j["tags"] = nlohmann::json::object();
        return;
      }
      j["status"] = gossip::serf::memberStatusName(it->second.status);
      j["tags"] = it->second.tags;
      serfView.erase(it);
    };
    for (const auto& m : list) {
      std::string meta;
      appendJsonEscapedBytes(meta, m.node.meta);
      nlohmann::json j = {
          {"name", m.node.name},
          {"addr", m.node.addr.ipString()},
          {"port", m.node.addr.port},
          {"state", gossip::nodeStateName(m.state)},
          {"incarnation", m.incarnation},
          {"meta", meta},
          {"meta_base64", gossip::base64Encode(m.node.meta)},
          {"protocol", {{"min", m.node.pmin}, {"max", m.node.pmax}, {"current", m.node.pcur}}},
          {"delegate_protocol", {{"min", m.node.dmin}, {"max", m.node.dmax}, {"current", m.node.dcur}}},
          {"state_age_seconds", std::chrono::duration<double>(now - m.stateChange).count()},
      };
      serfFields(j, m.node.name);
      out.push_back(std::move(j));
    }
    // Members memberlist has forgotten but serf still reports (left or failed, until reaped).
    for (const auto& [name, sm] : serfView) {
      out.push_back({{"name", name},
                     {"addr", sm.addr.ipString()},
                     {"port", sm.addr.port},
                     {"state", sm.status == gossip::serf::MemberStatus::left ? "left" : "dead"},
                     {"status", gossip::serf::memberStatusName(sm.status)},
                     {"tags", sm.tags}});
    }
    return out;
  }

  nlohmann::json eventsJson() const {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : recentEvents) {
      std::string payload;
      appendJsonEscapedBytes(payload, r.event.payload);
      out.push_back({{"name", r.event.name},
                     {"payload", payload},
                     {"payload_base64", gossip::base64Encode(r.event.payload)},
                     {"ltime", r.event.ltime},
                     {"coalesce", r.event.coalesce},
                     {"received_at", isoTime(r.at)}});
    }
    return out;
  }

  // Meta bytes are opaque (serf's tag encoding, or a peer's string): shown as text with every
  // byte that is not printable ASCII escaped, so the JSON stays valid whatever a peer sent.
  static void appendJsonEscapedBytes(std::string& out, std::string_view bytes) {
    static const char* hex = "0123456789abcdef";
    for (unsigned char c : bytes) {
      if (c >= 0x20 && c < 0x7f && c != '\\') {
        out.push_back(static_cast<char>(c));
      } else {
        out += "\\x";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
      }
    }
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
    admin.route("GET", "/v1/members", [this](const http::Request&) {
      return http::Response::json(200, membersJson().dump(2) + "\n");
    });
    admin.route("GET", "/v1/events", [this](const http::Request&) {
      return http::Response::json(200, eventsJson().dump(2) + "\n");
    });
    // POST /v1/events?name=NAME[&coalesce=true]; the body is the payload.
    admin.route("POST", "/v1/events", [this](const http::Request& req) {
      auto name = req.queryParam("name");
      if (!name || name->empty()) return admin::errorResponse(400, "missing ?name= of the event");
      const bool coalesce = req.queryParam("coalesce").value_or("false") == "true";
      if (!serf) return admin::errorResponse(503, "gossip is not running");
      auto r = serf->userEvent(*name, req.body, coalesce);
      if (!r) {
        const int status = r.error().code == gossip::errc::too_large ? 413 : 400;
        return admin::errorResponse(status, r.error().message());
      }
      return http::Response::json(200, nlohmann::json{{"name", *name}, {"ltime", serf->eventClock() - 1}}.dump() + "\n");
    });
  }

  Result<void> startGossip() {
    auto t = gossip::AsioTransport::create(io, config.bind);
    if (!t) return t.error();
    transport = std::move(*t);
    gossip::serf::SerfConfig sc;
    sc.nodeName = config.nodeName;
    sc.tags = tags();
    // Short enough that a graceful leave fits in the 2 s an orchestrator waits after SIGTERM.
    sc.broadcastTimeout = std::chrono::milliseconds(500);
    sc.leavePropagateDelay = std::chrono::milliseconds(300);
    auto s = gossip::serf::Serf::create(
        sc, gossipConfig(config, advertise, keyring), loop, *transport, registry,
        [this](const gossip::serf::MemberEvent& e) {
          static const char* kinds[] = {"join", "leave", "failed", "update", "reap"};
          log->info("member {} name={} addr={}", kinds[static_cast<int>(e.type)], e.member.name,
                    e.member.addr.toString());
        },
        [this](const gossip::serf::UserEventDelivery& e) {
          recentEvents.push_back({e, loop.wallNow()});
          if (recentEvents.size() > kRecentEvents) recentEvents.pop_front();
          log->info("user event name={} ltime={} bytes={}", e.name, e.ltime, e.payload.size());
        });
    if (!s) return Error(s.error().code, "gossip: " + s.error().message());
    serf = std::move(*s);
    members = &serf->memberlist();
    if (!config.join.empty()) tryJoin();
    return {};
  }

  void tryJoin() {
    if (stopping.load() || joined || !members) return;
    std::string errors;
    auto seeds = resolve(config.join, errors);
    if (seeds.empty()) return retryJoin(errors);
    serf->join(seeds, /*ignoreOldEvents=*/false, [this](int contacted, Result<void> r) {
      if (r) {
        joined = true;
        log->info("joined cluster contacted={} members={}", contacted, members ? members->numLive() : 0);
        return;
      }
      retryJoin(r.error().message());
    });
  }

  void retryJoin(const std::string& why) {
    log->warn("join failed: {}; retrying in {}s", why,
              std::chrono::duration_cast<std::chrono::seconds>(joinRetry).count());
    loop.runAfter(joinRetry, [this] { tryJoin(); });
    joinRetry = std::min<Duration>(joinRetry * 2, kJoinRetryMax);
  }

  void beginStop() {
    log->info("stopping node={}", config.nodeName);
    if (!serf) return stopNow();
    serf->leave([this](Result<void> r) {
      if (!r) log->warn("graceful leave incomplete: {}", r.error().message());
      stopNow();
    });
  }

  void stopNow() {
    if (members) members->shutdown();
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

Agent::Agent(NodeConfig config, HostPort advertise, DataDir dataDir, std::shared_ptr<gossip::Keyring> keyring,
             metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(advertise), std::move(dataDir), std::move(keyring),
                                   registry)) {}

Agent::~Agent() = default;

Result<void> Agent::start() {
  Impl& m = *impl_;
  m.registerMetrics();
  m.registerRoutes();
  auto bound = m.admin.listen(m.config.admin);
  if (!bound) return bound.error();
  m.adminBound = *bound;
  if (auto g = m.startGossip(); !g) {
    m.admin.stop();
    return g.error();
  }
  m.work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(m.io.get_executor());
  m.log->info("started node={} cluster={} role={} admin={} gossip_advertise={} data_dir={} encrypted={} version={}",
              m.config.nodeName, m.config.cluster, roleName(m.config.role), m.adminBound.toString(),
              m.advertise.toString(), m.dataDir.path(), m.keyring && !m.keyring->empty(), version::string());
  return {};
}

void Agent::run() {
  impl_->io.run();
  impl_->log->info("stopped node={}", impl_->config.nodeName);
  impl_->log->flush();
}

void Agent::requestStop() {
  if (impl_->stopping.exchange(true)) return;
  asio::post(impl_->io, [this] { impl_->beginStop(); });
}

const HostPort& Agent::adminAddress() const { return impl_->adminBound; }

}  // namespace mesh::node
