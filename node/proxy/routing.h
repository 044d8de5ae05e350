#pragma once
// Route policy in the proxy (issue 8): a Route document compiled once per snapshot into a table
// that the outbound route phase walks per request. Rules are tried in order and the first whose
// match holds decides: a weighted split across services and their subsets, a redirect, or a
// direct response; with a path or authority rewrite and header edits on the way. Pure: tested
// without sockets.
//
// A table names its destinations (service, subset), never the snapshot's clusters: the route
// phase resolves them in the snapshot the request pinned. So a table can outlive the snapshot it
// was compiled for, which is how a Route that lost a reference (a subset no DestinationPolicy
// defines any more) keeps its previous behaviour in the next snapshot.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "node/proxy/http1.h"

namespace mesh::proxy {

// Regular expressions run only against values of at most this many bytes; a longer value never
// matches one. libstdc++'s matcher recurses once per input character, so an unbounded value (a
// 32 KiB header) could exhaust a worker's stack; paths and header values that routing cares
// about are far shorter.
inline constexpr std::size_t kMaxRegexInput = 4096;

struct StringMatcher {
  enum class Kind { any, exact, prefix, regex };
  Kind kind = Kind::any;
  std::string value;
  std::shared_ptr<const std::regex> re;
  // regex: the literal text every match begins with ("/items/" of "/items/[0-9]+"), tested
  // before the regular expression runs (most values fail there, at the cost of a compare).
  std::string regexPrefix;
  bool matches(std::string_view s) const;
};

struct HeaderMatcher {
  std::string name;  // lower case
  enum class Kind { exact, prefix, regex, present, absent };
  Kind kind = Kind::present;
  StringMatcher value;  // exact, prefix, regex
};

struct RouteMatch {
  StringMatcher path;       // against the path without its query
  StringMatcher authority;  // against the Host / :authority as sent
  std::vector<std::string> methods;
  std::vector<HeaderMatcher> headers;
  std::vector<HeaderMatcher> query;  // query parameters (values percent-decoded)
  bool matches(const h1::Head& req) const;
};

struct HeaderEdit {
  std::vector<std::pair<std::string, std::string>> set;  // names lower case
  std::vector<std::pair<std::string, std::string>> add;
  std::vector<std::string> remove;
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

struct HeaderOps {
  HeaderEdit request, response;
};

struct RouteDestination {
  std::string service, subset;  // subset empty: every instance
  std::string key;              // the snapshot's cluster key: "service" or "service/subset"
  std::uint32_t weight = 100;
  HeaderOps headers;
};

struct RouteRule {
  std::string name;                  // the rule's name, or "#i" (its index)
  std::vector<RouteMatch> matches;   // any one; none: every request
  std::vector<RouteDestination> destinations;
  std::uint32_t totalWeight = 0;     // sum of the destinations' weights
  struct Redirect {
    std::string uri, authority, scheme;
    int status = 301;
  };
  std::optional<Redirect> redirect;
  struct Direct {
    int status = 200;
    std::string body;
  };
  std::optional<Direct> direct;
  // Fault injection: for requests whose headers match (all of `match`), a delay for
  // delayPercent of them, then an abort (an HTTP status, or a gRPC status in a trailers-only
  // response) for abortPercent.
  struct Fault {
    double delayPercent = 0;
    std::chrono::milliseconds delay{0};
    double abortPercent = 0;
    int httpStatus = 0;
    int grpcStatus = 0;
    std::vector<HeaderMatcher> match;
  };
  std::optional<Fault> fault;
  // Mirroring: a copy of mirrorPercent of the requests (bodyless ones) goes to this service or
  // subset too; its response is discarded.
  std::optional<RouteDestination> mirror;
  double mirrorPercent = 100;
  std::chrono::milliseconds timeout{0};  // the whole request, tries and backoff included (0: none)
  // Retries (Envoy's semantics): `attempts` more tries of a request that got a response or a
  // failure its conditions name; bodyless requests only (bodies are relayed, not buffered), and
  // only idempotent methods unless nonIdempotent; waits a jittered exponential backoff between
  // tries; at most budgetPercent of the cluster's active requests (this worker's) retry at once,
  // though minConcurrency always may.
  struct Retry {
    std::uint32_t attempts = 0;
    std::chrono::milliseconds perTryTimeout{0};
    bool on5xx = false, onGatewayError = false, onReset = false, onConnectFailure = false;
    std::vector<int> statuses;  // retriable-status-codes
    std::chrono::milliseconds backoffBase{25}, backoffMax{250};
    bool nonIdempotent = false;
    double budgetPercent = 20;
    std::uint32_t minConcurrency = 3;
    enum class Cause { connectFailure, reset, timeout };
    bool onStatus(int status) const;
    bool onCause(Cause cause) const;
    // The wait before retry number n (1, 2, ...): uniform in [0, min(base x 2^(n-1), max)].
    std::chrono::milliseconds backoff(int n, std::uint64_t draw) const;
  };
  std::optional<Retry> retry;
  std::string rewriteUri;        // replaces the matched prefix (or the whole path); empty: none
  std::string rewriteAuthority;  // empty: none
  HeaderOps headers;
};

// A Route's tcp rule: where TCP connections to its hosts go (connections redirected by iptables
// to a TCP service, and CONNECT tunnels). The first whose match holds decides; none: the
// service's own instances.
struct TcpRouteRule {
  std::string name;  // "#i"
  struct Match {
    std::uint16_t port = 0;     // the port the connection was for (0: any)
    std::string sourceService;  // the calling app's service (empty: any)
  };
  std::vector<Match> matches;  // any one; none: every connection
  std::vector<RouteDestination> destinations;
  std::uint32_t totalWeight = 0;
};

struct RouteTable {
  std::string document;  // "Route/NAME"
  std::uint64_t version = 0;
  std::vector<std::string> hosts;
  std::vector<RouteRule> rules;
  std::vector<TcpRouteRule> tcp;
  // The first tcp rule for a connection to `port` from an app of one of `sources` (the services
  // of this node's instances at the connection's source address), or null.
  const TcpRouteRule* matchTcp(std::uint16_t port, const std::vector<std::string_view>& sources) const;
  // The first rule that matches (and which of its matches did, null when it has none), or null.
  const RouteRule* match(const h1::Head& req, const RouteMatch** matched = nullptr) const;
};

// A Route document's body (canonical Cap'n Proto, already validated) compiled into a table.
// Errors only for a body that does not decode or a regular expression std::regex refuses.
Result<std::shared_ptr<const RouteTable>> compileRoute(std::string_view name, std::uint64_t version,
                                                        std::string_view body);

// Whether a fault applies to a request: its header matches hold.
bool faultApplies(const RouteRule::Fault& f, const h1::Head& req);
// Whether a uniformly drawn `draw` falls within `percent` (0-100, in steps of 0.0001).
bool withinPercent(double percent, std::uint64_t draw);

// The destination for a uniformly drawn `draw` (any 64-bit value) by the rule's weights.
const RouteDestination* pickDestination(const RouteRule& rule, std::uint64_t draw);
const RouteDestination* pickDestination(const TcpRouteRule& rule, std::uint64_t draw);

// The path after the rule's rewrite: the matched prefix replaced when the match was by prefix,
// else the whole path; the query string kept.
std::string rewritePath(const RouteRule& rule, const RouteMatch* matched, const h1::Head& req);

// The Location of a redirect: scheme, authority and path from the request unless the rule
// replaces them.
std::string redirectLocation(const RouteRule::Redirect& r, const h1::Head& req);

// Splits a target into path and query ("/a?b=c" -> "/a", "b=c").
std::pair<std::string_view, std::string_view> splitTarget(std::string_view target);

}  // namespace mesh::proxy
