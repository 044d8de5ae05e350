#pragma once
// What the proxy's workers route by: an immutable snapshot of the mesh (issue 7), compiled on
// the control thread from the catalog (healthy instances of live nodes), the members' inbound
// addresses (serf tag "inbound") and the policy in force (a DestinationPolicy's load balancer),
// then published to the workers by an atomic swap. A request keeps the snapshot it began with,
// so a change never disturbs a request in flight.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/net_address.h"
#include "node/catalog/catalog.h"
#include "node/proxy/ratelimit.h"
#include "node/proxy/resilience.h"
#include "node/proxy/routing.h"

namespace mesh::policy {
struct Snapshot;
}

namespace mesh::proxy {

enum class Algorithm { roundRobin, leastRequest, random, ringHash };
const char* algorithmName(Algorithm a);

struct LoadBalancing {
  Algorithm algorithm = Algorithm::roundRobin;
  std::string hashHeader;   // ring hash: the request header whose value is hashed
  bool hashSource = false;  // ring hash: hash the client's address instead
  bool sameZone = true;     // prefer endpoints in this node's zone while any is healthy
};

// One healthy instance of a service, reached through its node's inbound listener.
struct Endpoint {
  std::string node;        // the owner node
  std::string instanceId;  // names the instance to the owner's inbound listener (TLS SNI)
  HostPort inbound;        // the owner's inbound (mTLS) listener
  std::string zone;
  std::uint32_t weight = 1;
  std::map<std::string, std::string> labels;
  std::string key;  // "node/instance": per-endpoint state (active requests) is kept by it
  // Outlier detection's view of it in this cluster (shared by the workers, kept across snapshots).
  std::shared_ptr<EndpointHealth> health;
};

// The endpoints a load balancer picks from, with what each algorithm precomputes, so that a
// pick on the request path reads only immutable data plus a per-worker counter.
struct EndpointSet {
  std::vector<const Endpoint*> endpoints;
  // Smooth weighted round robin (as nginx's), unrolled: indexes into endpoints, one cycle of
  // sum(weights) picks (capped; weights are scaled down proportionally beyond the cap).
  std::vector<std::uint32_t> schedule;
  // Weighted random and power-of-two-choices: cumulative weights.
  std::vector<std::uint64_t> cumulative;
  // Ring hash (consistent hashing, ketama-style): sorted (point, endpoint index).
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ring;
  bool empty() const { return endpoints.empty(); }
};

// Holds pointers into itself (the sets point at endpoints): built in place, never copied.
struct Cluster {
  Cluster() = default;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  std::string service;
  std::string subset;  // a DestinationPolicy subset's name; empty: every healthy instance
  std::string key;     // "service" or "service/subset": per-worker balancer state is kept by it
  catalog::Protocol protocol = catalog::Protocol::http;
  LoadBalancing lb;
  ConnectionLimits limits;  // circuit breakers
  OutlierPolicy outlier;
  // Counters and endpoint health over every worker, the same object from one snapshot to the
  // next while the cluster's key stays.
  std::shared_ptr<ClusterState> state;
  std::vector<Endpoint> endpoints;  // healthy, sorted by key
  std::vector<EndpointHealth*> health;  // endpoints' health, in the same order
  EndpointSet all;
  EndpointSet local;  // those in this node's zone (empty when none, or locality is off)
  // Which set a pick uses: this zone's while it has any, else every zone's (spill-over).
  const EndpointSet& pickSet() const { return local.empty() ? all : local; }
};

// An instance running on this node: where the inbound listener delivers what peers send it.
struct LocalTarget {
  std::string id, service;
  HostPort address;
  std::string poolKey;  // "local:ADDR:PORT": its pooled connections' key
  catalog::Protocol protocol = catalog::Protocol::http;
  // An external host (egress): the connection goes there directly, TLS when asked (SNI and the
  // verified name: `sni`); its pool key is "ext:...".
  bool external = false;
  bool tls = false;
  std::string sni;
};

// An ExternalService, as the egress phase matches an outbound request's authority against it.
struct ExternalHost {
  std::string document;            // "ExternalService/NAME"
  std::vector<std::string> hosts;  // lower case; "*.example.com": any name under example.com
  struct Port {
    std::uint16_t number = 0;
    bool tlsOrigination = false;  // the app speaks plain HTTP to it; the proxy TLS to the host
  };
  std::vector<Port> ports;
  std::vector<std::string> addresses;  // resolution STATIC: where the hosts are; empty: DNS
  // Where TLS origination connects: the HTTPS (or TLS) port the document lists, else 443.
  std::uint16_t tlsPort = 443;
};

struct EgressPolicy {
  bool registryOnly = false;  // MeshConfig egressMode REGISTRY_ONLY
  std::vector<ExternalHost> externals;
  // DestinationPolicies for external hosts (by host): tls SIMPLE originates TLS to the port the
  // app asked for (SNI and verified name: `sni`, default the host); DISABLE never originates.
  struct HostTls {
    bool simple = false;
    std::string sni;
  };
  std::unordered_map<std::string, HostTls> hostTls;
  // The ExternalService listing host:port (and which of its ports), or null.
  const ExternalHost* find(std::string_view host, std::uint16_t port, const ExternalHost::Port** which) const;
};

// What an outbound request to a name outside the mesh comes to (the egress phase).
struct EgressDecision {
  enum class Kind {
    notExternal,  // a single-label name the catalog lacks: no route (503)
    blocked,      // REGISTRY_ONLY and no ExternalService lists it (502)
    go,           // to `host`:`port` (an address, or a name to resolve), TLS when `tls`
  };
  Kind kind = Kind::notExternal;
  std::string host;  // lower case, no port
  std::uint16_t port = 0;      // where it connects (a TLS origination's port may differ)
  std::uint16_t askedPort = 0;  // the port the request named
  std::string address;  // a STATIC address (or the host, when it is an IP literal); empty: resolve host
  bool tls = false;     // TLS origination
  std::string sni;      // its SNI and verified name (the host, unless a DestinationPolicy says)
  std::string service;  // the metrics' service: "ExternalService/NAME", or "passthrough"
  std::string why;      // blocked: the answer's body
};
// `authority`: the request's Host (name[:port], port 80 by default).
EgressDecision egressFor(const EgressPolicy& egress, std::string_view authority);

// Whether `target` (an IP literal and port) is one of `listeners`, the proxy's own (an
// unspecified bind address stands for every address of the host). An external request sent there
// comes straight back and goes out again, each copy holding two descriptors, until the process
// has none left: the egress phase refuses it instead.
bool ownListener(std::initializer_list<const HostPort*> listeners, const HostPort& target);

struct Snapshot {
  std::uint64_t version = 0;
  std::uint64_t policyVersion = 0;
  std::string zone;
  std::unordered_map<std::string, std::shared_ptr<const Cluster>> clusters;  // by service name
  // DestinationPolicy subsets: "service/subset" -> the service's healthy instances whose labels
  // include all of the subset's.
  std::unordered_map<std::string, std::shared_ptr<const Cluster>> subsets;
  std::vector<const Cluster*> outlierClusters;  // those with outlier detection (evaluated each interval)
  // Route documents in force, by host (a service name); and by document ("Route/NAME"), for the
  // next compile to keep one whose references broke.
  std::unordered_map<std::string, std::shared_ptr<const RouteTable>> routes;
  std::map<std::string, std::shared_ptr<const RouteTable>> routeDocuments;
  // RateLimit documents in force, by the service they guard ("*": every service); and by
  // document, for the next compile to keep their buckets.
  std::unordered_map<std::string, std::shared_ptr<const RateLimitTable>> rateLimits;
  std::map<std::string, std::shared_ptr<const RateLimitTable>> rateLimitDocuments;
  EgressPolicy egress;
  std::unordered_map<std::string, LocalTarget> local;                        // by instance id
  // "ip:port" of every instance -> its service: what a connection redirected by iptables was
  // meant for (SO_ORIGINAL_DST).
  std::unordered_map<std::string, std::string> byAddress;
  const Cluster* find(std::string_view service) const;
  // The service's cluster, or its subset's; null when either is unknown.
  const Cluster* find(std::string_view service, std::string_view subset) const;
  // The same for a route's destination, by its precomputed key (no key built per request).
  const Cluster* find(const RouteDestination& d) const;
  const RouteTable* route(const std::string& host) const;
  // The RateLimits guarding `service`: its own and the one for "*" (either may be null).
  std::pair<const RateLimitTable*, const RateLimitTable*> rateLimitsFor(const std::string& service) const;
};

// What the compiler needs to know of a member beyond the catalog.
struct MemberInfo {
  bool alive = false;
  std::optional<HostPort> inbound;  // from its "inbound" tag; none: it runs no proxy
};

struct CompileInput {
  std::uint64_t version = 0;
  std::string nodeName, zone;
  const catalog::Catalog* catalog = nullptr;
  const std::map<std::string, MemberInfo>* members = nullptr;  // by node name (not ours)
  std::optional<HostPort> ownInbound;                          // our inbound, as advertised
  const policy::Snapshot* policy = nullptr;                    // may be null
  // The snapshot in force: a Route whose references no longer hold keeps its table from there.
  const Snapshot* previous = nullptr;
};

// Healthy means: the owner is alive (SWIM) and runs a proxy, the instance is passing or
// warning and not in maintenance.
std::shared_ptr<const Snapshot> compile(const CompileInput& in);

// The serf tag that carries a node's inbound listener ("10.0.0.5:15006").
inline constexpr const char* kInboundTag = "inbound";

// Exposed for tests: the precomputation of one endpoint set.
EndpointSet makeSet(const std::vector<const Endpoint*>& endpoints, Algorithm algorithm);

}  // namespace mesh::proxy
