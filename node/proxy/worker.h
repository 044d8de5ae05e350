#pragma once
// The proxy's internals shared by its two relays: proxy.cc (workers, listeners, HTTP/1.1,
// tunnels) and h2_relay.cc (HTTP/2 both sides). Not an interface: only these two include it.

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ssl.hpp>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/asio.h"
#include "common/log.h"
#include "common/metrics.h"
#include "node/identity/tls.h"
#include "node/proxy/balancer.h"
#include "node/proxy/proxy.h"

namespace mesh::proxy::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

inline auto tok(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// ALPN between proxies says what a connection carries: HTTP/1.1 or HTTP/2 requests for the
// instance, or (mesh-tcp/1) a byte tunnel to it: a TCP service, a CONNECT. The inbound side
// splices a tunnel whatever the instance's protocol.
inline constexpr unsigned char kAlpnHttp[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
inline constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
inline constexpr unsigned char kAlpnTunnel[] = {10, 'm', 'e', 's', 'h', '-', 't', 'c', 'p', '/', '1'};
inline constexpr std::string_view kTunnelProtocol = "mesh-tcp/1";
std::string_view alpnOf(SSL* ssl);


// A connection's input: bytes read and not yet used. Heads are parsed in place; a parsed head
// is copied out (relocate) before the buffer is reused for the body.
class Buffer {
 public:
  explicit Buffer(std::size_t capacity = 16 * 1024) : data_(capacity) {}
  std::string_view view() const { return {data_.data() + start_, end_ - start_}; }
  std::size_t size() const { return end_ - start_; }
  bool empty() const { return start_ == end_; }
  void consume(std::size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  // Room for at least `min` bytes (the buffer grows to hold a head up to the limit).
  asio::mutable_buffer prepare(std::size_t min = 4096) {
    if (data_.size() - end_ < min) {
      if (start_ > 0) {
        std::memmove(data_.data(), data_.data() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
      }
      if (data_.size() - end_ < min) data_.resize(std::max(data_.size() * 2, end_ + min));
    }
    return asio::buffer(data_.data() + end_, data_.size() - end_);
  }
  void commit(std::size_t n) { end_ += n; }

 private:
  std::vector<char> data_;
  std::size_t start_ = 0, end_ = 0;
};

using SslStream = asio::ssl::stream<tcp::socket>;

// A plain or TLS byte stream: the four ends of the two hops are one or the other.
class Stream {
 public:
  explicit Stream(tcp::socket s) : tcp_(std::move(s)) {}
  Stream(tcp::socket s, asio::ssl::context& ctx) : tls_(std::make_unique<SslStream>(std::move(s), ctx)) {}
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *tcp_; }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }
  SslStream* tls() { return tls_.get(); }

  // One asynchronous operation on whichever stream this is, awaited directly (no coroutine
  // frame of its own: these run several times per request).
  auto read(asio::mutable_buffer b, error_code& ec) {
    auto token = tok(ec);
    return asio::async_initiate<decltype(token), void(error_code, std::size_t)>(
        [this](auto handler, asio::mutable_buffer buf) {
          if (tls_)
            tls_->async_read_some(buf, std::move(handler));
          else
            tcp_->async_read_some(buf, std::move(handler));
        },
        token, b);
  }
  template <typename Buffers>
  auto write(const Buffers& b, error_code& ec) {
    auto token = tok(ec);
    return asio::async_initiate<decltype(token), void(error_code, std::size_t)>(
        [this](auto handler, const Buffers& buf) {
          if (tls_)
            asio::async_write(*tls_, buf, std::move(handler));
          else
            asio::async_write(*tcp_, buf, std::move(handler));
        },
        token, b);
  }
  // The same write with a plain completion handler (HTTP/2 connections write from callbacks).
  template <typename Buffers, typename Handler>
  void writeThen(const Buffers& b, Handler&& h) {
    if (tls_)
      asio::async_write(*tls_, b, std::forward<Handler>(h));
    else
      asio::async_write(*tcp_, b, std::forward<Handler>(h));
  }
  void close() {
    error_code ec;
    socket().close(ec);
  }
  void shutdownSend() {
    error_code ec;
    socket().shutdown(tcp::socket::shutdown_send, ec);
  }
  bool isOpen() { return socket().is_open(); }

 private:
  std::optional<tcp::socket> tcp_;
  std::unique_ptr<SslStream> tls_;
};

// An upstream connection: to a peer's inbound listener (TLS) or to a local app (plain).
struct Upstream {
  Upstream(tcp::socket s) : stream(std::move(s)) {}
  Upstream(tcp::socket s, asio::ssl::context& ctx) : stream(std::move(s), ctx) {}
  Stream stream;
  Buffer buf{8 * 1024};
  std::string key;
  Clock::time_point idleSince;
  bool reused = false;
  Slot conn;                 // its place in the cluster's connection count (outbound)
  // How long it may sit idle in a pool: its cluster's connectionPool idleTimeout, or (0) the
  // proxy's poolIdleTimeout.
  std::chrono::milliseconds idleTimeout{0};
  std::chrono::milliseconds idleLimit(std::chrono::milliseconds proxyDefault) const {
    return idleTimeout.count() > 0 ? idleTimeout : proxyDefault;
  }
  std::uint32_t served = 0;  // requests it carried (maxRequestsPerConnection)
};

// Metrics of one (direction, service): looked up once per request in a per-worker table, the
// series themselves are the registry's (atomics shared by the workers).
struct ServiceSeries {
  metrics::Counter* byClass[6] = {};  // 1xx..5xx, and [0] for requests with no response
  metrics::Histogram* duration = nullptr;
  metrics::Histogram* upstream = nullptr;
};

struct Shared;

struct Conn;
struct H2Client;
struct H2Server;
struct Exchange;

struct Worker {
  Worker(Shared& shared, int index);
  Shared& impl;
  int index;
  std::thread thread;
  std::optional<tcp::acceptor> outbound, inbound;
  std::unique_ptr<asio::ssl::context> serverCtx, clientCtx;
  std::unique_ptr<asio::ssl::context> egressCtx;  // TLS origination to external hosts
  // External hosts' addresses (egress), for a while: a name's lookups are not per request.
  struct Resolved {
    std::string address;  // empty: it did not resolve
    Clock::time_point expires;
  };
  std::unordered_map<std::string, Resolved> dns;
  log::Throttle acceptWarn[2];  // per listener (Direction): EMFILE repeats every 50 ms while it lasts
  Balancer balancer;
  // A Route's retries in flight, by cluster key: its retry budget (per worker, as all state on
  // the request path; see RoutePolicy).
  std::unordered_map<std::string, std::uint32_t> retrying;
  std::shared_ptr<const Snapshot> snap;
  std::uint64_t snapVersion = ~0ull;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Upstream>>> pool;
  std::unordered_set<Conn*> conns;
  std::unordered_map<std::string, ServiceSeries> series;
  // HTTP/2 (h2_relay.cc): multiplexed upstream connections by endpoint key (one each, shared by
  // every request of this worker), and the downstream HTTP/2 connections being served.
  std::unordered_map<std::string, std::shared_ptr<H2Client>> h2pool;
  std::unordered_set<H2Server*> h2servers;
  std::unordered_set<Exchange*> bridged;  // HTTP/1.1 requests relayed over HTTP/2, mirrored copies (their timeouts)
  std::size_t mirrors = 0;                // mirrored copies in flight
  bool draining = false;
  // Last, so destroyed first: the handlers it still holds (suspended connections) are
  // destroyed while the tables they deregister from are alive.
  asio::io_context io{1};

  const Snapshot& snapshot();
  ServiceSeries& seriesFor(Direction d, std::string_view service);
  // A pooled connection to `key`, if one is still good. For a cluster's request: one counted
  // among that cluster's connections (a service and its subsets share endpoints, so their
  // connections share a pool; one of another's is taken over when the cluster's maxConnections
  // allows, else left).
  std::unique_ptr<Upstream> take(const std::string& key, const Cluster* cluster = nullptr);
  void giveBack(std::unique_ptr<Upstream> up);
  void sweepPool(bool all);
  // Idle connections of clusters with requests waiting for one (maxConnections) are closed.
  void releaseForPending();
  void startDrain();
};

struct Shared {
  ProxyOptions opt;
  std::shared_ptr<const identity::MeshTls> tls;
  std::vector<std::shared_ptr<Filter>> filters;
  metrics::Registry& registry;
  std::shared_ptr<spdlog::logger> log = log::get("proxy");
  std::vector<std::unique_ptr<Worker>> workers;
  HostPort outboundBound, inboundBound;

  mutable std::mutex snapMu;
  std::shared_ptr<const Snapshot> snap;
  std::atomic<std::uint64_t> published{0};

  std::atomic<std::int64_t> openConns{0};
  std::atomic<std::int64_t> upstreamOpen[2] = {0, 0};
  std::atomic<std::int64_t> upstreamIdle{0};

  metrics::Gauge* activeOut;
  metrics::Gauge* activeIn;
  metrics::Counter* acceptedOut;
  metrics::Counter* acceptedIn;
  metrics::Counter* handshakeServerOk;
  metrics::Counter* handshakeServerFail;
  metrics::Counter* handshakeClientOk;
  metrics::Counter* handshakeClientFail;
  metrics::Counter* connectOk[2];
  metrics::Counter* connectFail[2];
  metrics::Counter* retries[2];
  metrics::Counter* faults[2];        // injected by a Route: [0] aborts, [1] delays
  metrics::Counter* routeRetries[2];  // a Route's retries: [0] made, [1] refused by the budget
  metrics::Counter* mirrored[2];      // mirrored copies: [0] sent, [1] dropped
  metrics::Counter* overflows[5] = {};  // refused by a circuit breaker, by Overflow (none unused)
  metrics::Counter* ejections[4] = {};  // outlier ejections, by Ejection (none unused)
  metrics::Counter* ejectionsEnded = nullptr;

  std::mutex accessMu;
  std::FILE* access = nullptr;
  bool ownsAccess = false;

  Shared(ProxyOptions o, metrics::Registry& r) : opt(std::move(o)), registry(r) {}
  ~Shared() {
    if (access && ownsAccess) std::fclose(access);
  }

  // Every (direction, cause) series, registered at start: counting one is an atomic add, not a
  // registry lookup under its lock.
  static constexpr int kFailures = static_cast<int>(Failure::requestTimeout) + 1;
  metrics::Counter* errorSeries[2][kFailures] = {};
  metrics::Counter& errors(Direction d, Failure f) { return *errorSeries[d == Direction::outbound ? 0 : 1][static_cast<int>(f)]; }
};

// One downstream connection and what its timeouts may have to close.
struct Conn : std::enable_shared_from_this<Conn> {
  Conn(Worker& w, Direction d, Stream s) : worker(w), direction(d), down(std::move(s)) {
    worker.conns.insert(this);
    ++worker.impl.openConns;
    (d == Direction::outbound ? worker.impl.activeOut : worker.impl.activeIn)->inc();
  }
  ~Conn() {
    worker.conns.erase(this);
    --worker.impl.openConns;
    (direction == Direction::outbound ? worker.impl.activeOut : worker.impl.activeIn)->dec();
  }
  Worker& worker;
  Direction direction;
  Stream down;
  Buffer buf;
  // When the current phase times out; the worker's sweep (every kSweep) closes what is past it.
  Clock::time_point deadline = Clock::time_point::max();
  bool timedOut = false;      // the downstream timed out: the connection is closed
  bool upstreamOnly = false;  // a timeout now ends only the upstream attempt (connect, response head)
  bool upTimedOut = false;
  bool closed = false;
  bool idle = false;  // waiting for a request with nothing buffered: a drain closes it
  Stream* up = nullptr;
  std::string peerIdentity, sourceAddress, sni;
  std::string redirectedTo;  // outbound, redirected by iptables: the original destination's service
  std::string head;          // the current request head, copied out of buf

  void setDeadline(Clock::time_point t) { deadline = t; }
  void after(std::chrono::milliseconds d) { setDeadline(Clock::now() + d); }
  void closeAll() {
    closed = true;
    down.close();
    if (up) up->close();
  }
  // Called by the sweep once the deadline has passed: a timeout while connecting or waiting
  // for a response head ends that attempt only (the client gets a 504, or another endpoint);
  // any other ends the connection.
  void expire() {
    if (upstreamOnly && up) {
      upTimedOut = true;
      up->close();
      deadline = Clock::time_point::max();
      return;
    }
    timedOut = true;
    deadline = Clock::time_point::max();
    down.close();
    if (up) up->close();
  }
};

// One timer per worker instead of one per connection: setting a deadline is a store, never a
// timer operation (a syscall when it becomes the earliest), and timeouts fire within kSweep.
constexpr std::chrono::milliseconds kSweep{100};

struct Target {
  // Outbound: a cluster and the endpoint picked; inbound: the local app.
  const Cluster* cluster = nullptr;
  const Endpoint* endpoint = nullptr;
  const LocalTarget* local = nullptr;
};

bool stillOpen(tcp::socket& s);
// What a ring hash balancer hashes for this request: the client's address or a header's value
// (none for other algorithms).
std::string_view hashInput(const Cluster& cluster, const h1::Head& req, std::string_view source);
// Whether a pool key names an endpoint of the snapshot (local ones always do).
bool knownKey(const Snapshot& snap, std::string_view key);
std::string serviceOf(std::string_view host);
int classOf(int status);
bool idempotent(std::string_view method);
void newRequestId(Worker& w, std::string& out);
// TCP connect, and to a peer the mTLS handshake (SNI the instance, ALPN `alpn`) with the check
// that the peer is the node the catalog names. No timeout of its own: the caller's.
awaitable<void> dial(Worker& w, Upstream& up, const Target& t, const unsigned char* alpn, std::size_t alpnLen,
                     error_code& ec);
// dial() under the connection's deadline (a timeout ends the attempt, not the connection).
awaitable<std::unique_ptr<Upstream>> connectUpstream(Worker& w, Conn& c, const Target& t, error_code& ec,
                                                     bool tunnel = false);
// The request filter phase, for both relays: the request id first (kept, or generated and sent
// on), so that every later phase can log it, then the filters. True when a filter answered
// (ctx.reply).
bool requestPhase(Worker& w, RequestContext& ctx, std::string_view requestId);
// The route phase of an outbound request. A Route for the host its authority names decides
// first: the first rule that matches splits by weight across services and subsets, or answers
// (redirect, direct response: ctx.reply set, null returned, `unknown` empty); its rewrites go to
// ctx.rewrittenPath / rewrittenAuthority and its header edits to ctx's field lists. Without a
// Route (or a rule that matches): the cluster the authority names or, for a connection redirected
// by iptables whose authority names no service, the original destination's. Sets ctx.service;
// none: null, the name asked for in `unknown`, and ctx.service cleared (one metrics series for
// every unknown name, not one each).
const Cluster* routeOutbound(Worker& w, const Snapshot& snap, const Conn& c, const h1::Head& req, RequestContext& ctx,
                             std::string& unknown);
// Outlier detection: what an attempt on `e` of `c` came to (a response's status; 0: none, the
// connection failed, was reset or timed out). Ejections are counted and logged.
void observe(Worker& w, const Cluster* c, const Endpoint* e, int status);
// The circuit breakers a request passes before its upstream select phase: its place among the
// cluster's requests in flight. False (ctx.overflow set, `why` the answer's body): over
// maxRequests, counted.
bool admitRequest(Worker& w, const Cluster& c, RequestContext& ctx, Slot& slot, std::string& why);
// A refusal by the limit `o`: counted, ctx.overflow set; the answer's body.
std::string overflowed(Worker& w, const Cluster& c, RequestContext& ctx, Overflow o);
// The inbound route phase's rate limits: the RateLimits guarding ctx.service take a token
// each. Refused: the answer's body (ctx.limited set, counted).
std::optional<std::string> rateLimited(Worker& w, const Snapshot& snap, RequestContext& ctx, const h1::Head& req);
// Worker 0's sweep: outlier detection's interval work for every cluster that has it.
void evaluateOutliers(Worker& w, Clock::time_point now);

// The egress phase: where an outbound request to an external host goes (d.kind go): the
// address (a STATIC one, or the name resolved; cached per worker), as a target the relays
// treat like a local instance's. `loop`: the address is one of this proxy's own listeners.
enum class ExternalResolve { ok, unresolved, loop };
awaitable<ExternalResolve> externalTarget(Worker& w, const EgressDecision& d, LocalTarget& out);
// The answer to a request whose external host did not resolve (503) or is this proxy (508).
struct Refusal {
  int status;
  std::string body;
  Failure failure;
};
Refusal externalRefusal(const EgressDecision& d, ExternalResolve r);

// A Route's tcp rules for a TCP connection (redirected by iptables, or CONNECT) to `cluster`'s
// service on `port`: the cluster of the first matching rule's destination, drawn by weight
// (ctx.service set), or `cluster` when none matches.
// `host`: the service (or Route host) the connection was for.
const Cluster* routeTcp(Worker& w, const Snapshot& snap, const Conn& c, const std::string& host, const Cluster* cluster,
                        std::uint16_t port, RequestContext& ctx);
// routeTcp for a CONNECT to `authority` (host:port): the host's tcp rules by the port.
const Cluster* routeConnect(Worker& w, const Snapshot& snap, const Conn& c, std::string_view authority,
                            const Cluster* cluster, RequestContext& ctx);

// The logging phase, for every request and every tunnel: filters, metrics, the access log.
void logPhase(Worker& w, RequestContext& ctx);

// A request body a Route's retries may send again is kept while it goes (as Envoy buffers one
// for its retries), up to this size; a larger one is not retried.
inline constexpr std::size_t kMaxReplayBody = 64 * 1024;

// A request body kept while it passes (for a Route's retries, or its mirror), up to
// kMaxReplayBody: past that nothing is kept any more.
struct KeptBody {
  bool keeping = false;
  std::string bytes;
  void start(std::string_view already) {
    keeping = true;
    bytes.assign(already);
  }
  // False once the body is over the limit (and from then on).
  bool append(std::string_view d) {
    if (!keeping) return false;
    bytes.append(d);
    if (bytes.size() <= kMaxReplayBody) return true;
    drop();
    return false;
  }
  void drop() {
    keeping = false;
    bytes = {};
  }
};

// A Route's timeout and retry policy as one request applies it, in either relay.
struct RoutePolicy {
  const RouteRule::Retry* retry = nullptr;  // null: no retries for this request
  const Cluster* cluster = nullptr;
  std::uint32_t retries = 0;
  Clock::time_point deadline = Clock::time_point::max();  // the Route's whole-request timeout
  bool inFlight = false;  // a retry's try is under way: counted in Worker::retrying
  Slot retrySlot;         // and in the cluster's retries (its maxRetries circuit breaker)

  // For a request ctx.route sent to `c`: retries only for a request whose body (if any) can be
  // sent again (`replayable`: none, or one kept up to kMaxReplayBody), and an idempotent one
  // unless the policy says otherwise.
  void setup(const RequestContext& ctx, const Cluster* c, std::string_view method, bool replayable);
  // When a try sent at `start` must have its response head: the proxy's `limit`, the per-try
  // timeout and the Route's deadline, whichever comes first.
  Clock::time_point tryDeadline(Clock::time_point start, std::chrono::milliseconds limit) const;
  // Whether another try may go now: tries left, time left, and the budget (fewer retries in
  // flight than the policy's share of the cluster's active requests, or than its minimum). A
  // refusal by the budget is counted.
  bool mayRetry(Worker& w) const;
  // Another try is decided: counted (metric, budget); returns the backoff to wait before it.
  std::chrono::milliseconds next(Worker& w);
  // The try under way ended (or the request did).
  void tryEnded(Worker& w);
};

// HTTP/2 (h2_relay.cc). serveH2 serves a downstream connection whose first bytes (the client's
// preface, or more) are in c->buf.
awaitable<void> serveH2(std::shared_ptr<Conn> c);
// An HTTP/1.1 request (head read, phases up to route done) relayed over HTTP/2: to a cluster's
// endpoint (h2 between proxies) or to a local HTTP/2 or gRPC app (h2c). Returns whether the
// client connection goes on.
// `pin`: the snapshot the request was routed on (cluster and ctx's pointers are into it).
awaitable<bool> relayH1ViaH2(std::shared_ptr<Conn> c, std::shared_ptr<const Snapshot> pin, h1::Head& req,
                             RequestContext& ctx, const Cluster* cluster,
                             const LocalTarget* local);
// A copy of a routed request (as it goes on: rewritten, with the phases' fields) to `mirror`
// over HTTP/2, its response discarded. A request with a body is copied once the body is whole
// (kept up to kMaxReplayBody; a larger one is not copied); at most kMaxMirrors in flight per
// worker: past that the copy is dropped (counted), never the request.
inline constexpr std::size_t kMaxMirrors = 1024;
// `body`: the request's whole body (kept up to kMaxReplayBody), for a request that has one.
void mirrorRequest(const std::shared_ptr<Conn>& c, std::shared_ptr<const Snapshot> pin, const Cluster& mirror,
                   const h1::Head& req, const RequestContext& ctx, std::optional<std::string> body = std::nullopt);
void sweepH2(Worker& w, Clock::time_point now, bool pools);  // timeouts; idle pooled connections
void pruneH2(Worker& w, const Snapshot& snap);                // endpoints gone: their connections go
void drainH2(Worker& w);                                      // GOAWAY everywhere
void stopH2(Worker& w);                                       // close everything now

}  // namespace mesh::proxy::detail
