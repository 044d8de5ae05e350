#pragma once
// A request's life in the proxy as named phases (CONVENTIONS.md, after Pingora and
// linkerd2-proxy): request filter, route, upstream select, upstream request, response filter,
// logging. Every request that was read ends in logging, whatever happened. The core does route
// and upstream select; filters hook the other phases in the order given. The built-in ones
// (request id, metrics, access log) are filters too; the traffic policy (issue 8) adds more.
//
// Filters run on a worker thread and must not block. One instance serves every request on
// every worker: per-request state lives in the context, per-worker state in the filter's own
// thread_local or per-worker tables.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "node/proxy/http1.h"

namespace mesh::proxy {

struct Cluster;
struct Endpoint;
struct RouteRule;

enum class Direction { outbound, inbound };
const char* directionName(Direction d);

// Why a request failed in the proxy (metrics label "cause"; the access log's "error").
enum class Failure {
  none,
  badRequest,        // 400: refused by the parser (smuggling defences, malformed)
  headerTooLarge,    // 431
  noRoute,           // 503: no service of that name in the catalog
  noEndpoint,        // 503: the service has no healthy endpoint
  connectFailed,     // 503: every connect attempt failed
  upstreamReset,     // 502: the upstream closed or reset before a whole response
  upstreamTimeout,   // 504: no response head within the upstream timeout
  badResponse,       // 502: the upstream's response could not be framed
  downstreamClosed,  // the client went away mid-request
  overflow,          // 503: a circuit breaker of the cluster (ctx.overflow says which)
  rateLimited,       // 429: a RateLimit's bucket was empty (ctx.limited says which)
  egressBlocked,     // 502: an external host MeshConfig's REGISTRY_ONLY does not allow
  loop,              // 508: the request's authority is this proxy's own listener
  requestTimeout,    // 408: the request head or body did not arrive in time (keep it last)
};
const char* failureName(Failure f);

struct RequestContext {
  using Clock = std::chrono::steady_clock;
  Direction direction = Direction::outbound;
  const h1::Head* request = nullptr;  // valid until logging returns
  std::string_view peerIdentity;      // inbound: the calling node's SPIFFE ID
  std::string_view sourceAddress;     // the client's IP
  std::string requestId;              // x-request-id, generated when absent
  std::string service;                // what the request was routed to
  const Cluster* cluster = nullptr;
  const Endpoint* endpoint = nullptr;
  const RouteRule* route = nullptr;     // the Route rule that decided (outbound), if any
  const Cluster* mirror = nullptr;      // where a copy of the request goes too (its response discarded)
  std::string rewrittenPath;            // the path sent on, when a rule rewrote it
  std::string_view rewrittenAuthority;  // the authority sent on, when a rule rewrote it
  std::vector<h1::Header> upstreamHeaders;    // fields the upstream request gains (replacing same-named)
  std::vector<h1::Header> downstreamHeaders;  // fields the response gains (replacing same-named)
  h1::FieldEdits upstreamEdits, downstreamEdits;  // fields removed, and appended beside same-named
  int status = 0;                             // the status the client got (0: none sent)
  Failure failure = Failure::none;
  int attempts = 0;  // upstream attempts (connect retries included)
  std::uint64_t requestBytes = 0, responseBytes = 0;
  Clock::time_point start, upstreamStart, upstreamHead, end;
  // A filter or route rule that answers itself sets this (status and body, sent as given) in
  // onRequest or the route phase: no upstream is tried.
  struct LocalReply {
    int status = 0;
    std::string body;
    std::string location;  // a redirect's Location
    int grpcStatus = 0;    // a gRPC status: answered 200 with grpc-status (trailers-only)
  } reply;
  std::chrono::milliseconds faultDelay{0};  // an injected delay before the request goes on
  const char* overflow = nullptr;  // the circuit breaker's limit that refused it ("max_requests"...)
  struct Limited {
    std::string rule;        // "RateLimit/NAME#rule"
    std::string retryAfter;  // seconds, as Retry-After says them
  } limited;                 // a rate limit's refusal (429)
};

class Filter {
 public:
  virtual ~Filter() = default;
  virtual const char* name() const = 0;
  virtual void onRequest(RequestContext&) {}
  virtual void onResponse(RequestContext&, const h1::Head& /*response*/) {}
  virtual void onLog(const RequestContext&) {}
};

}  // namespace mesh::proxy
