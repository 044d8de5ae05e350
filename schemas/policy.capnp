@0xac9490ae62198564;
# Signed policy (issue 6): the seven kinds an operator writes in YAML, and the signed record a
# node stores and gossips. The YAML form is this schema read field by field (docs/policy-
# reference.md): a YAML key is the field's name; durations are written "250ms", "5s", "1m";
# enums in UPPER_SNAKE (ROUND_ROBIN) or as written here; lists annotated $mapOf are written as
# YAML maps. Wire and disk format: ordinals only grow; a field is never reused.
#
# A union's first member `unset` is never written in YAML: it tells "none given" apart from an
# empty value.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mesh::schema");

# A UInt64 holding milliseconds, written in YAML as a duration ("1.5s", "250ms").
annotation duration @0xc2d990444e6614dc (field) :Void;
# A List(Struct) written in YAML as a map: the map key fills the named field; a scalar value
# fills the field `value`, a map value the other fields.
annotation mapOf @0xab46876d5cabe0a8 (field) :Text;

# ---- shared pieces -------------------------------------------------------------------------------

struct StringMatch {
  union {
    unset @0 :Void;
    exact @1 :Text;
    prefix @2 :Text;
    regex @3 :Text;   # ECMAScript syntax, matched against the whole value
  }
}

struct HeaderMatch {
  name @0 :Text;
  union {
    unset @1 :Void;
    exact @2 :Text;
    prefix @3 :Text;
    regex @4 :Text;
    present @5 :Bool;  # true: the header must be there (any value); false: must not
  }
}

struct Header {
  name @0 :Text;
  value @1 :Text;
}

struct Label {
  name @0 :Text;
  value @1 :Text;
}

struct HeaderEdit {
  set @0 :List(Header) $mapOf("name");
  add @1 :List(Header) $mapOf("name");
  remove @2 :List(Text);
}

struct HeaderOps {
  request @0 :HeaderEdit;
  response @1 :HeaderEdit;
}

struct Destination {
  service @0 :Text;   # a catalog service name
  subset @1 :Text;    # a subset its DestinationPolicy defines
  port @2 :UInt16;    # 0: the instance's own port
}

struct WeightedDestination {
  destination @0 :Destination;
  weight @1 :UInt32;  # percent; a rule's weights add up to 100 (one destination alone: 100)
  headers @2 :HeaderOps;
}

# ---- Route ---------------------------------------------------------------------------------------

struct Route {
  hosts @0 :List(Text);    # service names ("reviews") or external hosts the rules apply to
  http @1 :List(HttpRule);  # first match wins
  tcp @2 :List(TcpRule);
}

struct HttpRule {
  name @0 :Text;
  match @1 :List(HttpMatch);   # any one of them; none: every request
  route @2 :List(WeightedDestination);
  timeout @3 :UInt64 $duration;
  retries @4 :Retry;
  fault @5 :Fault;
  mirror @6 :Destination;
  mirrorPercent @7 :Float64;   # 0-100; with mirror, 0 means 100
  rewrite @8 :Rewrite;
  redirect @9 :Redirect;
  directResponse @10 :DirectResponse;
  headers @11 :HeaderOps;
}

struct HttpMatch {
  path @0 :StringMatch;
  methods @1 :List(Text);
  headers @2 :List(HeaderMatch) $mapOf("name");
  queryParams @3 :List(HeaderMatch) $mapOf("name");
  authority @4 :StringMatch;
}

struct Retry {
  attempts @0 :UInt32;
  perTryTimeout @1 :UInt64 $duration;
  retryOn @2 :List(Text);   # 5xx, gateway-error, reset, connect-failure, retriable-status-codes
  retriableStatusCodes @3 :List(UInt16);
  backoffBase @4 :UInt64 $duration;
  backoffMax @5 :UInt64 $duration;
  retryNonIdempotent @6 :Bool;
  budgetPercent @7 :Float64;   # retries at most this share of active requests (default 20)
  minRetryConcurrency @8 :UInt32;
}

struct Fault {
  delay @0 :FaultDelay;
  abort @1 :FaultAbort;
  match @2 :List(HeaderMatch) $mapOf("name");  # only requests with these headers
}

struct FaultDelay {
  percent @0 :Float64;
  fixedDelay @1 :UInt64 $duration;
}

struct FaultAbort {
  percent @0 :Float64;
  httpStatus @1 :UInt16;
  grpcStatus @2 :UInt16;   # answered as grpc-status in trailers instead of httpStatus
}

struct Rewrite {
  uri @0 :Text;        # replaces the matched path prefix (or the whole path for exact/regex)
  authority @1 :Text;
}

struct Redirect {
  uri @0 :Text;
  authority @1 :Text;
  scheme @2 :Text;
  responseCode @3 :UInt16;   # 301, 302, 303, 307 or 308 (default 301)
}

struct DirectResponse {
  status @0 :UInt16;
  body @1 :Text;
}

struct TcpRule {
  match @0 :List(TcpMatch);
  route @1 :List(WeightedDestination);
}

struct TcpMatch {
  port @0 :UInt16;
  sourceService @1 :Text;
}

# ---- DestinationPolicy ---------------------------------------------------------------------------

struct DestinationPolicy {
  service @0 :Text;
  subsets @1 :List(Subset);
  trafficPolicy @2 :TrafficPolicy;
}

struct Subset {
  name @0 :Text;
  labels @1 :List(Label) $mapOf("name");
  trafficPolicy @2 :TrafficPolicy;
}

struct TrafficPolicy {
  loadBalancer @0 :LoadBalancer;
  connectionPool @1 :ConnectionPool;
  outlierDetection @2 :OutlierDetection;
  tls @3 :ClientTls;
}

struct LoadBalancer {
  algorithm @0 :Algorithm;
  hashHeader @1 :Text;       # ring hash: the header to hash
  hashSource @2 :Bool;       # ring hash: hash the source address instead
  localityPreference @3 :LocalityPreference;
  enum Algorithm {
    roundRobin @0;
    leastRequest @1;
    random @2;
    ringHash @3;
  }
  enum LocalityPreference {
    sameZone @0;    # same zone first, others when it has no healthy endpoint
    none @1;
  }
}

struct ConnectionPool {
  maxConnections @0 :UInt32;
  maxPendingRequests @1 :UInt32;
  maxRequests @2 :UInt32;
  maxRetries @3 :UInt32;
  connectTimeout @4 :UInt64 $duration;
  idleTimeout @5 :UInt64 $duration;
  maxRequestsPerConnection @6 :UInt32;
}

struct OutlierDetection {
  consecutive5xxErrors @0 :UInt32;
  consecutiveGatewayErrors @1 :UInt32;
  interval @2 :UInt64 $duration;
  baseEjectionTime @3 :UInt64 $duration;
  maxEjectionPercent @4 :Float64;
  successRateMinimumHosts @5 :UInt32;
  successRateStdevFactor @6 :Float64;
}

struct ClientTls {
  mode @0 :Mode;
  sni @1 :Text;
  enum Mode {
    mutual @0;   # the mesh's mTLS (default)
    disable @1;
    simple @2;   # TLS origination to an external host
  }
}

# ---- RateLimit -----------------------------------------------------------------------------------

struct RateLimit {
  service @0 :Text;
  rules @1 :List(RateLimitRule);
}

struct RateLimitRule {
  name @0 :Text;
  match @1 :List(HttpMatch);
  keyBy @2 :KeyBy;
  header @3 :Text;              # keyBy HEADER: the header whose value is the key
  requestsPerUnit @4 :UInt32;
  unit @5 :Unit;
  burst @6 :UInt32;             # bucket size (default requestsPerUnit)
  scope @7 :Scope;
  enum KeyBy {
    route @0;
    service @1;
    sourceIdentity @2;
    header @3;
  }
  enum Unit {
    second @0;
    minute @1;
    hour @2;
  }
  enum Scope {
    local @0;   # each node on its own
    mesh @1;    # one approximate limit shared across nodes through gossip
  }
}

# ---- ExternalService -----------------------------------------------------------------------------

struct ExternalService {
  hosts @0 :List(Text);        # DNS names, "*.example.com" wildcards allowed
  ports @1 :List(ExternalPort);
  resolution @2 :Resolution;
  addresses @3 :List(Text);    # resolution STATIC: the addresses to use
  enum Resolution {
    dns @0;
    static @1;
  }
}

struct ExternalPort {
  number @0 :UInt16;
  protocol @1 :Protocol;
  name @2 :Text;
  tlsOrigination @3 :Bool;     # plain HTTP from the app, TLS to the host
  enum Protocol {
    http @0;
    https @1;
    http2 @2;
    grpc @3;
    tls @4;
    tcp @5;
  }
}

# ---- AccessPolicy --------------------------------------------------------------------------------

struct AccessPolicy {
  service @0 :Text;   # the service it guards; "*": every service
  action @1 :Action;
  rules @2 :List(AccessRule);  # any one matching rule applies the action
  enum Action {
    allow @0;
    deny @1;
  }
}

struct AccessRule {
  from @0 :List(AccessSource);     # any of them; none: any source
  to @1 :List(AccessOperation);    # any of them; none: any operation
}

struct AccessSource {
  identities @0 :List(Text);   # SPIFFE IDs, "*" suffix wildcards allowed
  namespaces @1 :List(Text);
  notIdentities @2 :List(Text);
}

struct AccessOperation {
  paths @0 :List(Text);     # exact, or prefix with a trailing "*"
  methods @1 :List(Text);
  notPaths @2 :List(Text);
}

# ---- Gateway -------------------------------------------------------------------------------------

struct Gateway {
  listeners @0 :List(GatewayListener);
}

struct GatewayListener {
  name @0 :Text;
  port @1 :UInt16;
  protocol @2 :Protocol;
  hosts @3 :List(Text);
  tls @4 :GatewayTls;
  enum Protocol {
    http @0;
    https @1;
    http2 @2;
    tls @3;
    tcp @4;
  }
}

struct GatewayTls {
  mode @0 :Mode;
  certificate @1 :Text;    # a reference: the name of a certificate in the gateway's --tls-dir
  minVersion @2 :Text;     # "1.2" or "1.3"
  enum Mode {
    simple @0;
    mutual @1;
    passthrough @2;
  }
}

# ---- MeshConfig ----------------------------------------------------------------------------------

struct MeshConfig {
  egressMode @0 :EgressMode;
  # Rotation of trust: when not empty, the keys (public key PEM) nodes trust for every later
  # document, and how many must sign. Takes effect once this document is accepted, which needs
  # the threshold of the keys trusted before it.
  trustedKeys @1 :List(Text);
  threshold @2 :UInt32;
  accessLog @3 :Bool;
  enum EgressMode {
    allowAny @0;
    registryOnly @1;
  }
}

# ---- the signed record ---------------------------------------------------------------------------

struct PolicySignature {
  keyId @0 :Text;
  signature @1 :Data;
}

# One signed version of one document, as a node stores it and as it travels (a pull's answer,
# the body of POST /v1/policies with Content-Type application/x-mesh-policy). body: the kind's
# struct above, as a Cap'n Proto message (canonical layout), whose SHA-256 is bodyDigest.
struct SignedPolicy {
  kind @0 :Text;
  name @1 :Text;
  version @2 :UInt64;
  bodyDigest @3 :Data;
  issuedAt @4 :Int64;     # Unix seconds
  expiresAt @5 :Int64;    # Unix seconds; 0: never
  signerKeyIds @6 :List(Text);
  signatures @7 :List(PolicySignature);
  body @8 :Data;
}
