#include "node/proxy_service.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/metrics.h"
#include "node/admin/server.h"
#include "node/catalog/catalog.h"
#include "node/policy/policy_store.h"

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
  return std::unique_ptr<ProxyService>(new ProxyService(std::move(impl)));
}

std::string ProxyService::advertisedInbound() const { return impl_->inboundTag; }

void ProxyService::attach(admin::Server& admin) {
  admin.route("GET", "/v1/proxy",
              [this](const http::Request&) { return http::Response::json(200, impl_->snapshotJson().dump(2) + "\n"); });
}

void ProxyService::changed() { impl_->compile(false); }

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
