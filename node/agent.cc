#include "node/agent.h"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "common/asio.h"
#include "common/asio_event_loop.h"
#include "common/duration.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/process.h"
#include "common/subprocess.h"
#include "common/version.h"
#include "gossip/asio_transport.h"
#include "gossip/memberlist.h"
#include "gossip/serf/serf.h"

#include <deque>
#include <random>
#include "node/admin/server.h"
#include "node/keyring_file.h"
#include "node/catalog/catalog.h"
#include "node/health/prober.h"
#include "node/local_services.h"
#include "node/identity/identity.h"
#include "node/identity/tls.h"
#include "node/proxy_service.h"
#include "node/policy/signing.h"
#include "node/policy_service.h"
#include "gossip/dissem/dissemination.h"
#include "store/serf_records.h"
#include "store/store.h"

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
// serf agent's coalescing of user events sent with coalesce set.
constexpr auto kUserCoalescePeriod = std::chrono::seconds(3);
constexpr auto kUserQuiescentPeriod = std::chrono::seconds(1);
// A query answer carries the handler's output: what fits in serf's 1024-byte response once
// the response's own fields (ids, our name) are added.
constexpr std::size_t kResponseOverhead = 200;
// The longest a query asked through the admin API may run.
constexpr auto kMaxQueryTimeout = std::chrono::minutes(5);

double msSince(TimePoint start, TimePoint now) {
  return std::chrono::duration<double, std::milli>(now - start).count();
}

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
  static admin::ServerOptions adminOptions() {
    admin::ServerOptions o;
    // A signed policy document may be up to 1 MiB, and base64 in a signed file.
    o.maxBodyBytes = 2 * 1024 * 1024;
    return o;
  }

  Impl(NodeConfig cfg, HostPort adv, DataDir dir, std::shared_ptr<gossip::Keyring> ring, metrics::Registry& reg)
      : config(std::move(cfg)),
        advertise(std::move(adv)),
        dataDir(std::move(dir)),
        keyring(std::move(ring)),
        registry(reg),
        queryHandlerRuns(reg.counter("mesh_node_query_handler_runs_total", "Query handler commands started.")),
        loop(io),
        admin(io, reg, adminOptions()),
        stopTimer(io),
        log(log::get("node")),
        startedMono(loop.now()),
        startedWall(loop.wallNow()) {}

  NodeConfig config;
  HostPort advertise;
  DataDir dataDir;
  std::shared_ptr<gossip::Keyring> keyring;
  metrics::Registry& registry;
  metrics::Counter& queryHandlerRuns;
  asio::io_context io{1};
  AsioEventLoop loop;
  admin::Server admin;
  asio::steady_timer stopTimer;
  std::shared_ptr<spdlog::logger> log;
  TimePoint startedMono;
  WallTime startedWall;
  HostPort adminBound;
  std::unique_ptr<store::Store> store;
  // Members known before a restart (from the store): join seeds when --join names none.
  std::vector<gossip::NodeAddress> rememberedPeers;
  std::unique_ptr<health::AsioProber> prober;
  std::unique_ptr<LocalServices> localServices;
  catalog::Catalog catalog;
  // The catalog's side of dissemination (kind 1), and the network it runs on (memberlist: serf
  // extension packets and memberlist streams, only between nodes with the `mesh` tag).
  struct CatalogRecords : dissem::Records {
    Impl* a;
    explicit CatalogRecords(Impl* i) : a(i) {}
    std::map<std::string, std::uint64_t> versions() override { return a->catalog.versions(); }
    std::uint64_t version(const std::string& key) override {
      const auto* e = a->catalog.find(key);
      return e ? e->services.version : 0;
    }
    std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) override {
      const auto* e = a->catalog.find(key);
      if (!e) return std::nullopt;
      return std::pair{e->services.version, catalog::encode(e->services)};
    }
    bool offer(const std::string& key, std::uint64_t version, std::string_view body) override {
      return a->offerCatalogRecord(key, version, body);
    }
    void confirmed(const std::string& key, std::uint64_t version) override { a->catalog.confirm(key, version); }
    void confirmedAll() override { a->catalog.confirmAll(); }
  };
  struct MeshNetwork : dissem::Network {
    Impl* a;
    explicit MeshNetwork(Impl* i) : a(i) {}
    std::size_t peerCount() override { return a->meshPeers.size(); }
    std::vector<std::string> randomPeers(std::size_t k) override {
      std::vector<std::string> out;
      std::sample(a->meshPeers.begin(), a->meshPeers.end(), std::back_inserter(out), k, a->peerRng);
      return out;
    }
    void send(const std::string& peer, std::string packet) override {
      if (a->members) (void)a->members->sendBestEffort(peer, packet);
    }
    void request(const std::string& peer, std::string body, Duration timeout,
                 std::function<void(Result<std::string>)> done) override {
      if (auto m = a->serf->member(peer)) return a->members->request(m->addr, std::move(body), timeout, std::move(done));
      done(Error(errc::not_found, "no member " + peer));
    }
  };
  std::mt19937_64 peerRng{std::random_device{}()};
  CatalogRecords catalogRecords{this};
  MeshNetwork meshNetwork{this};
  std::unique_ptr<dissem::Dissemination> dissemination;
  std::unique_ptr<PolicyService> policyService;  // signed policy (issue 6)
  std::optional<identity::NodeIdentity> identity;  // --tls-dir (issue 7)
  std::unique_ptr<ProxyService> proxyService;       // the data plane, when there is an identity
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
        {"serf",
         {{"clock", serf ? serf->clock() : 0},
          {"event_clock", serf ? serf->eventClock() : 0},
          {"query_clock", serf ? serf->queryClock() : 0},
          {"remembered_peers", rememberedPeers.size()}}},
        {"identity", identityJson()},
    };
  }

  // The node's mTLS identity (--tls-dir), checked again here for what /v1/self shows.
  nlohmann::json identityJson() const {
    if (!identity) return nullptr;
    return {{"spiffe_id", identity->spiffeId},
            {"trust_domain", identity->trustDomain},
            {"not_after", isoTime(std::chrono::system_clock::time_point(std::chrono::seconds(identity->notAfter)))},
            {"tls_dir", config.tlsDir}};
  }

  std::map<std::string, std::string> tags() const {
    auto t = config.tags;
    t["role"] = roleName(config.role);
    t["cluster"] = config.cluster;
    t["zone"] = config.zone;
    t["version"] = version::string();
    // Marks meshd nodes in a mixed pool: only they get the mesh's own gossip (kDigestPacketType)
    // and streams; serf and memberlist nodes never see them.
    t["mesh"] = "1";
    // Where peers' proxies reach ours (mTLS); a node without one gets no traffic through it.
    if (proxyService) t[proxy::kInboundTag] = proxyService->advertisedInbound();
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
                     {"received_at", isoTime(r.at)},
                     {"received_unix_ms", std::chrono::duration<double, std::milli>(r.at.time_since_epoch()).count()}});
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
    // PUT /v1/tags {"set": {k: v}, "delete": [k]}: changes this node's extra tags at run time and
    // re-announces them (serf tags -set / -delete). Kept until restart; the config wins then.
    admin.route("PUT", "/v1/tags", [this](const http::Request& req) { return changeTags(req); });
    // POST /v1/query {"name", "payload", "nodes": [...], "tags": {tag: regexp}, "ack", "relay_factor",
    // "timeout": "5s"}: answered when the query ends, with every ack and answer that came back.
    admin.routeAsync("POST", "/v1/query", [this](const http::Request& req, admin::Reply reply) {
      startQuery(req, std::move(reply));
    });
    // GET /v1/keys: every member's keys (serf's list-keys); POST /v1/keys/{install,use,remove}
    // {"key": BASE64}: the operation on every member. Each answer says who succeeded and who failed.
    admin.routeAsync("GET", "/v1/keys", [this](const http::Request& req, admin::Reply reply) {
      keyOperation(gossip::serf::KeyOp::list, req, std::move(reply));
    });
    for (auto [path, op] : {std::pair{"/v1/keys/install", gossip::serf::KeyOp::install},
                            std::pair{"/v1/keys/use", gossip::serf::KeyOp::use},
                            std::pair{"/v1/keys/remove", gossip::serf::KeyOp::remove}}) {
      admin.routeAsync("POST", path, [this, op](const http::Request& req, admin::Reply reply) {
        keyOperation(op, req, std::move(reply));
      });
    }
  }

  http::Response changeTags(const http::Request& req) {
    if (!serf) return admin::errorResponse(503, "gossip is not running");
    auto body = nlohmann::json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return admin::errorResponse(400, "the body must be a JSON object");
    auto extra = config.tags;
    auto managed = [](const std::string& k) { return k == "role" || k == "cluster" || k == "zone" || k == "version"; };
    if (auto it = body.find("delete"); it != body.end()) {
      if (!it->is_array()) return admin::errorResponse(400, "\"delete\" must be a list of tag names");
      for (const auto& k : *it) {
        if (!k.is_string()) return admin::errorResponse(400, "\"delete\" must be a list of tag names");
        if (managed(k.get<std::string>())) return admin::errorResponse(400, "tag '" + k.get<std::string>() + "' is set by meshd itself");
        extra.erase(k.get<std::string>());
      }
    }
    if (auto it = body.find("set"); it != body.end()) {
      if (!it->is_object()) return admin::errorResponse(400, "\"set\" must map tag names to values");
      for (const auto& [k, v] : it->items()) {
        if (!v.is_string()) return admin::errorResponse(400, "tag " + k + " must be a string");
        if (k.empty()) return admin::errorResponse(400, "a tag name must not be empty");
        if (managed(k)) return admin::errorResponse(400, "tag '" + k + "' is set by meshd itself");
        extra[k] = v.get<std::string>();
      }
    }
    const auto previous = std::move(config.tags);
    config.tags = std::move(extra);
    if (auto r = serf->setTags(tags()); !r) {
      config.tags = previous;
      const int status = r.error().code == gossip::errc::too_large ? 413 : 400;
      return admin::errorResponse(status, r.error().message());
    }
    log->info("tags changed; re-announced");
    return http::Response::json(200, nlohmann::json{{"tags", tags()}}.dump(2) + "\n");
  }

  void startQuery(const http::Request& req, admin::Reply reply) {
    if (!serf) return reply(admin::errorResponse(503, "gossip is not running"));
    auto body = nlohmann::json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return reply(admin::errorResponse(400, "the body must be a JSON object"));
    auto str = [&](const char* k) -> std::optional<std::string> {
      auto it = body.find(k);
      if (it == body.end() || !it->is_string()) return std::nullopt;
      return it->get<std::string>();
    };
    const auto name = str("name");
    if (!name || name->empty()) return reply(admin::errorResponse(400, "missing \"name\" of the query"));
    gossip::serf::QueryParams params;
    if (auto it = body.find("nodes"); it != body.end()) {
      if (!it->is_array()) return reply(admin::errorResponse(400, "\"nodes\" must be a list of node names"));
      for (const auto& n : *it) {
        if (!n.is_string()) return reply(admin::errorResponse(400, "\"nodes\" must be a list of node names"));
        params.filterNodes.push_back(n.get<std::string>());
      }
    }
    if (auto it = body.find("tags"); it != body.end()) {
      if (!it->is_object()) return reply(admin::errorResponse(400, "\"tags\" must map tag names to regular expressions"));
      for (const auto& [k, v] : it->items()) {
        if (!v.is_string()) return reply(admin::errorResponse(400, "tag filter " + k + " must be a string"));
        params.filterTags[k] = v.get<std::string>();
      }
    }
    if (auto it = body.find("ack"); it != body.end()) {
      if (!it->is_boolean()) return reply(admin::errorResponse(400, "\"ack\" must be true or false"));
      params.requestAck = it->get<bool>();
    }
    if (auto it = body.find("relay_factor"); it != body.end()) {
      if (!it->is_number_integer() || it->get<long>() < 0 || it->get<long>() > 255) {
        return reply(admin::errorResponse(400, "\"relay_factor\" must be 0 to 255"));
      }
      params.relayFactor = static_cast<std::uint8_t>(it->get<long>());
    }
    if (auto t = str("timeout")) {
      auto d = parseDuration(*t);
      if (!d || *d <= Duration::zero() || *d > kMaxQueryTimeout) {
        return reply(admin::errorResponse(400, "\"timeout\" must be a duration above 0 and at most 5m"));
      }
      params.timeout = *d;
    }
    struct Collected {
      nlohmann::json acks = nlohmann::json::array();
      nlohmann::json responses = nlohmann::json::array();
      nlohmann::json started;
      TimePoint start;
    };
    auto c = std::make_shared<Collected>();
    c->start = loop.now();
    gossip::serf::QueryCallbacks cb;
    cb.onAck = [this, c](const std::string& from) {
      c->acks.push_back({{"from", from}, {"after_ms", msSince(c->start, loop.now())}});
    };
    cb.onResponse = [this, c](const std::string& from, const std::string& payload) {
      std::string text;
      appendJsonEscapedBytes(text, payload);
      c->responses.push_back({{"from", from},
                              {"payload", text},
                              {"payload_base64", gossip::base64Encode(payload)},
                              {"after_ms", msSince(c->start, loop.now())}});
    };
    cb.onDone = [this, c, reply] {
      nlohmann::json out = c->started;
      out["acks"] = c->acks;
      out["responses"] = c->responses;
      out["duration_ms"] = msSince(c->start, loop.now());
      reply(http::Response::json(200, out.dump(2) + "\n"));
    };
    // Filled before any answer can arrive: the local answer comes inside query() itself.
    c->started = {{"name", *name}, {"ack", params.requestAck}};
    auto started = serf->query(*name, str("payload").value_or(""), params, std::move(cb));
    if (!started) {
      const int status = started.error().code == gossip::errc::too_large ? 413 : 400;
      return reply(admin::errorResponse(status, started.error().message()));
    }
    c->started["ltime"] = started->ltime;
    c->started["id"] = started->id;
    c->started["timeout"] = formatDuration(started->timeout);
    c->started["expected"] = started->expected;
  }

  void keyOperation(gossip::serf::KeyOp op, const http::Request& req, admin::Reply reply) {
    if (!serf) return reply(admin::errorResponse(503, "gossip is not running"));
    std::string key;
    std::uint8_t relay = 0;
    if (op != gossip::serf::KeyOp::list || !req.body.empty()) {
      auto body = nlohmann::json::parse(req.body.empty() ? std::string("{}") : req.body, nullptr, false);
      if (body.is_discarded() || !body.is_object()) return reply(admin::errorResponse(400, "the body must be a JSON object"));
      if (op != gossip::serf::KeyOp::list) {
        auto it = body.find("key");
        if (it == body.end() || !it->is_string() || it->get<std::string>().empty()) {
          return reply(admin::errorResponse(400, "missing \"key\" (base64)"));
        }
        key = it->get<std::string>();
      }
      if (auto it = body.find("relay_factor"); it != body.end()) {
        if (!it->is_number_integer() || it->get<long>() < 0 || it->get<long>() > 255) {
          return reply(admin::errorResponse(400, "\"relay_factor\" must be 0 to 255"));
        }
        relay = static_cast<std::uint8_t>(it->get<long>());
      }
    }
    log->info("key operation {} initiated", gossip::serf::keyOpName(op));
    serf->keyOperation(op, key, relay, [reply, op](Result<gossip::serf::KeyOpResult> r) {
      if (!r) return reply(admin::errorResponse(400, r.error().message()));
      nlohmann::json out = {{"operation", gossip::serf::keyOpName(op)},
                            {"num_nodes", r->numNodes},
                            {"num_responses", r->numResp},
                            {"num_errors", r->numErr},
                            {"messages", r->messages},
                            {"error", r->error}};
      if (op == gossip::serf::KeyOp::list) {
        out["keys"] = r->keys;
        out["primary_keys"] = r->primaryKeys;
      }
      reply(http::Response::json(200, out.dump(2) + "\n"));
    });
  }

  // serf agent's query handlers: the command's output answers the query.
  void handleQuery(const gossip::serf::IncomingQuery& q) {
    if (policyService && policyService->handleQuery(q)) return;
    auto it = config.queryHandlers.find(q.name);
    if (it == config.queryHandlers.end()) it = config.queryHandlers.find("*");
    if (it == config.queryHandlers.end()) return;  // acked (when asked), not answered
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(q.deadline - loop.now());
    if (left <= std::chrono::milliseconds::zero()) return;
    subprocess::Options o;
    o.command = it->second;
    o.input = q.payload;
    o.timeout = left;
    o.maxOutput = gossip::serf::SerfConfig{}.queryResponseSizeLimit - kResponseOverhead;
    // The variables serf agent sets for its handlers (so serf handler scripts work), and ours.
    const auto ltime = std::to_string(q.ltime);
    o.env = {{"SERF_EVENT", "query"},  {"SERF_QUERY_NAME", q.name}, {"SERF_QUERY_LTIME", ltime},
             {"SERF_SELF_NAME", config.nodeName}, {"SERF_SELF_ROLE", roleName(config.role)},
             {"MESH_EVENT", "query"},  {"MESH_QUERY_NAME", q.name}, {"MESH_QUERY_LTIME", ltime},
             {"MESH_QUERY_SOURCE", q.sourceNode}, {"MESH_NODE_NAME", config.nodeName}};
    for (const auto& [k, v] : tags()) {
      std::string up;
      for (char ch : k) up.push_back(std::isalnum(static_cast<unsigned char>(ch)) ? static_cast<char>(std::toupper(ch)) : '_');
      o.env["SERF_TAG_" + up] = v;
    }
    queryHandlerRuns.inc();
    subprocess::run(io, std::move(o), [this, q](Result<subprocess::Outcome> r) {
      if (!r) {
        log->warn("query handler for {} could not start: {}", q.name, r.error().message());
        return;
      }
      if (r->timedOut) log->warn("query handler for {} killed at the query's deadline", q.name);
      if (r->truncated) log->warn("query handler output for {} truncated to {} bytes", q.name, r->output.size());
      if (r->exitCode != 0 && !r->timedOut) log->warn("query handler for {} exited with {}", q.name, r->exitCode);
      if (!serf || r->timedOut) return;
      if (auto sent = serf->respond(q, r->output); !sent) {
        log->warn("query {} answer not sent: {}", q.name, sent.error().message());
      }
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
    sc.userCoalescePeriod = kUserCoalescePeriod;
    sc.userQuiescentPeriod = kUserQuiescentPeriod;
    sc.onKeyringChange = [this](const gossip::Keyring& ring) { return persistKeyring(ring); };
    if (auto clocks = store::loadClocks(*store); !clocks) {
      log->warn("serf clocks in the store unreadable, starting from zero: {}", clocks.error().message());
    } else if (*clocks) {
      sc.restored = gossip::serf::SerfConfig::Restored{(*clocks)->clock, (*clocks)->eventClock, (*clocks)->queryClock};
      log->info("serf clocks restored clock={} event_clock={} query_clock={}", (*clocks)->clock,
                (*clocks)->eventClock, (*clocks)->queryClock);
    }
    sc.onClocksChanged = [this](gossip::serf::LamportTime c, gossip::serf::LamportTime e, gossip::serf::LamportTime q) {
      if (auto w = store::saveClocks(*store, {c, e, q}); !w) log->error("serf clocks not saved: {}", w.error().message());
    };
    loadRememberedPeers();
    auto s = gossip::serf::Serf::create(
        sc, gossipConfig(config, advertise, keyring), loop, *transport, registry,
        [this](const gossip::serf::MemberEvent& e) {
          static const char* kinds[] = {"join", "leave", "failed", "update", "reap"};
          log->info("member {} name={} addr={}", kinds[static_cast<int>(e.type)], e.member.name,
                    e.member.addr.toString());
          rememberMember(e);
          updateMeshPeers(e.member);
          catalogMemberEvent(e);
          if (proxyService) proxyService->membersChanged();  // after the catalog knows
        },
        [this](const gossip::serf::UserEventDelivery& e) {
          recentEvents.push_back({e, loop.wallNow()});
          if (recentEvents.size() > kRecentEvents) recentEvents.pop_front();
          log->info("user event name={} ltime={} bytes={}", e.name, e.ltime, e.payload.size());
        });
    if (!s) return Error(s.error().code, "gossip: " + s.error().message());
    serf = std::move(*s);
    serf->setQueryHandler([this](const gossip::serf::IncomingQuery& q) { handleQuery(q); });
    members = &serf->memberlist();
    if (!config.join.empty() || !rememberedPeers.empty()) tryJoin();
    return {};
  }

  // After a key-rotation query: the keyring file (when there is one) holds the new keys, so a
  // restarted node still has them.
  Result<void> persistKeyring(const gossip::Keyring& ring) {
    if (!config.keyringFile.empty()) {
      if (auto w = writeKeyringFile(config.keyringFile, ring); !w) return w;
    }
    if (store) {
      if (auto w = store::saveKeyring(*store, ring.keys()); !w) return w;
    }
    return {};
  }

  // The store opens before anything else starts: a node that cannot keep its state does not
  // join a cluster.
  Result<void> openStore() {
    auto s = store::Store::open(dataDir.path() + "/store", registry);
    if (!s) return s.error();
    store = std::move(*s);
    // The keyring: a keyring file wins (kept up to date on every rotation); without one, the
    // keyring kept in the store wins over --encrypt, so that rotated keys survive a restart.
    if (config.keyringFile.empty()) {
      auto kept = store::loadKeyring(*store);
      if (!kept) {
        log->warn("keyring in the store unreadable, using the configured one: {}", kept.error().message());
      } else if (*kept && !(*kept)->empty()) {
        auto ring = gossip::Keyring::create(**kept);
        if (!ring) {
          log->warn("keyring in the store refused ({}), using the configured one", ring.error().message());
        } else {
          if (keyring && !keyring->empty() && keyring->keys() != ring->keys()) {
            log->warn("using the gossip keyring kept in the store (rotated by meshcli keys); --encrypt is ignored");
          } else if (!keyring || keyring->empty()) {
            log->info("gossip encryption on: keyring kept in the store");
          }
          if (!keyring) keyring = std::make_shared<gossip::Keyring>();
          *keyring = std::move(*ring);
        }
      }
    }
    if (keyring && !keyring->empty()) {
      if (auto w = store::saveKeyring(*store, keyring->keys()); !w) return w.error();
    }
    return {};
  }

  void loadRememberedPeers() {
    int skipped = 0;
    auto known = store::loadMembers(*store, &skipped);
    if (!known) {
      log->warn("members in the store unreadable: {}", known.error().message());
      return;
    }
    for (const auto& m : *known) {
      if (m.name == config.nodeName) continue;
      // Members that were alive (or had failed: they may be back) when we last saw them.
      if (m.status != store::KnownMember::Status::alive && m.status != store::KnownMember::Status::failed) continue;
      if (auto a = gossip::NodeAddress::fromBytes(m.addr, m.port)) rememberedPeers.push_back(*a);
    }
    if (!rememberedPeers.empty()) log->info("remembered peers from the store count={}", rememberedPeers.size());
  }

  void rememberMember(const gossip::serf::MemberEvent& e) {
    if (!store || e.member.name == config.nodeName) return;
    Result<void> w;
    if (e.type == gossip::serf::MemberEvent::Type::reap) {
      w = store::removeMember(*store, e.member.name);
    } else {
      store::KnownMember k{e.member.name, e.member.addr.ip, e.member.addr.port,
                           static_cast<store::KnownMember::Status>(e.member.status), e.member.tags};
      w = store::saveMember(*store, k);
    }
    if (!w) log->error("member {} not saved: {}", e.member.name, w.error().message());
  }

  // ---- catalog (issue 5) ----------------------------------------------------------------------

  // The data plane: bound before gossip starts, so that our first announcement carries the
  // inbound address.
  Result<void> startProxy() {
    auto tls = identity::MeshTls::create(*identity);
    if (!tls) return Error(tls.error().code, "tls-dir: " + tls.error().message());
    proxy::ProxyOptions o;
    o.outbound = config.outbound;
    o.inbound = config.inbound;
    o.workers = config.workers;
    o.accessLog = config.accessLog;
    o.egressCaFile = config.egressCaFile;
    o.http2Upstream = config.peerHttp2;
    ProxyService::Deps d{loop, registry, config.nodeName, config.zone, advertise.host, o, *tls, catalog,
                         [this] {
                           std::map<std::string, proxy::MemberInfo> out;
                           if (!serf) return out;
                           for (const auto& m : serf->members()) {
                             if (m.name == config.nodeName) continue;
                             proxy::MemberInfo info;
                             info.alive = m.status == gossip::serf::MemberStatus::alive;
                             if (auto t = m.tags.find(proxy::kInboundTag); t != m.tags.end()) {
                               if (auto hp = parseHostPort(t->second)) info.inbound = *hp;
                             }
                             out.emplace(m.name, std::move(info));
                           }
                           return out;
                         },
                         [this]() -> policy::PolicyStore* { return policyService ? &policyService->policies() : nullptr; }};
    auto ps = ProxyService::start(std::move(d));
    if (!ps) return ps.error();
    proxyService = std::move(*ps);
    proxyService->attach(admin);
    return {};
  }

  // Signed policy: what the node held before is in force from here on, before any gossip.
  Result<void> startPolicy() {
    PolicyService::Deps d{loop, *store, registry, config.nodeName, {}, config.policyThreshold};
    for (const auto& path : config.policyTrustedKeys) {
      auto k = policy::readPublicKeyFile(path);
      if (!k) return Error(k.error().code, "policy-trusted-key " + k.error().message());
      d.trustedKeys.push_back(*k);
    }
    auto ps = PolicyService::create(std::move(d));
    if (!ps) return ps.error();
    policyService = std::move(*ps);
    policyService->attach(*dissemination, admin, serf.get());
    return {};
  }

  Result<void> startCatalog() {
    prober = std::make_unique<health::AsioProber>(io);
    LocalServices::Options o;
    o.nodeName = config.nodeName;
    o.defaults = {advertise.host, config.zone};
    o.servicesDir = config.servicesDir;
    dissem::Config dc;
    dc.self = config.nodeName;
    dc.gossipInterval = members->config().gossipInterval;
    dc.fanout = members->config().gossipNodes;
    dc.retransmitMult = members->config().retransmitMult;
    dissemination = std::make_unique<dissem::Dissemination>(dc, loop, meshNetwork, registry);
    dissemination->addKind(kCatalogKind, "catalog", catalogRecords);
    if (proxyService) proxyService->attach(*dissemination);
    if (auto p = startPolicy(); !p) return p;
    serf->setExtensionHandler([this](std::string_view msg) {
      if (static_cast<std::uint8_t>(msg[0]) == dissem::kDigestPacketType) dissemination->onPacket(msg);
    });
    members->setRequestHandler([this](std::string req, std::function<void(Result<std::string>)> reply) {
      dissemination->onRequest(std::move(req), std::move(reply));
    });
    loadLearnedRecords();
    auto ls = LocalServices::create(o, loop, *prober, *store, [this](const catalog::NodeServices& n) {
      catalog.apply(n, false, wallMs());
      if (proxyService) proxyService->changed();
      log->debug("own catalog version={} instances={}", n.version, n.instances.size());
      if (dissemination) dissemination->announce(kCatalogKind, n.owner, n.version);
    });
    if (!ls) return ls.error();
    localServices = std::move(*ls);
    // Served at once after a restart, marked stale until this run's first version replaces it.
    if (const auto& prev = localServices->previous()) catalog.apply(*prev, /*stale=*/true);
    localServices->start();
    dissemination->start();
    scheduleCatalogSweep();
    registry.gaugeFn("mesh_catalog_own_version", "Version of this node's own catalog record.", {},
                     [this] { return static_cast<double>(localServices ? localServices->version() : 0); });
    registry.gaugeFn("mesh_catalog_owners", "Nodes whose services this node holds.", {},
                     [this] { return static_cast<double>(catalog.entries().size()); });
    for (auto h : {catalog::Health::passing, catalog::Health::warning, catalog::Health::critical}) {
      registry.gaugeFn("mesh_catalog_instances", "Service instances this node holds, by health.",
                       {{"health", catalog::healthName(h)}}, [this, h] {
                         double n = 0;
                         for (const auto& [owner, e] : catalog.entries()) {
                           for (const auto& in : e.services.instances) n += in.health == h;
                         }
                         return n;
                       });
    }
    return {};
  }

  static constexpr std::uint8_t kCatalogKind = 1;

  std::int64_t wallMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(loop.wallNow().time_since_epoch()).count();
  }

  // Alive members with the `mesh` tag, not us: who gets the mesh's gossip. Kept up to date by
  // member events (not rebuilt for every digest: dissemination asks on every round and pull).
  // A member that announced its leave stays in it until its leave is final, about a second.
  std::vector<std::string> meshPeers;

  void updateMeshPeers(const gossip::serf::Member& m) {
    std::erase(meshPeers, m.name);
    if (m.name != config.nodeName && m.status == gossip::serf::MemberStatus::alive && m.tags.contains("mesh")) {
      meshPeers.push_back(m.name);
    }
  }

  // A record pulled from a peer: taken if it decodes, is the owner's, is newer than ours, and
  // its owner is a member that has not left.
  bool offerCatalogRecord(const std::string& owner, std::uint64_t version, std::string_view body) {
    auto rec = catalog::decodeNodeServices(body);
    if (!rec || rec->owner != owner || rec->version != version) {
      log->warn("catalog record of {} refused: {}", owner, rec ? "owner or version does not match the digest" : rec.error().message());
      return false;
    }
    if (owner == config.nodeName) {
      // Nobody writes ours but us: a higher one means our store went back in time.
      if (localServices) localServices->ensureAbove(version);
      return false;
    }
    std::optional<gossip::serf::MemberStatus> status;
    if (auto m = serf->member(owner)) status = m->status;
    if (!status || *status == gossip::serf::MemberStatus::left || *status == gossip::serf::MemberStatus::leaving) {
      return false;  // left (or not known yet: anti-entropy brings it once its join is known)
    }
    if (!catalog.apply(std::move(*rec), false, wallMs())) return false;
    catalog.setAvailable(owner, *status != gossip::serf::MemberStatus::failed);
    if (proxyService) proxyService->changed();
    if (auto w = store->put(store::Family::catalog, "node/" + owner, body); !w) {
      log->error("catalog record of {} not stored: {}", owner, w.error().message());
    }
    return true;
  }

  // What we knew of other nodes before a restart: served at once, marked stale until refreshed.
  void loadLearnedRecords() {
    int n = 0;
    auto r = store->scan(store::Family::catalog, "node/", [&](std::string_view key, std::string_view value) {
      auto rec = catalog::decodeNodeServices(value);
      if (!rec) {
        log->warn("catalog record {} in the store unreadable: {}", key, rec.error().message());
      } else if (rec->owner != config.nodeName) {
        catalog.apply(std::move(*rec), /*stale=*/true);
        ++n;
      }
      return true;
    });
    if (!r) log->warn("catalog records in the store unreadable: {}", r.error().message());
    if (n > 0) log->info("catalog restored from the store owners={} (stale until refreshed)", n);
  }

  // Owners that left while we were down (or were reaped) send no event: every 30 s, entries of
  // owners serf does not list, or lists as left, go (after a minute of uptime, so that a
  // restarted node first hears who is still there).
  void scheduleCatalogSweep() {
    loop.runAfter(std::chrono::seconds(30), [this] {
      if (stopping.load()) return;
      if (uptimeSeconds() > 60) {
        std::map<std::string, gossip::serf::MemberStatus> status;
        for (const auto& m : serf->members()) status[m.name] = m.status;
        std::vector<std::string> gone;
        for (const auto& [owner, e] : catalog.entries()) {
          if (owner == config.nodeName) continue;
          auto it = status.find(owner);
          if (it == status.end() || it->second == gossip::serf::MemberStatus::left) gone.push_back(owner);
        }
        for (const auto& owner : gone) {
          catalog.remove(owner);
          (void)store->erase(store::Family::catalog, "node/" + owner);
          log->info("catalog entry of {} removed: no longer a member", owner);
        }
      }
      scheduleCatalogSweep();
    });
  }

  void catalogMemberEvent(const gossip::serf::MemberEvent& e) {
    using T = gossip::serf::MemberEvent::Type;
    if (e.member.name == config.nodeName) return;
    switch (e.type) {
      case T::join: catalog.setAvailable(e.member.name, true); break;
      case T::failed: catalog.setAvailable(e.member.name, false); break;  // at once: no traffic to a dead node
      case T::leave:
      case T::reap:
        if (catalog.remove(e.member.name)) {
          if (auto w = store->erase(store::Family::catalog, "node/" + e.member.name); !w) {
            log->error("catalog record of {} not removed from the store: {}", e.member.name, w.error().message());
          }
        }
        break;
      case T::update: break;
    }
  }

  nlohmann::json instanceJson(const std::string& owner, const catalog::Catalog::Entry& e, const catalog::Instance& in) const {
    return {{"node", owner},
            {"id", in.id},
            {"service", in.name},
            {"address", in.address},
            {"port", in.port},
            {"protocol", catalog::protocolName(in.protocol)},
            {"tags", in.tags},
            {"labels", in.labels},
            {"zone", in.zone},
            {"weight", in.weight},
            {"health", catalog::healthName(in.health)},
            {"maintenance", in.maintenance},
            {"note", in.note},
            {"node_available", e.available},
            {"stale", e.stale},
            {"version", e.services.version},
            {"learned_unix_ms", e.learnedUnixMs}};
  }

  nlohmann::json catalogServicesJson(const std::string* only) const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [owner, e] : catalog.entries()) {
      for (const auto& in : e.services.instances) {
        if (only && in.name != *only) continue;
        out[in.name].push_back(instanceJson(owner, e, in));
      }
    }
    return out;
  }

  nlohmann::json agentServicesJson() const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : localServices->services()) {
      nlohmann::json checks = nlohmann::json::array();
      for (const auto& c : s.checks) {
        checks.push_back({{"id", c.id},
                          {"health", catalog::healthName(c.health)},
                          {"output", c.output},
                          {"runs", c.runs},
                          {"consecutive_failures", c.consecutiveFailures},
                          {"consecutive_successes", c.consecutiveSuccesses}});
      }
      auto j = instanceJson(config.nodeName, catalog::Catalog::Entry{localServices->current(), true, false}, s.instance);
      j["source"] = s.source;
      j["checks"] = checks;
      list.push_back(std::move(j));
    }
    return {{"node", config.nodeName},
            {"version", localServices->version()},
            {"services", list},
            {"errors", localServices->errors()}};
  }

  static int statusFor(const Error& e) {
    if (e.code == errc::not_found) return 404;
    if (e.code == errc::already_exists) return 409;
    return 400;
  }

  void registerCatalogRoutes() {
    admin.route("GET", "/v1/agent/services", [this](const http::Request&) {
      return http::Response::json(200, agentServicesJson().dump(2) + "\n");
    });
    // PUT /v1/agent/services/{id} (JSON body), DELETE /v1/agent/services/{id},
    // PUT /v1/agent/services/{id}/maintenance?enable=true|false&reason=...
    admin.routePrefix("PUT", "/v1/agent/services/", [this](const http::Request& req) {
      std::string rest(req.path().substr(std::string_view("/v1/agent/services/").size()));
      if (rest.ends_with("/maintenance")) {
        const std::string id = rest.substr(0, rest.size() - std::string_view("/maintenance").size());
        const std::string enable = req.queryParam("enable").value_or("true");
        if (enable != "true" && enable != "false") return admin::errorResponse(400, "enable must be true or false");
        auto r = localServices->setMaintenance(id, enable == "true", req.queryParam("reason").value_or(""));
        if (!r) return admin::errorResponse(statusFor(r.error()), r.error().message());
        return http::Response::json(200, nlohmann::json{{"id", id}, {"maintenance", enable == "true"}}.dump() + "\n");
      }
      if (rest.empty() || rest.find('/') != std::string::npos) return admin::errorResponse(404, "no such endpoint: " + std::string(req.path()));
      auto r = localServices->put(rest, req.body);
      if (!r) return admin::errorResponse(statusFor(r.error()), r.error().message());
      return http::Response::json(200, nlohmann::json{{"id", rest}, {"version_pending", localServices->version() + 1}}.dump() + "\n");
    });
    admin.routePrefix("DELETE", "/v1/agent/services/", [this](const http::Request& req) {
      std::string id(req.path().substr(std::string_view("/v1/agent/services/").size()));
      auto r = localServices->remove(id);
      if (!r) return admin::errorResponse(statusFor(r.error()), r.error().message());
      return http::Response::json(200, nlohmann::json{{"id", id}, {"removed", true}}.dump() + "\n");
    });
    // PUT /v1/agent/checks/{id}?status=passing|warning|critical, the body is the output: TTL checks.
    admin.routePrefix("PUT", "/v1/agent/checks/", [this](const http::Request& req) {
      std::string id(req.path().substr(std::string_view("/v1/agent/checks/").size()));
      const std::string st = req.queryParam("status").value_or("passing");
      catalog::Health h;
      if (st == "passing") h = catalog::Health::passing;
      else if (st == "warning") h = catalog::Health::warning;
      else if (st == "critical") h = catalog::Health::critical;
      else return admin::errorResponse(400, "status must be passing, warning or critical");
      auto r = localServices->updateTtl(id, h, req.body);
      if (!r) return admin::errorResponse(statusFor(r.error()), r.error().message());
      return http::Response::json(200, nlohmann::json{{"id", id}, {"health", st}}.dump() + "\n");
    });
    admin.route("GET", "/v1/catalog/services", [this](const http::Request&) {
      return http::Response::json(200, catalogServicesJson(nullptr).dump(2) + "\n");
    });
    admin.routePrefix("GET", "/v1/catalog/service/", [this](const http::Request& req) {
      const std::string name(req.path().substr(std::string_view("/v1/catalog/service/").size()));
      auto all = catalogServicesJson(&name);
      if (!all.contains(name)) return admin::errorResponse(404, "no service named '" + name + "' in the catalog");
      return http::Response::json(200, all[name].dump(2) + "\n");
    });
  }

  void tryJoin() {
    if (stopping.load() || joined || !members) return;
    std::string errors;
    auto seeds = resolve(config.join, errors);
    for (const auto& p : rememberedPeers) {
      if (std::find(seeds.begin(), seeds.end(), p) == seeds.end()) seeds.push_back(p);
    }
    if (seeds.empty()) return retryJoin(errors.empty() ? std::string("no peer to join") : errors);
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
      // Peers have been told we leave; requests already here finish before the proxy stops.
      if (proxyService) return proxyService->drain(std::chrono::duration_cast<std::chrono::milliseconds>(config.drainTimeout),
                                                   [this] { stopNow(); });
      stopNow();
    });
  }

  void stopNow() {
    if (localServices) localServices->stop();
    if (dissemination) dissemination->stop();
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
  if (auto s = m.openStore(); !s) return s.error();
  m.registerMetrics();
  m.registerRoutes();
  m.registerCatalogRoutes();
  auto bound = m.admin.listen(m.config.admin);
  if (!bound) return bound.error();
  m.adminBound = *bound;
  if (!m.config.tlsDir.empty()) {
    const auto now = unixSeconds(m.loop.wallNow());
    auto id = identity::loadTlsDir(m.config.tlsDir, now);
    if (!id) {
      m.admin.stop();
      return Error(id.error().code, "tls-dir " + id.error().message());
    }
    m.identity = std::move(*id);
    m.registry.gauge("mesh_tls_cert_expiry_timestamp_seconds", "When this node's certificate expires (Unix seconds).")
        .set(static_cast<double>(m.identity->notAfter));
    if (auto p = m.startProxy(); !p) {
      m.admin.stop();
      return p.error();
    }
  }
  if (auto g = m.startGossip(); !g) {
    m.admin.stop();
    return g.error();
  }
  if (auto c = m.startCatalog(); !c) {
    m.admin.stop();
    return Error(c.error().code, "catalog: " + c.error().message());
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
