#include "node/proxy/snapshot.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include <boost/asio/ip/address.hpp>

#include "node/policy/document.h"
#include "node/policy/policy_store.h"
#include "node/policy/validate.h"
#include "node/proxy/balancer.h"
#include "schemas/policy.capnp.h"
#include "schemas/record_io.h"

namespace mesh::proxy {

const char* algorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::roundRobin:
      return "round_robin";
    case Algorithm::leastRequest:
      return "least_request";
    case Algorithm::random:
      return "random";
    case Algorithm::ringHash:
      return "ring_hash";
  }
  return "?";
}

const Cluster* Snapshot::find(std::string_view service) const {
  auto it = clusters.find(std::string(service));
  return it == clusters.end() ? nullptr : it->second.get();
}

const Cluster* Snapshot::find(std::string_view service, std::string_view subset) const {
  if (subset.empty()) return find(service);
  std::string key;
  key.reserve(service.size() + 1 + subset.size());
  key.append(service).append("/").append(subset);
  auto it = subsets.find(key);
  return it == subsets.end() ? nullptr : it->second.get();
}

const Cluster* Snapshot::find(const RouteDestination& d) const {
  const auto& map = d.subset.empty() ? clusters : subsets;
  auto it = map.find(d.key);
  return it == map.end() ? nullptr : it->second.get();
}

const RouteTable* Snapshot::route(const std::string& host) const {
  if (routes.empty()) return nullptr;
  auto it = routes.find(host);
  return it == routes.end() ? nullptr : it->second.get();
}

std::pair<const RateLimitTable*, const RateLimitTable*> Snapshot::rateLimitsFor(const std::string& service) const {
  if (rateLimits.empty()) return {nullptr, nullptr};
  auto own = rateLimits.find(service);
  auto all = rateLimits.find("*");
  return {own == rateLimits.end() ? nullptr : own->second.get(), all == rateLimits.end() ? nullptr : all->second.get()};
}

namespace {

std::string lowerCopy(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool hostMatches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    // "*.example.com": a name under example.com (not example.com itself), as Istio's hosts.
    auto suffix = pattern.substr(1);
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return pattern == host;
}

// A port as an authority writes it: 1 to 65535 in decimal digits only (no sign, no suffix).
bool parsePort(std::string_view s, std::uint16_t& out) {
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  unsigned v = 0;
  for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
  if (v == 0 || v > 65535) return false;
  out = static_cast<std::uint16_t>(v);
  return true;
}

bool ipLiteral(std::string_view host) {
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(std::string(host), ec);
  return !ec;
}

}  // namespace

const ExternalHost* EgressPolicy::find(std::string_view host, std::uint16_t port, const ExternalHost::Port** which) const {
  for (const auto& e : externals) {
    if (std::none_of(e.hosts.begin(), e.hosts.end(), [&](const std::string& p) { return hostMatches(p, host); }))
      continue;
    for (const auto& p : e.ports) {
      if (p.number == port) {
        if (which) *which = &p;
        return &e;
      }
    }
  }
  return nullptr;
}

EgressDecision egressFor(const EgressPolicy& egress, std::string_view authority) {
  EgressDecision d;
  std::string_view hostPart = authority;
  std::uint16_t port = 80;
  if (authority.starts_with("[")) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return d;
    hostPart = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
        if (!parsePort(authority.substr(close + 2), port)) return d;
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    hostPart = authority.substr(0, colon);
    if (!parsePort(authority.substr(colon + 1), port)) return d;
  }
  d.host = lowerCopy(hostPart);
  if (d.host.ends_with(".")) d.host.pop_back();
  d.sni = d.host;
  d.port = d.askedPort = port;
  if (d.host.empty()) return d;
  const ExternalHost::Port* which = nullptr;
  if (const auto* ext = egress.find(d.host, port, &which)) {
    d.kind = EgressDecision::Kind::go;
    d.service = ext->document;
    d.tls = which->tlsOrigination;
    if (d.tls) d.port = ext->tlsPort;
    if (auto t = egress.hostTls.find(d.host); t != egress.hostTls.end()) {
      // A DestinationPolicy's tls for the host: SIMPLE originates on the port asked for;
      // DISABLE never.
      d.tls = t->second.simple;
      d.port = port;
      if (!t->second.sni.empty()) d.sni = t->second.sni;
    }
    if (!ext->addresses.empty()) {
      // Several: by the host's hash, so one host sticks to one address (its connections pool).
      d.address = ext->addresses[std::hash<std::string>{}(d.host) % ext->addresses.size()];
    } else if (ipLiteral(d.host)) {
      d.address = d.host;
    }
    return d;
  }
  const bool literal = ipLiteral(d.host);
  // A single-label name (or one under .mesh) is a mesh service's: unknown, not external.
  if (!literal && (d.host.find('.') == std::string::npos || d.host.ends_with(".mesh"))) return d;
  if (egress.registryOnly) {
    d.kind = EgressDecision::Kind::blocked;
    d.why = "egress to '" + d.host + ":" + std::to_string(port) +
            "' refused: MeshConfig/mesh has egressMode REGISTRY_ONLY and no ExternalService lists that host and port";
    return d;
  }
  d.kind = EgressDecision::Kind::go;
  d.service = "passthrough";
  if (literal) d.address = d.host;
  if (auto t = egress.hostTls.find(d.host); t != egress.hostTls.end() && t->second.simple) {
    d.tls = true;
    if (!t->second.sni.empty()) d.sni = t->second.sni;
  }
  return d;
}

namespace {

// One round-robin cycle is at most this many picks; heavier weights are scaled down to fit
// (their ratios kept to within one pick in kMaxSchedule).
constexpr std::uint64_t kMaxSchedule = 4096;
// Ring points per unit of weight (Envoy's default ring holds 1024 points at least; with weights
// of 1 and a few endpoints this gives each about 1/n of the keys to within a few percent).
constexpr std::uint64_t kRingPointsPerWeight = 160;
constexpr std::uint64_t kMaxRing = 1 << 16;

std::vector<std::uint32_t> smoothSchedule(const std::vector<const Endpoint*>& eps) {
  std::uint64_t total = 0;
  for (auto* e : eps) total += e->weight;
  double scale = total > kMaxSchedule ? static_cast<double>(kMaxSchedule) / static_cast<double>(total) : 1.0;
  std::vector<std::int64_t> weight(eps.size()), current(eps.size(), 0);
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < eps.size(); ++i) {
    weight[i] = std::max<std::int64_t>(1, static_cast<std::int64_t>(eps[i]->weight * scale));
    sum += weight[i];
  }
  // nginx's smooth weighted round robin: each step every endpoint gains its weight, the one
  // with the most is picked and loses the total. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
  std::vector<std::uint32_t> out;
  out.reserve(static_cast<std::size_t>(sum));
  for (std::int64_t step = 0; step < sum; ++step) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < eps.size(); ++i) {
      current[i] += weight[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= sum;
    out.push_back(static_cast<std::uint32_t>(best));
  }
  return out;
}

// The DestinationPolicy in force for each service (named by its `service` field; the document
// may have any name), found once per compile.
std::unordered_map<std::string, const policy::Held*> destinationPolicies(const policy::Snapshot* snap) {
  std::unordered_map<std::string, const policy::Held*> out;
  if (!snap) return out;
  for (const auto& [key, held] : snap->documents) {
    if (held->doc.envelope.kind == policy::kindName(policy::Kind::destinationPolicy)) {
      out.try_emplace(held->subsetsService, held.get());
    }
  }
  return out;
}

LoadBalancing readLoadBalancer(schema::LoadBalancer::Reader l) {
  LoadBalancing lb;
  switch (l.getAlgorithm()) {
    case schema::LoadBalancer::Algorithm::ROUND_ROBIN:
      lb.algorithm = Algorithm::roundRobin;
      break;
    case schema::LoadBalancer::Algorithm::LEAST_REQUEST:
      lb.algorithm = Algorithm::leastRequest;
      break;
    case schema::LoadBalancer::Algorithm::RANDOM:
      lb.algorithm = Algorithm::random;
      break;
    case schema::LoadBalancer::Algorithm::RING_HASH:
      lb.algorithm = Algorithm::ringHash;
      break;
  }
  lb.hashHeader = l.getHashHeader().cStr();
  std::transform(lb.hashHeader.begin(), lb.hashHeader.end(), lb.hashHeader.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  lb.hashSource = l.getHashSource();
  lb.sameZone = l.getLocalityPreference() == schema::LoadBalancer::LocalityPreference::SAME_ZONE;
  return lb;
}

ConnectionLimits readConnectionPool(schema::ConnectionPool::Reader p) {
  ConnectionLimits l;
  l.maxConnections = p.getMaxConnections();
  l.maxPendingRequests = p.getMaxPendingRequests();
  l.maxRequests = p.getMaxRequests();
  l.maxRetries = p.getMaxRetries();
  l.connectTimeout = std::chrono::milliseconds(p.getConnectTimeout());
  l.idleTimeout = std::chrono::milliseconds(p.getIdleTimeout());
  l.maxRequestsPerConnection = p.getMaxRequestsPerConnection();
  return l;
}

// Unset fields take Istio's defaults (interval 10 s, base ejection 30 s, at most 10% out) and
// Envoy's stdev factor (1.9).
OutlierPolicy readOutlier(schema::OutlierDetection::Reader o) {
  OutlierPolicy p;
  p.consecutive5xx = o.getConsecutive5xxErrors();
  p.consecutiveGateway = o.getConsecutiveGatewayErrors();
  if (o.getInterval() > 0) p.interval = std::chrono::milliseconds(o.getInterval());
  if (o.getBaseEjectionTime() > 0) p.baseEjection = std::chrono::milliseconds(o.getBaseEjectionTime());
  if (o.getMaxEjectionPercent() > 0) p.maxEjectionPercent = o.getMaxEjectionPercent();
  p.successRateMinimumHosts = o.getSuccessRateMinimumHosts();
  if (o.getSuccessRateStdevFactor() > 0) p.successRateStdevFactor = o.getSuccessRateStdevFactor();
  return p;
}

// A TrafficPolicy's parts; a subset's replace its service's part by part (as Istio's do).
struct TrafficSpec {
  std::optional<LoadBalancing> lb;
  std::optional<ConnectionLimits> limits;
  std::optional<OutlierPolicy> outlier;
};

TrafficSpec readTraffic(schema::TrafficPolicy::Reader t) {
  TrafficSpec out;
  if (t.hasLoadBalancer()) out.lb = readLoadBalancer(t.getLoadBalancer());
  if (t.hasConnectionPool()) out.limits = readConnectionPool(t.getConnectionPool());
  if (t.hasOutlierDetection()) out.outlier = readOutlier(t.getOutlierDetection());
  return out;
}

struct SubsetSpec {
  std::string name;
  std::map<std::string, std::string> labels;
  TrafficSpec traffic;  // the subset's own parts
};

struct DestinationSpec {
  TrafficSpec traffic;
  std::vector<SubsetSpec> subsets;
};

// A cluster's policy: the subset's parts where it has them, else the service's.
void applyTraffic(Cluster& c, const TrafficSpec& own, const TrafficSpec& service) {
  c.lb = own.lb ? *own.lb : service.lb.value_or(LoadBalancing{});
  c.limits = own.limits ? *own.limits : service.limits.value_or(ConnectionLimits{});
  c.outlier = own.outlier ? *own.outlier : service.outlier.value_or(OutlierPolicy{});
}

DestinationSpec destinationOf(const policy::Held* held) {
  DestinationSpec spec;
  if (!held) return spec;
  (void)schema::readRecord<schema::DestinationPolicy>(
      held->doc.body, "policy body", errc::malformed, policy::kMaxBodyWords,
      [&](schema::DestinationPolicy::Reader d) -> Result<void> {
        if (d.hasTrafficPolicy()) spec.traffic = readTraffic(d.getTrafficPolicy());
        for (auto sub : d.getSubsets()) {
          SubsetSpec out;
          out.name = sub.getName().cStr();
          for (auto l : sub.getLabels()) out.labels[l.getName().cStr()] = l.getValue().cStr();
          if (sub.hasTrafficPolicy()) out.traffic = readTraffic(sub.getTrafficPolicy());
          spec.subsets.push_back(std::move(out));
        }
        return {};
      });
  return spec;
}

// The state a cluster of this key had in the snapshot before (its counters, its endpoints'
// health), or a new one.
std::shared_ptr<ClusterState> stateFor(const Snapshot* previous, const std::string& key, bool subset) {
  if (previous) {
    const auto& map = subset ? previous->subsets : previous->clusters;
    auto it = map.find(key);
    if (it != map.end() && it->second->state) return it->second->state;
  }
  return std::make_shared<ClusterState>();
}

// A cluster's endpoint sets and health, once its endpoints are in place.
void buildSets(Cluster& c, const std::string& zone) {
  std::vector<std::string> keys;
  c.health.clear();
  for (auto& e : c.endpoints) {
    e.health = c.state->health(e.key);
    c.health.push_back(e.health.get());
    keys.push_back(e.key);
  }
  c.state->retain(keys);
  std::vector<const Endpoint*> all, local;
  for (const auto& e : c.endpoints) {
    all.push_back(&e);
    if (e.zone == zone) local.push_back(&e);
  }
  c.all = makeSet(all, c.lb.algorithm);
  if (c.lb.sameZone && !local.empty() && local.size() < all.size()) c.local = makeSet(local, c.lb.algorithm);
}

}  // namespace

EndpointSet makeSet(const std::vector<const Endpoint*>& endpoints, Algorithm algorithm) {
  EndpointSet set;
  set.endpoints = endpoints;
  if (endpoints.empty()) return set;
  std::uint64_t run = 0;
  for (auto* e : endpoints) set.cumulative.push_back(run += std::max<std::uint32_t>(1, e->weight));
  switch (algorithm) {
    case Algorithm::roundRobin:
      set.schedule = smoothSchedule(endpoints);
      break;
    case Algorithm::ringHash: {
      std::uint64_t total = run * kRingPointsPerWeight;
      double scale = total > kMaxRing ? static_cast<double>(kMaxRing) / static_cast<double>(total) : 1.0;
      for (std::uint32_t i = 0; i < endpoints.size(); ++i) {
        auto points =
            std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::max<std::uint32_t>(1, endpoints[i]->weight) *
                                                                  kRingPointsPerWeight * scale));
        for (std::uint64_t p = 0; p < points; ++p) {
          set.ring.emplace_back(hashKey(endpoints[i]->key + "#" + std::to_string(p)), i);
        }
      }
      std::sort(set.ring.begin(), set.ring.end());
      break;
    }
    case Algorithm::leastRequest:
    case Algorithm::random:
      break;
  }
  return set;
}

std::shared_ptr<const Snapshot> compile(const CompileInput& in) {
  auto snap = std::make_shared<Snapshot>();
  snap->version = in.version;
  snap->zone = in.zone;
  snap->policyVersion = in.policy ? in.policy->version : 0;
  std::map<std::string, std::vector<Endpoint>> byService;
  std::map<std::string, catalog::Protocol> protocols;
  for (const auto& [owner, entry] : in.catalog->entries()) {
    const bool self = owner == in.nodeName;
    std::optional<HostPort> inbound;
    if (self) {
      inbound = in.ownInbound;
    } else if (in.members) {
      auto m = in.members->find(owner);
      if (m != in.members->end() && m->second.alive) inbound = m->second.inbound;
    }
    for (const auto& inst : entry.services.instances) {
      snap->byAddress.emplace(inst.address + ":" + std::to_string(inst.port), inst.name);
      const bool healthy =
          (inst.health == catalog::Health::passing || inst.health == catalog::Health::warning) && !inst.maintenance;
      if (self) {
        // Ours are delivered by the inbound listener whatever their health: a peer that picked
        // one did so from its own view, and the app answers for itself.
        auto target = parseHostPort(inst.address + ":" + std::to_string(inst.port));
        if (!target && inst.address.find(':') != std::string::npos) {
          target = parseHostPort("[" + inst.address + "]:" + std::to_string(inst.port));
        }
        if (target) {
          snap->local.emplace(inst.id,
                              LocalTarget{inst.id, inst.name, *target, "local:" + target->toString(), inst.protocol});
        }
      }
      if (!healthy || !entry.available || !inbound) continue;
      protocols.emplace(inst.name, inst.protocol);
      Endpoint e;
      e.node = owner;
      e.instanceId = inst.id;
      e.inbound = *inbound;
      e.zone = inst.zone;
      e.weight = std::max<std::uint32_t>(1, inst.weight);
      e.labels = inst.labels;
      e.key = owner + "/" + inst.id;
      byService[inst.name].push_back(std::move(e));
    }
  }
  // A service every instance of which is unhealthy still has a cluster (with no endpoints):
  // the caller learns "no healthy endpoint" (503), not "no such service".
  for (const auto& [owner, entry] : in.catalog->entries()) {
    for (const auto& inst : entry.services.instances) byService.try_emplace(inst.name);
  }
  const auto policies = destinationPolicies(in.policy);
  for (auto& [service, endpoints] : byService) {
    auto c = std::make_shared<Cluster>();
    c->service = service;
    c->key = service;
    if (auto p = protocols.find(service); p != protocols.end()) c->protocol = p->second;
    auto dp = policies.find(service);
    auto spec = destinationOf(dp == policies.end() ? nullptr : dp->second);
    applyTraffic(*c, spec.traffic, {});
    c->state = stateFor(in.previous, c->key, false);
    std::sort(endpoints.begin(), endpoints.end(), [](const Endpoint& a, const Endpoint& b) { return a.key < b.key; });
    c->endpoints = std::move(endpoints);
    buildSets(*c, in.zone);
    // Subsets: the same endpoints, filtered by labels; a subset with no healthy endpoint still
    // has its cluster (a request routed there gets "no healthy endpoint", not "no route").
    for (const auto& sub : spec.subsets) {
      auto sc = std::make_shared<Cluster>();
      sc->service = service;
      sc->subset = sub.name;
      sc->key = service + "/" + sub.name;
      sc->protocol = c->protocol;
      applyTraffic(*sc, sub.traffic, spec.traffic);
      sc->state = stateFor(in.previous, sc->key, true);
      for (const auto& e : c->endpoints) {
        bool all = true;
        for (const auto& [k, v] : sub.labels) {
          auto it = e.labels.find(k);
          if (it == e.labels.end() || it->second != v) {
            all = false;
            break;
          }
        }
        if (all) sc->endpoints.push_back(e);
      }
      buildSets(*sc, in.zone);
      if (sc->outlier.enabled()) snap->outlierClusters.push_back(sc.get());
      snap->subsets.emplace(sc->key, std::move(sc));
    }
    if (c->outlier.enabled()) snap->outlierClusters.push_back(c.get());
    snap->clusters.emplace(service, std::move(c));
  }
  // Routes. One that refers to what is not held (policy::Snapshot::problems) keeps the table it
  // had in the snapshot before; one new with such a problem has none yet (the hosts keep their
  // plain routing).
  if (in.policy) {
    for (const auto& [key, held] : in.policy->documents) {
      if (held->doc.envelope.kind != policy::kindName(policy::Kind::route)) continue;
      std::shared_ptr<const RouteTable> table;
      const bool broken = in.policy->problems.count(key) > 0;
      if (!broken) {
        auto compiled = compileRoute(held->doc.envelope.name, held->doc.envelope.version, held->doc.body);
        if (compiled) table = std::move(*compiled);
      }
      if (!table && in.previous) {
        auto prev = in.previous->routeDocuments.find(key);
        if (prev != in.previous->routeDocuments.end()) table = prev->second;
      }
      if (!table) continue;
      snap->routeDocuments.emplace(key, table);
      // Two Routes for one host: the first by name holds it (documents are in name order).
      for (const auto& host : table->hosts) snap->routes.try_emplace(host, table);
    }
    // Egress: MeshConfig's mode and the ExternalServices.
    for (const auto& [key, held] : in.policy->documents) {
      const auto& kind = held->doc.envelope.kind;
      if (kind == policy::kindName(policy::Kind::meshConfig)) {
        (void)schema::readRecord<schema::MeshConfig>(held->doc.body, "policy body", errc::malformed,
                                                     policy::kMaxBodyWords, [&](schema::MeshConfig::Reader m) -> Result<void> {
                                                       snap->egress.registryOnly =
                                                           m.getEgressMode() == schema::MeshConfig::EgressMode::REGISTRY_ONLY;
                                                       return {};
                                                     });
      } else if (kind == policy::kindName(policy::Kind::destinationPolicy)) {
        (void)schema::readRecord<schema::DestinationPolicy>(
            held->doc.body, "policy body", errc::malformed, policy::kMaxBodyWords,
            [&](schema::DestinationPolicy::Reader dp) -> Result<void> {
              if (!dp.hasTrafficPolicy() || !dp.getTrafficPolicy().hasTls()) return {};
              auto tls = dp.getTrafficPolicy().getTls();
              if (tls.getMode() == schema::ClientTls::Mode::MUTUAL) return {};  // the mesh's own
              snap->egress.hostTls[lowerCopy(dp.getService().cStr())] = {
                  tls.getMode() == schema::ClientTls::Mode::SIMPLE, lowerCopy(tls.getSni().cStr())};
              return {};
            });
      } else if (kind == policy::kindName(policy::Kind::externalService)) {
        ExternalHost ext;
        ext.document = key;
        auto ok = schema::readRecord<schema::ExternalService>(
            held->doc.body, "policy body", errc::malformed, policy::kMaxBodyWords,
            [&](schema::ExternalService::Reader e) -> Result<void> {
              for (auto h : e.getHosts()) ext.hosts.push_back(lowerCopy(h.cStr()));
              bool tlsPortListed = false;
              for (auto p : e.getPorts()) {
                ext.ports.push_back({p.getNumber(), p.getTlsOrigination()});
                if (!tlsPortListed && (p.getProtocol() == schema::ExternalPort::Protocol::HTTPS ||
                                       p.getProtocol() == schema::ExternalPort::Protocol::TLS)) {
                  ext.tlsPort = p.getNumber();
                  tlsPortListed = true;
                }
              }
              if (e.getResolution() == schema::ExternalService::Resolution::STATIC) {
                for (auto a : e.getAddresses()) ext.addresses.emplace_back(a.cStr());
              }
              return {};
            });
        if (ok) snap->egress.externals.push_back(std::move(ext));
      }
    }
    // RateLimits (one per service, validation sees to it); their buckets carried over while the
    // document's version stays.
    for (const auto& [key, held] : in.policy->documents) {
      if (held->doc.envelope.kind != policy::kindName(policy::Kind::rateLimit)) continue;
      const RateLimitTable* prev = nullptr;
      if (in.previous) {
        auto it = in.previous->rateLimitDocuments.find(key);
        if (it != in.previous->rateLimitDocuments.end()) prev = it->second.get();
      }
      auto table = compileRateLimit(held->doc.envelope.name, held->doc.envelope.version, held->doc.body, prev);
      if (!table) continue;
      snap->rateLimitDocuments.emplace(key, *table);
      snap->rateLimits.try_emplace((*table)->service, *table);
    }
  }
  return snap;
}

bool ownListener(std::initializer_list<const HostPort*> listeners, const HostPort& target) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(target.host, ec);
  if (ec) return false;
  // ::ffff:127.0.0.1 is 127.0.0.1 to a dual-stack socket.
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  const auto port = target.port;
  for (const HostPort* lp : listeners) {
    const auto& l = *lp;
    if (l.port != port) continue;
    // Connecting to 0.0.0.0 (or ::) reaches this host: whatever address the listener has.
    if (a.is_unspecified()) return true;
    if (!l.isUnspecified()) {
      auto bound = boost::asio::ip::make_address(l.host, ec);
      if (!ec && bound == a) return true;
      continue;
    }
    if (a.is_loopback()) return true;
    // Rare (an external address whose port is a listener's): ask the interfaces each time.
    ifaddrs* all = nullptr;
    if (::getifaddrs(&all) != 0) continue;
    bool mine = false;
    for (auto* i = all; i && !mine; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      if (i->ifa_addr->sa_family == AF_INET && a.is_v4()) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
        mine = ntohl(in->sin_addr.s_addr) == a.to_v4().to_uint();
      } else if (i->ifa_addr->sa_family == AF_INET6 && a.is_v6()) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
        mine = std::memcmp(in6->sin6_addr.s6_addr, a.to_v6().to_bytes().data(), 16) == 0;
      }
    }
    ::freeifaddrs(all);
    if (mine) return true;
  }
  return false;
}

}  // namespace mesh::proxy
