#include "node/proxy_service.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/metrics.h"
#include "node/admin/server.h"
#include "node/catalog/catalog.h"
#include "node/policy/policy_store.h"
#include "node/proxy/ratelimit_mesh.h"
#include "gossip/dissem/dissemination.h"

namespace mesh::node {

struct ProxyService::Impl {
  Deps d;
  std::unique_ptr<proxy::Proxy> proxy;
  std::shared_ptr<spdlog::logger> log = log::get("proxy");
  std::string inboundTag;
  std::uint64_t version = 0;
  // What the last compile saw.
  std::uint64_t catalogGeneration = ~0ull, policyVersion = ~0ull;
  bool membersDirty = true;  // a member joined, failed, left or changed tags since the last compile
  bool stopped = false;
  metrics::Counter* compiles = nullptr;
  std::shared_ptr<const proxy::Snapshot> last;  // what was published last (Routes carry over)

  explicit Impl(Deps deps) : d(std::move(deps)) {}

  // --- Mesh-wide rate limits (ratelimit_mesh.h).
  // Usage records held, ours included, by node: dissemination's records of kind kUsageKind.
  struct HeldUsage {
    proxy::UsageRecord record;
    std::string body;
    TimePoint received;
  };
  struct UsageRecords : dissem::Records {
    Impl* s;
    explicit UsageRecords(Impl* i) : s(i) {}
    std::map<std::string, std::uint64_t> versions() override {
      s->expireUsage();
      std::map<std::string, std::uint64_t> out;
      for (const auto& [node, h] : s->usage) out.emplace(node, h.record.version);
      return out;
    }
    std::optional<std::pair<std::uint64_t, std::string>> body(const std::string& key) override {
      auto it = s->usage.find(key);
      if (it == s->usage.end()) return std::nullopt;
      return std::pair{it->second.record.version, it->second.body};
    }
    bool offer(const std::string& key, std::uint64_t version, std::string_view body) override {
      auto r = proxy::decodeUsage(body);
      if (!r || r->node != key || r->version != version || key == s->d.nodeName) return false;
      auto it = s->usage.find(key);
      if (it != s->usage.end() && it->second.record.version >= version) return false;
      s->usage[key] = HeldUsage{std::move(*r), std::string(body), s->d.loop.now()};
      return true;
    }
  };
  // A record not renewed for this long is of a node gone (they are renewed every second).
  static constexpr std::chrono::seconds kUsageExpiry{30};
  // Only records this fresh count toward a share.
  static constexpr std::chrono::seconds kUsageFresh{5};
  std::map<std::string, HeldUsage> usage;
  UsageRecords usageRecords{this};
  dissem::Dissemination* dissemination = nullptr;
  std::uint64_t usageVersion = 0;
  TimePoint lastTick;
  std::map<std::string, std::pair<std::uint64_t, double>> seenBefore;  // rule id -> (seen, smoothed rate)

  void expireUsage() {
    const auto now = d.loop.now();
    std::erase_if(usage, [&](const auto& kv) { return kv.first != d.nodeName && now - kv.second.received > kUsageExpiry; });
  }

  // Every second: our demand per mesh rule we enforce, spread; every share applied.
  void usageTick() {
    const auto now = d.loop.now();
    const double dt = lastTick == TimePoint{} ? 1.0 : std::chrono::duration<double>(now - lastTick).count();
    lastTick = now;
    if (!last) return;
    proxy::UsageRecord own;
    own.node = d.nodeName;
    std::vector<std::pair<proxy::RateLimiter*, std::string>> enforced;
    std::map<std::string, std::pair<std::uint64_t, double>> seenNow;
    for (const auto& [key, table] : last->rateLimitDocuments) {
      // Enforced here: an instance of the service it guards runs on this node.
      bool here = false;
      for (const auto& [id, t] : last->local) here = here || table->service == "*" || t.service == table->service;
      if (!here) continue;
      for (std::size_t i = 0; i < table->rules.size(); ++i) {
        if (!table->rules[i].mesh) continue;
        auto id = proxy::meshRuleId(*table, table->rules[i]);
        const auto seen = table->limiters[i]->seen();
        double rate = 0;
        if (auto b = seenBefore.find(id); b != seenBefore.end() && dt > 0) {
          const double instant = static_cast<double>(seen - std::min(seen, b->second.first)) / dt;
          rate = 0.5 * instant + 0.5 * b->second.second;  // smoothed over about two seconds
        }
        seenNow[id] = {seen, rate};
        own.demand.emplace_back(id, rate);
        enforced.emplace_back(table->limiters[i].get(), id);
      }
    }
    seenBefore = std::move(seenNow);
    auto mine = usage.find(d.nodeName);
    // Nothing to share, and nothing shared before (or its end already told): quiet.
    if (own.demand.empty() && (mine == usage.end() || mine->second.record.demand.empty())) return;
    // Versions only grow, across restarts too: the wall clock's milliseconds, at least one more.
    const auto wall = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    usageVersion = std::max(usageVersion + 1, wall);
    own.version = usageVersion;
    auto body = proxy::encodeUsage(own);
    usage[d.nodeName] = HeldUsage{own, body, now};
    if (dissemination) dissemination->announce(ProxyService::kUsageKind, d.nodeName, own.version);
    // Shares, from the fresh records of the other nodes enforcing each rule.
    const auto steadyNow = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < enforced.size(); ++k) {
      const auto& id = enforced[k].second;
      std::vector<double> others;
      for (const auto& [node, h] : usage) {
        if (node == d.nodeName || now - h.received > kUsageFresh) continue;
        for (const auto& [rid, rate] : h.record.demand) {
          if (rid == id) others.push_back(rate);
        }
      }
      auto* limiter = enforced[k].first;
      const double share = proxy::meshShare(own.demand[k].second, others, limiter->rule().perSecond());
      if (std::abs(share - limiter->share()) > 1e-9) limiter->setShare(share, steadyNow);
    }
  }

  void usageLoop() {
    d.loop.runAfter(std::chrono::seconds(1), [this] {
      if (stopped) return;
      usageTick();
      usageLoop();
    });
  }

  void compile(bool force) {
    if (stopped || !proxy) return;
    auto* store = d.policies();
    std::shared_ptr<const policy::Snapshot> pol = store ? store->snapshot() : nullptr;
    const std::uint64_t pv = pol ? pol->version : 0;
    if (!force && !membersDirty && d.catalog.generation() == catalogGeneration && pv == policyVersion) return;
    catalogGeneration = d.catalog.generation();
    policyVersion = pv;
    membersDirty = false;
    const auto members = d.members();
    proxy::CompileInput in;
    in.version = ++version;
    in.nodeName = d.nodeName;
    in.zone = d.zone;
    in.catalog = &d.catalog;
    in.members = &members;
    if (auto own = parseHostPort(inboundTag)) in.ownInbound = *own;
    in.policy = pol.get();
    in.previous = last.get();
    last = proxy::compile(in);
    proxy->publish(last);
    compiles->inc();
  }

  TimePoint drainUntil;
  std::function<void()> drainDone;

  void drainCheck() {
    if (proxy->openConnections() > 0 && d.loop.now() < drainUntil) {
      d.loop.runAfter(std::chrono::milliseconds(20), [this] { drainCheck(); });
      return;
    }
    if (proxy->openConnections() > 0) log->warn("drain timed out; cutting {} connections", proxy->openConnections());
    proxy->stop();
    log->info("proxy stopped");
    if (auto cb = std::move(drainDone)) cb();
  }

  void poll() {
    d.loop.runAfter(kPoll, [this] {
      if (stopped) return;
      compile(false);
      poll();
    });
  }

  // A cluster's circuit breakers (limits, with what is in use now over every worker) and
  // outlier detection (which endpoints are ejected, and for how long yet).
  static void resilienceJson(const proxy::Cluster& c, nlohmann::json& out) {
    const auto& l = c.limits;
    const auto& st = *c.state;
    out["circuit_breakers"] = {
        {"max_connections", l.maxConnections},       {"connections", st.connections.load()},
        {"max_pending_requests", l.maxPendingRequests}, {"pending_requests", st.pending.load()},
        {"max_requests", l.maxRequests},             {"requests", st.requests.load()},
        {"max_retries", l.maxRetries},               {"retries", st.retries.load()},
        {"connect_timeout_ms", l.connectTimeout.count()},
        {"idle_timeout_ms", l.idleTimeout.count()},
        {"max_requests_per_connection", l.maxRequestsPerConnection}};
    if (!c.outlier.enabled()) return;
    const auto now = std::chrono::steady_clock::now();
    nlohmann::json ejected = nlohmann::json::object();
    for (const auto& e : c.endpoints) {
      if (!e.health || !e.health->ejected(now)) continue;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::duration(e.health->ejectedUntil.load()) - now.time_since_epoch());
      ejected[e.key] = {{"remaining_ms", left.count()}, {"times", e.health->ejections.load()}};
    }
    out["outlier_detection"] = {{"consecutive_5xx_errors", c.outlier.consecutive5xx},
                                {"consecutive_gateway_errors", c.outlier.consecutiveGateway},
                                {"interval_ms", c.outlier.interval.count()},
                                {"base_ejection_ms", c.outlier.baseEjection.count()},
                                {"max_ejection_percent", c.outlier.maxEjectionPercent},
                                {"success_rate_minimum_hosts", c.outlier.successRateMinimumHosts},
                                {"ejected", ejected}};
  }

  nlohmann::json snapshotJson() const {
    auto s = proxy ? proxy->snapshot() : nullptr;
    if (!s) return nullptr;
    nlohmann::json clusters = nlohmann::json::object();
    for (const auto& [name, c] : s->clusters) {
      nlohmann::json eps = nlohmann::json::array();
      for (const auto& e : c->endpoints) {
        eps.push_back({{"node", e.node},
                       {"instance", e.instanceId},
                       {"via", e.inbound.toString()},
                       {"zone", e.zone},
                       {"weight", e.weight},
                       {"labels", e.labels},
                       {"same_zone", e.zone == s->zone}});
      }
      clusters[name] = {{"protocol", catalog::protocolName(c->protocol)},
                        {"load_balancer", proxy::algorithmName(c->lb.algorithm)},
                        {"hash_header", c->lb.hashHeader},
                        {"hash_source", c->lb.hashSource},
                        {"same_zone_first", c->lb.sameZone},
                        {"endpoints", eps},
                        {"subsets", nlohmann::json::object()}};
      resilienceJson(*c, clusters[name]);
    }
    for (const auto& [key, c] : s->subsets) {
      auto it = clusters.find(c->service);
      if (it == clusters.end()) continue;
      nlohmann::json eps = nlohmann::json::array();
      for (const auto& e : c->endpoints) eps.push_back(e.node + "/" + e.instanceId);
      auto& sub = (*it)["subsets"][c->subset];
      sub = {{"load_balancer", proxy::algorithmName(c->lb.algorithm)}, {"endpoints", eps}};
      resilienceJson(*c, sub);
    }
    // Routes in force by host: which document and version decides (a Route whose references
    // broke shows the version still applied, not the one held).
    nlohmann::json routes = nlohmann::json::object();
    for (const auto& [host, t] : s->routes) {
      nlohmann::json rules = nlohmann::json::array();
      for (const auto& r : t->rules) rules.push_back(r.name);
      routes[host] = {{"document", t->document}, {"version", t->version}, {"rules", rules}};
    }
    // RateLimits in force, by the service they guard (enforced for this node's instances).
    nlohmann::json limits = nlohmann::json::object();
    for (const auto& [svc, t] : s->rateLimits) {
      nlohmann::json rules = nlohmann::json::array();
      for (std::size_t i = 0; i < t->rules.size(); ++i) {
        const auto& r = t->rules[i];
        rules.push_back({{"name", r.name},
                         {"key_by", proxy::keyByName(r.keyBy)},
                         {"per_second", r.perSecond()},
                         {"burst", r.burst ? r.burst : r.requestsPerUnit},
                         {"scope", r.mesh ? "mesh" : "local"},
                         {"share", t->limiters[i]->share()},
                         {"keys", t->limiters[i]->keys()}});
      }
      limits[svc] = {{"document", t->document}, {"version", t->version}, {"rules", rules}};
    }
    nlohmann::json externals = nlohmann::json::array();
    for (const auto& e : s->egress.externals) {
      nlohmann::json ports = nlohmann::json::array();
      for (const auto& p : e.ports) ports.push_back({{"number", p.number}, {"tls_origination", p.tlsOrigination}});
      externals.push_back({{"document", e.document}, {"hosts", e.hosts}, {"ports", ports}, {"addresses", e.addresses}});
    }
    nlohmann::json egress = {{"mode", s->egress.registryOnly ? "REGISTRY_ONLY" : "ALLOW_ANY"},
                             {"external_services", externals}};
    nlohmann::json local = nlohmann::json::object();
    for (const auto& [id, t] : s->local) {
      local[id] = {
          {"service", t.service}, {"address", t.address.toString()}, {"protocol", catalog::protocolName(t.protocol)}};
    }
    return {{"version", s->version},
            {"policy_version", s->policyVersion},
            {"zone", s->zone},
            {"outbound", proxy->outboundAddress().toString()},
            {"inbound", proxy->inboundAddress().toString()},
            {"inbound_advertised", inboundTag},
            {"open_connections", proxy->openConnections()},
            {"clusters", clusters},
            {"routes", routes},
            {"rate_limits", limits},
            {"egress", egress},
            {"local", local}};
  }
};

ProxyService::ProxyService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProxyService::~ProxyService() {
  impl_->stopped = true;
  if (impl_->proxy) impl_->proxy->stop();
}

Result<std::unique_ptr<ProxyService>> ProxyService::start(Deps deps) {
  auto impl = std::make_unique<Impl>(std::move(deps));
  auto& d = impl->d;
  auto p = proxy::Proxy::start(d.options, d.tls, nullptr, {}, d.registry);
  if (!p) return p.error();
  impl->proxy = std::move(*p);
  auto in = impl->proxy->inboundAddress();
  if (in.isUnspecified()) in.host = d.advertiseHost;
  impl->inboundTag = in.toString();
  impl->compiles = &d.registry.counter("mesh_proxy_snapshot_compiles_total",
                                       "Snapshots compiled and published to the proxy's workers.");
  impl->compile(true);
  impl->poll();
  impl->usageLoop();
  return std::unique_ptr<ProxyService>(new ProxyService(std::move(impl)));
}

std::string ProxyService::advertisedInbound() const { return impl_->inboundTag; }

void ProxyService::attach(admin::Server& admin) {
  admin.route("GET", "/v1/proxy",
              [this](const http::Request&) { return http::Response::json(200, impl_->snapshotJson().dump(2) + "\n"); });
}

void ProxyService::changed() { impl_->compile(false); }

void ProxyService::attach(dissem::Dissemination& dissemination) {
  impl_->dissemination = &dissemination;
  dissemination.addKind(kUsageKind, "ratelimit-usage", impl_->usageRecords);
}

void ProxyService::membersChanged() {
  impl_->membersDirty = true;
  impl_->compile(false);
}

void ProxyService::drain(std::chrono::milliseconds timeout, std::function<void()> done) {
  auto& m = *impl_;
  if (m.stopped || !m.proxy) return done();
  m.stopped = true;
  m.proxy->beginDrain();
  m.log->info("proxy draining connections={} timeout_ms={}", m.proxy->openConnections(), timeout.count());
  m.drainUntil = m.d.loop.now() + timeout;
  m.drainDone = std::move(done);
  m.drainCheck();
}

}  // namespace mesh::node
