#include "node/proxy/proxy.h"

#include <charconv>

#include "common/http/message.h"
#include "common/json_escape.h"
#include "node/identity/identity.h"
#include "node/proxy/http2.h"
#include "node/proxy/worker.h"

// From <linux/netfilter_ipv4.h>, which cannot be included beside <netinet/in.h>.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif

namespace mesh::proxy {

using namespace detail;

const char* directionName(Direction d) { return d == Direction::outbound ? "outbound" : "inbound"; }

const char* failureName(Failure f) {
  switch (f) {
    case Failure::none:
      return "none";
    case Failure::badRequest:
      return "bad_request";
    case Failure::headerTooLarge:
      return "header_too_large";
    case Failure::noRoute:
      return "no_route";
    case Failure::noEndpoint:
      return "no_healthy_endpoint";
    case Failure::connectFailed:
      return "connect_failed";
    case Failure::upstreamReset:
      return "upstream_reset";
    case Failure::upstreamTimeout:
      return "upstream_timeout";
    case Failure::badResponse:
      return "bad_response";
    case Failure::downstreamClosed:
      return "downstream_closed";
    case Failure::overflow:
      return "overflow";
    case Failure::rateLimited:
      return "rate_limited";
    case Failure::egressBlocked:
      return "egress_blocked";
    case Failure::loop:
      return "loop";
    case Failure::requestTimeout:
      return "request_timeout";
  }
  return "?";
}

namespace detail {


// ALPN between proxies says what a connection carries: HTTP/1.1 requests for the instance, or
// (mesh-tcp/1) a byte tunnel to it: a TCP service, a CONNECT. The inbound side splices a tunnel
// whatever the instance's protocol.
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outLen, const unsigned char* in, unsigned int inLen,
               void*) {
  const unsigned char* chosen = nullptr;
  for (unsigned int i = 0; i < inLen;) {
    const unsigned len = in[i];
    if (i + 1 + len > inLen) break;
    std::string_view p(reinterpret_cast<const char*>(in + i + 1), len);
    if (p == kTunnelProtocol) chosen = in + i;
    if ((p == "h2" || p == "http/1.1") && !chosen) chosen = in + i;
    i += 1 + len;
  }
  if (!chosen) return SSL_TLSEXT_ERR_NOACK;
  *out = chosen + 1;
  *outLen = chosen[0];
  return SSL_TLSEXT_ERR_OK;
}

std::string_view alpnOf(SSL* ssl) {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view{};
}
Worker::Worker(Shared& i, int idx)
    : impl(i),
      index(idx),
      balancer(0x9E3779B97F4A7C15ull * (idx + 1) ^
               static_cast<std::uint64_t>(Clock::now().time_since_epoch().count())) {}

const Snapshot& Worker::snapshot() {
  auto v = impl.published.load(std::memory_order_acquire);
  if (v != snapVersion) {
    std::lock_guard lock(impl.snapMu);
    snap = impl.snap;
    snapVersion = v;
    // Endpoints gone from the mesh (a dead node, a removed instance) lose their idle
    // connections at once.
    for (auto it = pool.begin(); it != pool.end();) {
      if (!knownKey(*snap, it->first)) {
        impl.upstreamIdle -= static_cast<std::int64_t>(it->second.size());
        impl.upstreamOpen[0] -= static_cast<std::int64_t>(it->second.size());
        it = pool.erase(it);
      } else {
        ++it;
      }
    }
    pruneH2(*this, *snap);
  }
  return *snap;
}

std::string_view hashInput(const Cluster& cluster, const h1::Head& req, std::string_view source) {
  if (cluster.lb.algorithm != Algorithm::ringHash) return {};
  if (cluster.lb.hashSource) return source;
  if (cluster.lb.hashHeader.empty()) return {};
  auto v = req.find(cluster.lb.hashHeader);
  return v ? *v : std::string_view{};
}

bool knownKey(const Snapshot& snap, std::string_view key) {
  if (key.starts_with("local:") || key.starts_with("ext:")) return true;
  for (const auto& [name, c] : snap.clusters) {
    for (const auto& e : c->endpoints) {
      if (e.key == key) return true;
    }
  }
  return false;
}

ServiceSeries& Worker::seriesFor(Direction d, std::string_view service) {
  std::string key;
  key.reserve(service.size() + 2);
  key.push_back(d == Direction::outbound ? 'o' : 'i');
  key.append(service);
  auto it = series.find(key);
  if (it != series.end()) return it->second;
  ServiceSeries s;
  static const char* kClasses[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  const std::string svc = service.empty() ? std::string("unknown") : std::string(service);
  for (int c = 0; c < 6; ++c) {
    s.byClass[c] =
        &impl.registry.counter("mesh_proxy_requests_total", "Requests by direction, service and response class.",
                               {{"direction", directionName(d)}, {"service", svc}, {"class", kClasses[c]}});
  }
  s.duration = &impl.registry.histogram("mesh_proxy_request_duration_seconds",
                                        "Downstream latency: the request head read to the response's last byte.",
                                        metrics::latencyBuckets(), {{"direction", directionName(d)}, {"service", svc}});
  s.upstream = &impl.registry.histogram("mesh_proxy_upstream_duration_seconds",
                                        "Upstream latency: the request sent to the response head received.",
                                        metrics::latencyBuckets(), {{"direction", directionName(d)}, {"service", svc}});
  return series.emplace(std::move(key), s).first->second;
}

// Whether an idle connection is still usable: the peer has neither closed it nor sent anything
// (a TLS close_notify, stray bytes). Apps close idle keep-alive connections on their own clocks
// (Node.js after 5 s); a request written to one is lost, and one with a body cannot go again.
// One non-blocking peek, only for connections idle 200 ms or more (under load they are not).
bool stillOpen(tcp::socket& s) {
  char b;
  auto n = ::recv(s.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::unique_ptr<Upstream> Worker::take(const std::string& key, const Cluster* cluster) {
  auto it = pool.find(key);
  if (it == pool.end()) return nullptr;
  auto now = Clock::now();
  while (!it->second.empty()) {
    auto up = std::move(it->second.back());
    it->second.pop_back();
    --impl.upstreamIdle;
    if (now - up->idleSince < up->idleLimit(impl.opt.poolIdleTimeout) && up->stream.isOpen() &&
        (now - up->idleSince < std::chrono::milliseconds(200) || stillOpen(up->stream.socket()))) {
      if (cluster && up->conn.state() != cluster->state.get()) {
        // Another cluster's (the service's, for a subset's request, or the other way round).
        if (!ClusterState::tryAcquire(cluster->state->connections, cluster->limits.maxConnections)) {
          it->second.push_back(std::move(up));
          ++impl.upstreamIdle;
          return nullptr;
        }
        up->conn = Slot(cluster->state, &cluster->state->connections);
        up->idleTimeout = cluster->limits.idleTimeout;
      }
      up->reused = true;
      return up;
    }
    --impl.upstreamOpen[up->stream.tls() ? 0 : 1];
  }
  return nullptr;
}

// A pooled connection of a cluster whose requests wait for a connection (its maxConnections
// reached) makes room for one of them, whichever worker or endpoint it is for.
bool wantedElsewhere(const Upstream& up) {
  const auto* st = up.conn.state();
  return st && st->waiting.load(std::memory_order_relaxed) > 0;
}

void Worker::giveBack(std::unique_ptr<Upstream> up) {
  auto& v = pool[up->key];
  if (draining || v.size() >= impl.opt.maxIdlePerEndpoint || !up->buf.empty() || wantedElsewhere(*up)) {
    --impl.upstreamOpen[up->stream.tls() ? 0 : 1];
    return;
  }
  up->idleSince = Clock::now();
  ++impl.upstreamIdle;
  v.push_back(std::move(up));
}

void Worker::releaseForPending() {
  for (auto& [key, v] : pool) {
    std::erase_if(v, [&](const std::unique_ptr<Upstream>& up) {
      if (!wantedElsewhere(*up)) return false;
      --impl.upstreamIdle;
      --impl.upstreamOpen[up->stream.tls() ? 0 : 1];
      return true;
    });
  }
}

void Worker::sweepPool(bool all) {
  auto now = Clock::now();
  for (auto& [key, v] : pool) {
    std::erase_if(v, [&](const std::unique_ptr<Upstream>& up) {
      bool drop = all || now - up->idleSince >= up->idleLimit(impl.opt.poolIdleTimeout);
      if (drop) {
        --impl.upstreamIdle;
        --impl.upstreamOpen[up->stream.tls() ? 0 : 1];
      }
      return drop;
    });
  }
}

// Rebases a head's views from one copy of its bytes to another.
void relocate(h1::Head& h, const char* from, const char* to) {
  auto mv = [&](std::string_view& v) {
    if (v.data() >= from && v.data() < from + h.headBytes) v = {to + (v.data() - from), v.size()};
  };
  mv(h.method);
  mv(h.target);
  mv(h.reason);
  mv(h.host);
  mv(h.path);
  mv(h.requestId);
  for (auto& f : h.headers) {
    mv(f.name);
    mv(f.value);
  }
}

std::string serviceOf(std::string_view host) {
  // "reviews", "reviews:9080", "reviews.mesh", "Reviews.mesh:80" all name reviews.
  if (auto colon = host.rfind(':'); colon != std::string_view::npos && host.find(']') == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string s(host);
  for (auto& c : s) c = http::asciiLower(c);
  if (s.size() > 5 && s.ends_with(".mesh")) s.resize(s.size() - 5);
  return s;
}

int classOf(int status) { return status >= 100 && status < 600 ? status / 100 : 0; }

bool idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

// 128 random bits as a UUID v4 (what Envoy and nginx generate), written into `out`.
void newRequestId(Worker& w, std::string& out) {
  static thread_local std::uint64_t s = 0x853c49e6748fea9bull ^
                                        static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
                                        (static_cast<std::uint64_t>(w.index) << 32);
  auto next = [&] {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  };
  std::uint64_t a = next(), b = next();
  a = (a & 0xFFFFFFFFFFFF0FFFull) | 0x4000;                 // version 4
  b = (b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // variant 10
  static constexpr char kHex[] = "0123456789abcdef";
  out.resize(36);
  int pos = 0;
  auto put = [&](std::uint64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i) out[static_cast<std::size_t>(pos + i)] = kHex[v & 0xF], v >>= 4;
    pos += digits;
  };
  put(a >> 32, 8);
  out[static_cast<std::size_t>(pos++)] = '-';
  put((a >> 16) & 0xFFFF, 4);
  out[static_cast<std::size_t>(pos++)] = '-';
  put(a & 0xFFFF, 4);
  out[static_cast<std::size_t>(pos++)] = '-';
  put(b >> 48, 4);
  out[static_cast<std::size_t>(pos++)] = '-';
  put(b & 0xFFFFFFFFFFFFull, 12);
}

// Copies one direction of a tunnel until EOF or error, then half-closes the other side.
awaitable<void> pump(Stream& from, Stream& to, std::shared_ptr<Conn> c, std::uint64_t& bytes) {
  std::vector<char> b(16 * 1024);
  for (;;) {
    error_code ec;
    auto n = co_await from.read(asio::buffer(b), ec);
    if (n > 0) {
      c->after(c->worker.impl.opt.idleTimeout);
      error_code wec;
      co_await to.write(asio::buffer(b.data(), n), wec);
      if (wec) break;
      bytes += n;
    }
    if (ec) break;
  }
  to.shutdownSend();
}

// Both directions of a tunnel (WebSocket after 101, raw TCP); `pending` holds bytes already
// read from the downstream that belong to the upstream.
awaitable<void> tunnel(std::shared_ptr<Conn> c, Stream& up, std::string_view pendingDown, std::string_view pendingUp,
                       std::uint64_t& sent, std::uint64_t& received) {
  error_code ec;
  if (!pendingDown.empty()) co_await up.write(asio::buffer(pendingDown.data(), pendingDown.size()), ec);
  if (!ec && !pendingUp.empty()) co_await c->down.write(asio::buffer(pendingUp.data(), pendingUp.size()), ec);
  if (ec) co_return;
  c->after(c->worker.impl.opt.idleTimeout);
  // The other direction runs beside this one; when both have ended the connection closes.
  auto ex = co_await asio::this_coro::executor;
  auto done = std::make_shared<asio::steady_timer>(ex, Clock::time_point::max());
  auto remaining = std::make_shared<int>(2);
  auto finish = [done, remaining] {
    if (--*remaining == 0) done->cancel();
  };
  asio::co_spawn(ex, pump(up, c->down, c, received), [finish](std::exception_ptr) { finish(); });
  co_await pump(c->down, up, c, sent);
  finish();
  if (*remaining > 0) {
    co_await done->async_wait(tok(ec));
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// The HTTP/1.1 relay: one downstream connection, requests in turn (pipelined ones too).

namespace detail {


awaitable<void> dial(Worker& w, Upstream& up, const Target& t, const unsigned char* alpn, std::size_t alpnLen,
                     error_code& ec) {
  auto& impl = w.impl;
  const HostPort& to = t.endpoint ? t.endpoint->inbound : t.local->address;
  tcp::endpoint ep(asio::ip::make_address(to.host, ec), to.port);
  if (ec) co_return;
  co_await up.stream.socket().async_connect(ep, tok(ec));
  if (!ec) {
    up.stream.socket().set_option(tcp::no_delay(true), ec);
    ec = {};
  }
  if (!ec && t.local && t.local->tls) {
    // TLS origination to an external host: its certificate verified for its name.
    SSL* ssl = up.stream.ssl();
    SSL_set_tlsext_host_name(ssl, t.local->sni.c_str());
    SSL_set1_host(ssl, t.local->sni.c_str());
    static constexpr unsigned char kH1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(ssl, kH1, sizeof kH1);
    co_await up.stream.tls()->async_handshake(asio::ssl::stream_base::client, tok(ec));
    if (ec) {
      impl.log->warn("TLS to external host {} ({}) failed: {}", t.local->sni, to.toString(), ec.message());
    }
    co_return;
  }
  if (ec || !t.endpoint) co_return;
  // SNI names the instance to the peer's inbound listener; the peer must prove it is the node
  // the catalog says runs it.
  SSL_set_tlsext_host_name(up.stream.ssl(), t.endpoint->instanceId.c_str());
  SSL_set_alpn_protos(up.stream.ssl(), alpn, static_cast<unsigned>(alpnLen));
  co_await up.stream.tls()->async_handshake(asio::ssl::stream_base::client, tok(ec));
  if (!ec) {
    auto id = impl.tls->peerIdentity(up.stream.ssl());
    if (!id || *id != identity::nodeSpiffeId(impl.tls->trustDomain(), t.endpoint->node)) {
      impl.log->warn("peer {} at {} presented {}, not its own identity", t.endpoint->node, to.toString(),
                     id ? *id : id.error().message());
      ec = asio::error::access_denied;
    }
  }
  (ec ? impl.handshakeClientFail : impl.handshakeClientOk)->inc();
}

awaitable<std::unique_ptr<Upstream>> connectUpstream(Worker& w, Conn& c, const Target& t, error_code& ec,
                                                     bool tunnel) {
  auto& impl = w.impl;
  const int dir = t.endpoint ? 0 : 1;
  auto saved = c.deadline;
  c.after(t.cluster && t.cluster->limits.connectTimeout.count() > 0 ? t.cluster->limits.connectTimeout
                                                                    : impl.opt.connectTimeout);
  std::unique_ptr<Upstream> up;
  if (t.endpoint) {
    up = std::make_unique<Upstream>(tcp::socket(w.io), *w.clientCtx);
    up->key = t.endpoint->key;
    if (t.cluster) up->idleTimeout = t.cluster->limits.idleTimeout;
  } else if (t.local->tls) {
    up = std::make_unique<Upstream>(tcp::socket(w.io), *w.egressCtx);
    up->key = t.local->poolKey;
  } else {
    up = std::make_unique<Upstream>(tcp::socket(w.io));
    up->key = t.local->poolKey;
  }
  c.up = &up->stream;
  c.upstreamOnly = true;
  c.upTimedOut = false;
  if (tunnel)
    co_await dial(w, *up, t, kAlpnTunnel, sizeof kAlpnTunnel, ec);
  else
    co_await dial(w, *up, t, kAlpnHttp, sizeof kAlpnHttp, ec);
  c.up = nullptr;
  c.upstreamOnly = false;
  if (c.upTimedOut) {
    // The connect timeout fired: the downstream is still good; only this attempt failed.
    c.upTimedOut = false;
    ec = asio::error::timed_out;
  }
  c.setDeadline(saved);
  if (ec) {
    impl.connectFail[dir]->inc();
    co_return nullptr;
  }
  impl.connectOk[dir]->inc();
  ++impl.upstreamOpen[up->stream.tls() ? 0 : 1];  // as every release counts it down
  co_return up;
}

void accessLog(Shared& impl, const RequestContext& ctx);
std::string isoNow();

bool requestPhase(Worker& w, RequestContext& ctx, std::string_view requestId) {
  if (!requestId.empty()) {
    ctx.requestId.assign(requestId);
  } else {
    newRequestId(w, ctx.requestId);
    ctx.upstreamHeaders.push_back({"x-request-id", ctx.requestId});
  }
  for (auto& f : w.impl.filters) {
    f->onRequest(ctx);
    if (ctx.reply.status) return true;
  }
  return false;
}

namespace {

void applyEdit(const HeaderEdit& e, std::vector<h1::Header>& set, h1::FieldEdits& edits) {
  // "set" replaces what the request or response carries under the name (the writers drop a
  // field that the phases give again); "add" goes beside it; "remove" leaves it out.
  for (const auto& [name, value] : e.set) set.push_back({name, value});
  for (const auto& [name, value] : e.add) edits.add.push_back({name, value});
  for (const auto& name : e.remove) edits.remove.push_back(name);
}

}  // namespace

const Cluster* routeOutbound(Worker& w, const Snapshot& snap, const Conn& c, const h1::Head& req, RequestContext& ctx,
                             std::string& unknown) {
  ctx.service = serviceOf(req.host);
  // A CONNECT is a TCP connection: the Route's tcp rules decide (routeTcp), not its http rules.
  const RouteTable* table = req.method == "CONNECT" ? nullptr : snap.route(ctx.service);
  if (table) {
    const RouteMatch* matched = nullptr;
    if (const RouteRule* rule = table->match(req, &matched)) {
      ctx.route = rule;
      if (rule->direct) {
        ctx.reply.status = rule->direct->status;
        ctx.reply.body = rule->direct->body;
        applyEdit(rule->headers.response, ctx.downstreamHeaders, ctx.downstreamEdits);
        return nullptr;
      }
      if (rule->redirect) {
        ctx.reply.status = rule->redirect->status;
        ctx.reply.location = redirectLocation(*rule->redirect, req);
        ctx.downstreamHeaders.push_back({"location", ctx.reply.location});
        applyEdit(rule->headers.response, ctx.downstreamHeaders, ctx.downstreamEdits);
        return nullptr;
      }
      const RouteDestination* d = pickDestination(*rule, w.balancer.draw());
      if (!d) {
        unknown = ctx.service;
        ctx.service.clear();
        return nullptr;
      }
      ctx.service = d->service;
      if (rule->fault && faultApplies(*rule->fault, req)) {
        const auto& f = *rule->fault;
        if (f.delay.count() > 0 && withinPercent(f.delayPercent, w.balancer.draw())) {
          ctx.faultDelay = f.delay;
          w.impl.faults[1]->inc();
        }
        if ((f.httpStatus || f.grpcStatus) && withinPercent(f.abortPercent, w.balancer.draw())) {
          ctx.reply.status = f.grpcStatus ? 200 : f.httpStatus;
          ctx.reply.grpcStatus = f.grpcStatus;
          ctx.reply.body = f.grpcStatus ? "" : "fault injected by " + table->document + " rule " + rule->name;
          w.impl.faults[0]->inc();
          return nullptr;
        }
      }
      const Cluster* cluster = snap.find(*d);
      if (!cluster) {
        unknown = d->key;
        ctx.service.clear();
        return nullptr;
      }
      if (rule->mirror && withinPercent(rule->mirrorPercent, w.balancer.draw())) {
        // A mirror that is not known (yet) is skipped: it never affects the request itself.
        ctx.mirror = snap.find(*rule->mirror);
      }
      if (!rule->rewriteUri.empty()) ctx.rewrittenPath = rewritePath(*rule, matched, req);
      if (!rule->rewriteAuthority.empty()) {
        ctx.rewrittenAuthority = rule->rewriteAuthority;
        ctx.upstreamHeaders.push_back({"Host", rule->rewriteAuthority});
      }
      applyEdit(rule->headers.request, ctx.upstreamHeaders, ctx.upstreamEdits);
      applyEdit(d->headers.request, ctx.upstreamHeaders, ctx.upstreamEdits);
      applyEdit(rule->headers.response, ctx.downstreamHeaders, ctx.downstreamEdits);
      applyEdit(d->headers.response, ctx.downstreamHeaders, ctx.downstreamEdits);
      return cluster;
    }
  }
  const Cluster* cluster = snap.find(ctx.service);
  if (!cluster && !c.redirectedTo.empty()) {
    // Redirected by iptables with a Host that names no service (the app dialed an address).
    ctx.service = c.redirectedTo;
    cluster = snap.find(ctx.service);
  }
  if (!cluster) {
    unknown = std::move(ctx.service);
    ctx.service.clear();
  }
  return cluster;
}

const Cluster* routeTcp(Worker& w, const Snapshot& snap, const Conn& c, const std::string& host, const Cluster* cluster,
                        std::uint16_t port, RequestContext& ctx) {
  const RouteTable* table = snap.route(host);
  if (!table || table->tcp.empty()) return cluster;
  // The calling app's service: this node's instances at the connection's source address.
  std::vector<std::string_view> sources;
  for (const auto& [id, t] : snap.local) {
    if (t.address.host == c.sourceAddress) sources.push_back(t.service);
  }
  const TcpRouteRule* rule = table->matchTcp(port, sources);
  if (!rule) return cluster;
  const RouteDestination* d = pickDestination(*rule, w.balancer.draw());
  const Cluster* to = d ? snap.find(*d) : nullptr;
  if (!to) return cluster;  // a reference validation let through (the Route keeps its last table otherwise)
  ctx.service = to->service;
  ctx.reply = {};  // the tcp rule decides, not an http rule's answer
  return to;
}

const Cluster* routeConnect(Worker& w, const Snapshot& snap, const Conn& c, std::string_view authority,
                            const Cluster* cluster, RequestContext& ctx) {
  // Whether or not the host is a catalog service: its Route's tcp rules may name one.
  std::uint16_t port = 0;
  if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    std::from_chars(authority.data() + colon + 1, authority.data() + authority.size(), port);
  }
  return routeTcp(w, snap, c, serviceOf(authority), cluster, port, ctx);
}

void RoutePolicy::setup(const RequestContext& ctx, const Cluster* c, std::string_view method, bool replayable) {
  *this = {};
  if (!ctx.route || !c) return;
  cluster = c;
  if (ctx.route->timeout.count() > 0) deadline = ctx.start + ctx.route->timeout;
  if (ctx.route->retry && replayable && (idempotent(method) || ctx.route->retry->nonIdempotent))
    retry = &*ctx.route->retry;
}

Clock::time_point RoutePolicy::tryDeadline(Clock::time_point start, std::chrono::milliseconds limit) const {
  auto d = start + limit;
  if (retry && retry->perTryTimeout.count() > 0) d = std::min(d, start + retry->perTryTimeout);
  return std::min(d, deadline);
}

bool RoutePolicy::mayRetry(Worker& w) const {
  if (!retry || !cluster || retries >= retry->attempts || Clock::now() >= deadline) return false;
  if (!inFlight && cluster->limits.maxRetries > 0 &&
      cluster->state->retries.load(std::memory_order_relaxed) >= cluster->limits.maxRetries) {
    // The cluster's retry circuit breaker: the failure goes to the caller as it is.
    w.impl.overflows[static_cast<int>(Overflow::maxRetries)]->inc();
    return false;
  }
  std::uint64_t active = 0;
  for (const auto& e : cluster->endpoints) active += w.balancer.active(e.key);
  auto it = w.retrying.find(cluster->key);
  const double inFlightNow = it == w.retrying.end() ? 0 : it->second;
  if (inFlightNow < std::max<double>(retry->minConcurrency, retry->budgetPercent / 100.0 * static_cast<double>(active)))
    return true;
  w.impl.routeRetries[1]->inc();
  return false;
}

std::chrono::milliseconds RoutePolicy::next(Worker& w) {
  ++retries;
  w.impl.routeRetries[0]->inc();
  if (!inFlight) {
    ++w.retrying[cluster->key];
    inFlight = true;
    cluster->state->retries.fetch_add(1, std::memory_order_relaxed);
    retrySlot = Slot(cluster->state, &cluster->state->retries);
  }
  return retry->backoff(static_cast<int>(retries), w.balancer.draw());
}

void RoutePolicy::tryEnded(Worker& w) {
  if (!inFlight) return;
  inFlight = false;
  retrySlot.release();
  auto it = w.retrying.find(cluster->key);
  if (it != w.retrying.end() && it->second > 0) --it->second;
}

void observe(Worker& w, const Cluster* c, const Endpoint* e, int status) {
  if (!c || !e || !e->health || !c->outlier.enabled()) return;
  auto why = c->state->record(c->outlier, *e->health, outcomeOf(status), c->health, Clock::now());
  if (why == Ejection::none) return;
  w.impl.ejections[static_cast<int>(why)]->inc();
  w.impl.log->info("outlier detection ejected {} from {} ({}, ejection {} of it)", e->key, c->key, ejectionName(why),
                   e->health->ejections.load());
}

std::string overflowed(Worker& w, const Cluster& c, RequestContext& ctx, Overflow o) {
  w.impl.overflows[static_cast<int>(o)]->inc();
  ctx.overflow = overflowName(o);
  const auto& l = c.limits;
  const auto limit = o == Overflow::maxConnections       ? l.maxConnections
                     : o == Overflow::maxPendingRequests ? l.maxPendingRequests
                     : o == Overflow::maxRequests        ? l.maxRequests
                                                         : l.maxRetries;
  return "circuit breaker open: '" + c.key + "' is at its " + overflowName(o) + " (" + std::to_string(limit) + ")";
}

bool admitRequest(Worker& w, const Cluster& c, RequestContext& ctx, Slot& slot, std::string& why) {
  if (!ClusterState::tryAcquire(c.state->requests, c.limits.maxRequests)) {
    why = overflowed(w, c, ctx, Overflow::maxRequests);
    return false;
  }
  slot = Slot(c.state, &c.state->requests);
  return true;
}

std::optional<std::string> rateLimited(Worker& w, const Snapshot& snap, RequestContext& ctx, const h1::Head& req) {
  auto [own, all] = snap.rateLimitsFor(ctx.service);
  if (!own && !all) return std::nullopt;
  const auto now = Clock::now();
  for (const auto* table : {own, all}) {
    if (!table) continue;
    auto refusal = table->check(req, ctx.service, ctx.peerIdentity, now);
    if (!refusal) continue;
    // Retry-After in whole seconds, at least 1 (RFC 9110 section 10.2.3).
    const auto secs = std::max<std::int64_t>(1, (refusal->retryAfter.count() + 999) / 1000);
    ctx.limited.retryAfter = std::to_string(secs);
    ctx.limited.rule = table->document + "#" + refusal->rule->name;
    w.impl.registry
        .counter("mesh_proxy_rate_limited_total", "Requests a RateLimit refused (429), by service and rule.",
                 {{"service", ctx.service}, {"rule", ctx.limited.rule}})
        .inc();
    return "rate limited by " + ctx.limited.rule + " (" + std::to_string(refusal->rule->requestsPerUnit) + " per " +
           (refusal->rule->unit.count() == 1 ? "second" : refusal->rule->unit.count() == 60 ? "minute" : "hour") +
           (refusal->rule->mesh ? ", mesh-wide" : "") + ")";
  }
  return std::nullopt;
}

Refusal externalRefusal(const EgressDecision& d, ExternalResolve r) {
  if (r == ExternalResolve::loop) {
    return {508,
            "'" + d.host + ":" + std::to_string(d.port) +
                "' is this proxy's own listener: name a service or an external host",
            Failure::loop};
  }
  return {503, "external host '" + d.host + "' does not resolve", Failure::connectFailed};
}

awaitable<ExternalResolve> externalTarget(Worker& w, const EgressDecision& d, LocalTarget& out) {
  std::string address = d.address;
  if (address.empty()) {
    const auto now = Clock::now();
    auto it = w.dns.find(d.host);
    if (it != w.dns.end() && it->second.expires > now) {
      address = it->second.address;
    } else {
      tcp::resolver resolver(w.io);
      error_code ec;
      auto results = co_await resolver.async_resolve(d.host, "", tok(ec));
      if (!ec) {
        for (const auto& r : results) {
          address = r.endpoint().address().to_string();
          if (r.endpoint().address().is_v4()) break;  // v4 first: loopback-only hosts have no v6 route
        }
      }
      if (w.dns.size() >= 4096) w.dns.clear();
      // A name that does not resolve is asked again after 5 s, one that does after 30 s.
      w.dns[d.host] = {address, now + (address.empty() ? std::chrono::seconds(5) : std::chrono::seconds(30))};
    }
    if (address.empty()) co_return ExternalResolve::unresolved;
  }
  auto at = parseHostPort((address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" +
                          std::to_string(d.port));
  if (!at) co_return ExternalResolve::unresolved;
  if (ownListener({&w.impl.outboundBound, &w.impl.inboundBound}, *at)) co_return ExternalResolve::loop;
  out = LocalTarget{};
  out.service = d.service;
  out.address = *at;
  out.external = true;
  out.tls = d.tls;
  out.sni = d.sni;
  // Connections pool by everything they were made with: a TLS one verified another name.
  out.poolKey = "ext:" + d.host + ":" + std::to_string(d.port) + (d.tls ? "+tls:" + d.sni : "") + "@" + at->toString();
  co_return ExternalResolve::ok;
}

void evaluateOutliers(Worker& w, Clock::time_point now) {
  std::shared_ptr<const Snapshot> snap;
  {
    std::lock_guard lock(w.impl.snapMu);
    snap = w.impl.snap;
  }
  if (!snap) return;
  for (const auto* c : snap->outlierClusters) {
    auto ev = c->state->evaluate(c->outlier, c->health, now);
    if (ev.returned) w.impl.ejectionsEnded->inc(static_cast<std::uint64_t>(ev.returned));
    if (ev.ejected) {
      w.impl.ejections[static_cast<int>(Ejection::successRate)]->inc(static_cast<std::uint64_t>(ev.ejected));
      w.impl.log->info("outlier detection ejected {} endpoint(s) of {} by success rate", ev.ejected, c->key);
    }
  }
}

void logPhase(Worker& w, RequestContext& ctx) {
  auto& impl = w.impl;
  ctx.end = Clock::now();
  for (auto& f : impl.filters) f->onLog(ctx);
  auto& s = w.seriesFor(ctx.direction, ctx.service);
  s.byClass[classOf(ctx.status)]->inc();
  s.duration->observe(std::chrono::duration<double>(ctx.end - ctx.start).count());
  if (ctx.upstreamHead > ctx.upstreamStart) {
    s.upstream->observe(std::chrono::duration<double>(ctx.upstreamHead - ctx.upstreamStart).count());
  }
  if (ctx.failure != Failure::none) impl.errors(ctx.direction, ctx.failure).inc();
  if (impl.access) accessLog(impl, ctx);
}

void accessLog(Shared& impl, const RequestContext& ctx) {
  auto us = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
  const auto* r = ctx.request;
  auto field = [&](std::string_view name) -> std::string_view {
    if (!r) return {};
    auto v = r->find(name);
    return v ? *v : std::string_view{};
  };
  std::string line;
  line.reserve(512);
  auto str = [&](const char* key, std::string_view v) {
    line.append(line.empty() ? "{\"" : ",\"").append(key).append("\":\"");
    appendJsonEscaped(line, v);
    line.push_back('"');
  };
  auto num = [&](const char* key, long long v) {
    line.append(",\"").append(key).append("\":").append(std::to_string(v));
  };
  str("time", isoNow());
  str("direction", directionName(ctx.direction));
  str("method", r ? r->method : "");
  str("path", r ? r->path : "");
  str("authority", r ? r->host : "");
  str("service", ctx.service);
  num("status", ctx.status);
  str("error", ctx.failure == Failure::none ? "" : failureName(ctx.failure));
  str("upstream", ctx.endpoint ? std::string_view(ctx.endpoint->key) : std::string_view{});
  num("attempts", ctx.attempts);
  num("request_bytes", static_cast<long long>(ctx.requestBytes));
  num("response_bytes", static_cast<long long>(ctx.responseBytes));
  num("duration_us", us(ctx.end - ctx.start));
  num("upstream_us", ctx.upstreamHead > ctx.upstreamStart ? us(ctx.upstreamHead - ctx.upstreamStart) : 0);
  str("request_id", ctx.requestId);
  str("traceparent", field("traceparent"));
  str("b3_trace_id", field("x-b3-traceid"));
  str("peer", ctx.peerIdentity);
  str("source", ctx.sourceAddress);
  line.append("}\n");
  std::lock_guard lock(impl.accessMu);
  std::fwrite(line.data(), 1, line.size(), impl.access);
  std::fflush(impl.access);
}

std::string isoNow() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return out;
}

// Relays a body of the given framing from `in` (its buffer first) to `out`. Returns false
// when either side failed (ctx.failure says which).

class Relay {
 public:
  Relay(std::shared_ptr<Conn> c) : c_(std::move(c)), w_(c_->worker), impl_(w_.impl) {}

  awaitable<void> run() {
    for (;;) {
      h1::Head req;
      bool keep = co_await one(req);
      if (!keep || c_->closed) break;
    }
  }

 private:
  // Reads more downstream bytes; false on EOF, error or timeout.
  awaitable<bool> readDown() {
    error_code ec;
    auto n = co_await c_->down.read(c_->buf.prepare(), ec);
    c_->buf.commit(n);
    co_return n > 0 || !ec;
  }

  awaitable<bool> writeDown(std::string_view bytes, RequestContext& ctx) {
    error_code ec;
    co_await c_->down.write(asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec && ctx.failure == Failure::none) ctx.failure = Failure::downstreamClosed;
    co_return !ec;
  }

  // A response the proxy makes itself; the connection stays only when the request had no
  // body left unread.
  awaitable<bool> answer(RequestContext& ctx, const h1::Head& req, int status, std::string body, Failure f) {
    ctx.status = status;
    ctx.failure = f;
    const bool keep = req.keepAlive && req.framing == h1::Framing::none && !w_.draining;
    std::vector<h1::Header> extra;
    if (f != Failure::none) extra.push_back({"x-mesh-error", failureName(f)});
    if (f == Failure::overflow && ctx.overflow) extra.push_back({"x-mesh-overflow", ctx.overflow});
    if (f == Failure::rateLimited) {
      extra.push_back({"retry-after", ctx.limited.retryAfter});
      extra.push_back({"x-mesh-ratelimit", ctx.limited.rule});
    }
    for (const auto& h : ctx.downstreamHeaders) extra.push_back(h);
    for (const auto& h : ctx.downstreamEdits.add) extra.push_back(h);
    std::string grpc;
    if (f == Failure::none && ctx.reply.grpcStatus) {
      // A gRPC status for an HTTP/1.1 caller: the fields a trailers-only response would carry.
      grpc = std::to_string(ctx.reply.grpcStatus);
      extra.push_back({"grpc-status", grpc});
      extra.push_back({"grpc-message", "fault injected"});
    }
    // The proxy's own errors end in a newline (for curl); a policy's answer goes as written.
    auto bytes = h1::simpleResponse(status, f == Failure::none ? body : body + "\n", keep, extra);
    ctx.responseBytes = bytes.size();
    bool ok = co_await writeDown(bytes, ctx);
    co_return keep&& ok;
  }

  // Where a body stands: how much of it is still to come, by its framing.
  struct BodyState {
    explicit BodyState(const h1::Head& h)
        : framing(h.framing), left(h.framing == h1::Framing::length ? h.contentLength : 0) {
      done = framing == h1::Framing::none || framing == h1::Framing::tunnel ||
             (framing == h1::Framing::length && left == 0);
    }
    // How many of `bytes` belong to the body; sets done at its end, error on bad chunking.
    std::size_t take(std::string_view bytes) {
      std::size_t n = 0;
      switch (framing) {
        case h1::Framing::length:
          n = static_cast<std::size_t>(std::min<std::uint64_t>(left, bytes.size()));
          left -= n;
          done = left == 0;
          break;
        case h1::Framing::chunked: {
          auto s = scanner.feed(bytes);
          error = s.error;
          n = s.used;
          done = s.done;
          break;
        }
        case h1::Framing::untilClose:
          n = bytes.size();
          break;
        default:
          done = true;
      }
      return n;
    }
    h1::Framing framing;
    std::uint64_t left;
    h1::ChunkedScanner scanner;
    bool done = false, error = false;
  };

  // Sends a head and, in the same write, what of its body is already buffered (one TLS record
  // and one syscall instead of two for most messages).
  awaitable<bool> writeHeadAndBody(Stream& out, std::string& head, Buffer& inBuf, BodyState& st, bool fromDown,
                                   RequestContext& ctx, std::uint64_t& counted) {
    const std::size_t headSize = head.size();
    if (!st.done && !inBuf.empty()) {
      auto n = st.take(inBuf.view());
      if (st.error) {
        ctx.failure = fromDown ? Failure::badRequest : Failure::badResponse;
        co_return false;
      }
      head.append(inBuf.view().substr(0, n));
      inBuf.consume(n);
    }
    error_code ec;
    co_await out.write(asio::buffer(head), ec);
    if (ec) {
      ctx.failure = fromDown ? Failure::upstreamReset : Failure::downstreamClosed;
      co_return false;
    }
    counted += head.size() - (fromDown ? headSize : 0);
    co_return true;
  }

  // Relays the rest of a body from `in` (its buffer first) to `out`. Returns false when either
  // side failed (ctx.failure says which).
  awaitable<bool> relayBody(Stream& in, Buffer& inBuf, Stream& out, BodyState& st, bool fromDown, RequestContext& ctx,
                            std::uint64_t& counted) {
    while (!st.done) {
      if (!inBuf.empty()) {
        auto view = inBuf.view();
        const auto n = st.take(view);
        if (st.error) {
          ctx.failure = fromDown ? Failure::badRequest : Failure::badResponse;
          co_return false;
        }
        error_code ec;
        co_await out.write(asio::buffer(view.data(), n), ec);
        if (ec) {
          ctx.failure = fromDown ? Failure::upstreamReset : Failure::downstreamClosed;
          co_return false;
        }
        inBuf.consume(n);
        counted += n;
        continue;
      }
      c_->after(impl_.opt.bodyTimeout);
      error_code ec;
      auto n = co_await in.read(inBuf.prepare(), ec);
      inBuf.commit(n);
      if (n == 0 && ec) {
        if (st.framing == h1::Framing::untilClose && !fromDown && !c_->timedOut) co_return true;
        ctx.failure = c_->timedOut ? (fromDown ? Failure::requestTimeout : Failure::upstreamTimeout)
                                   : (fromDown ? Failure::downstreamClosed : Failure::upstreamReset);
        co_return false;
      }
    }
    co_return true;
  }

  // Before a new connection to an endpoint of `cl`: its place among the cluster's pending
  // requests (while it waits and connects) and among its connections. At maxConnections it
  // waits, pending, for a connection to close (or for a pooled one to the endpoint, in `up`)
  // until the connect timeout. Returns the limit that refused it, or none (`conn` held, or `up`).
  awaitable<Overflow> connectionSlot(const Cluster& cl, const std::string& key, Slot& conn, Slot& pending,
                                     std::unique_ptr<Upstream>& up) {
    auto& st = *cl.state;
    if (!ClusterState::tryAcquire(st.pending, cl.limits.maxPendingRequests)) co_return Overflow::maxPendingRequests;
    pending = Slot(cl.state, &st.pending);
    if (ClusterState::tryAcquire(st.connections, cl.limits.maxConnections)) {
      conn = Slot(cl.state, &st.connections);
      co_return Overflow::none;
    }
    st.waiting.fetch_add(1, std::memory_order_relaxed);
    Slot waiting(cl.state, &st.waiting);
    const auto wait = cl.limits.connectTimeout.count() > 0 ? cl.limits.connectTimeout : impl_.opt.connectTimeout;
    const auto until = std::min(Clock::now() + wait, policy_.deadline);
    c_->after(wait + impl_.opt.upstreamTimeout);
    // Connections end on any worker: polled (a wait is the exception, under overload).
    asio::steady_timer timer(w_.io);
    for (;;) {
      timer.expires_after(std::chrono::milliseconds(2));
      error_code ec;
      co_await timer.async_wait(tok(ec));
      if (c_->closed || c_->timedOut) co_return Overflow::none;
      if ((up = w_.take(key, &cl))) {
        pending.release();
        co_return Overflow::none;
      }
      if (ClusterState::tryAcquire(st.connections, cl.limits.maxConnections)) {
        conn = Slot(cl.state, &st.connections);
        co_return Overflow::none;
      }
      if (Clock::now() >= until) co_return Overflow::maxConnections;
    }
  }

  // Picks the target of this attempt. Outbound: an endpoint of the cluster; inbound: the local app.
  Target pickTarget(const Cluster* cluster, const LocalTarget* local, RequestContext& ctx, const h1::Head& req,
                    const std::string& exclude) {
    Target t;
    if (local) {
      t.local = local;
      return t;
    }
    t.cluster = cluster;
    t.endpoint = w_.balancer.pick(*cluster, hashInput(*cluster, req, ctx.sourceAddress), exclude);
    return t;
  }

  // One request: its phases, start to log. Returns whether the connection goes on.
  awaitable<bool> one(h1::Head& req) {
    // Request head.
    c_->idle = c_->buf.empty();
    c_->after(c_->buf.empty() ? impl_.opt.idleTimeout : impl_.opt.requestHeadTimeout);
    h1::ParseResult pr;
    for (;;) {
      if (!c_->buf.empty()) {
        pr = h1::parseRequest(c_->buf.view(), impl_.opt.limits, req);
        if (pr.state != h1::Parse::incomplete) break;
      }
      if (w_.draining && c_->buf.empty()) co_return false;
      if (!co_await readDown()) {
        // A head cut short by a timeout is counted; a client closing between requests is normal.
        if (!c_->buf.empty() && c_->timedOut) impl_.errors(c_->direction, Failure::requestTimeout).inc();
        co_return false;
      }
      if (c_->idle) {
        c_->idle = false;
        c_->after(impl_.opt.requestHeadTimeout);
      }
    }
    c_->idle = false;
    RequestContext ctx;
    // The per-request containers keep their capacity from one request to the next.
    ctx.upstreamHeaders = std::move(spareUp_);
    ctx.downstreamHeaders = std::move(spareDown_);
    ctx.requestId = std::move(spareId_);
    ctx.direction = c_->direction;
    ctx.start = Clock::now();
    ctx.peerIdentity = c_->peerIdentity;
    ctx.sourceAddress = c_->sourceAddress;
    if (pr.state == h1::Parse::error) {
      // Nothing after a refused head can be trusted to be framed right: answer and close.
      ctx.status = pr.status;
      ctx.failure = pr.status == 431 ? Failure::headerTooLarge : Failure::badRequest;
      auto bytes = h1::simpleResponse(pr.status, std::string(pr.reason) + "\n", false,
                                      {{"x-mesh-error", failureName(ctx.failure)}});
      ctx.responseBytes = bytes.size();
      co_await writeDown(bytes, ctx);
      logPhase(w_, ctx);
      co_return false;
    }
    // The head leaves the buffer (which the body reuses) for the request's own copy.
    c_->head.assign(c_->buf.view().substr(0, req.headBytes));
    relocate(req, c_->buf.view().data(), c_->head.data());
    c_->buf.consume(req.headBytes);
    ctx.request = &req;
    bool keep = co_await phases(req, ctx);
    logPhase(w_, ctx);
    pin_.reset();
    if (replay_.capacity() > 16 * 1024) std::string().swap(replay_);  // not held by an idle connection
    spareUp_ = std::move(ctx.upstreamHeaders);
    spareUp_.clear();
    spareDown_ = std::move(ctx.downstreamHeaders);
    spareDown_.clear();
    spareId_ = std::move(ctx.requestId);
    co_return keep && !w_.draining;
  }

  awaitable<bool> phases(h1::Head& req, RequestContext& ctx) {
    // Request filter phase.
    if (requestPhase(w_, ctx, req.requestId)) {
      co_return co_await answer(ctx, req, ctx.reply.status, ctx.reply.body, Failure::none);
    }
    // Route phase.
    const Snapshot& snap = w_.snapshot();
    pin_ = w_.snap;  // the request keeps its snapshot, whatever is published meanwhile
    const Cluster* cluster = nullptr;
    const LocalTarget* local = nullptr;
    if (c_->direction == Direction::outbound) {
      std::string unknown;
      cluster = routeOutbound(w_, snap, *c_, req, ctx, unknown);
      if (ctx.faultDelay.count() > 0) {
        // An injected delay: the request waits here, then goes on (or is aborted) as decided.
        // The connection's deadline covers the delay (the head's would cut it short).
        c_->after(ctx.faultDelay + impl_.opt.upstreamTimeout);
        asio::steady_timer t(w_.io, ctx.faultDelay);
        error_code ec;
        co_await t.async_wait(tok(ec));
        if (c_->closed || c_->timedOut) co_return false;
      }
      if (!cluster && ctx.reply.status) {
        co_return co_await answer(ctx, req, ctx.reply.status, ctx.reply.body, Failure::none);
      }
      if (req.method == "CONNECT") cluster = routeConnect(w_, snap, *c_, req.host, cluster, ctx);
      if (!cluster && ctx.route) {
        // A Route decided, but its destination is not known (yet): never the host outside.
        co_return co_await answer(ctx, req, 503, "no service '" + unknown + "' in the mesh catalog", Failure::noRoute);
      }
      if (!cluster) {
        // Egress: a host outside the mesh, as MeshConfig and the ExternalServices allow.
        auto eg = egressFor(snap.egress, req.host);
        if (req.method == "CONNECT") {
          // A tunnel carries the app's own bytes (its TLS, say) to the port it asked for.
          eg.tls = false;
          eg.port = eg.askedPort;
        }
        if (eg.kind == EgressDecision::Kind::blocked) {
          co_return co_await answer(ctx, req, 502, eg.why, Failure::egressBlocked);
        }
        if (eg.kind == EgressDecision::Kind::notExternal) {
          co_return co_await answer(ctx, req, 503, "no service '" + unknown + "' in the mesh catalog", Failure::noRoute);
        }
        ctx.service = eg.service;
        c_->after(impl_.opt.connectTimeout);
        const auto resolved = co_await externalTarget(w_, eg, external_);
        if (resolved != ExternalResolve::ok) {
          if (c_->closed || c_->timedOut) co_return false;
          auto refusal = externalRefusal(eg, resolved);
          co_return co_await answer(ctx, req, refusal.status, refusal.body, refusal.failure);
        }
        local = &external_;
      }
      // A rule's rewrites: what goes on is the rewritten path and authority.
      if (!ctx.rewrittenPath.empty()) req.target = req.path = ctx.rewrittenPath;
      if (!ctx.rewrittenAuthority.empty()) req.host = ctx.rewrittenAuthority;
      // A mirror of a bodyless request goes now; one with a body once the body is whole.
      if (ctx.mirror && req.framing == h1::Framing::none) mirrorRequest(c_, pin_, *ctx.mirror, req, ctx);
    } else {
      auto it = snap.local.find(c_->sni);
      if (it == snap.local.end()) {
        co_return co_await answer(ctx, req, 503, "no instance '" + c_->sni + "' on this node", Failure::noRoute);
      }
      local = &it->second;
      ctx.service = local->service;
      if (auto why = rateLimited(w_, snap, ctx, req)) co_return co_await answer(ctx, req, 429, *why, Failure::rateLimited);
      // The app learns who called, as Envoy tells it (x-forwarded-client-cert); a value the
      // caller sent is never passed on.
      if (xfcc_.empty()) xfcc_ = "URI=" + c_->peerIdentity;
      ctx.upstreamHeaders.push_back({"x-forwarded-client-cert", xfcc_});
    }
    ctx.cluster = cluster;
    if (cluster && req.method == "CONNECT") co_return co_await connect(req, ctx, *cluster);
    if (local && local->external && req.method == "CONNECT") co_return co_await connectExternal(req, ctx, *local);
    // HTTP/1.0 may come without Host (routed by the original destination); what we send on is
    // HTTP/1.1, which must have one.
    if (req.host.empty()) ctx.upstreamHeaders.push_back({"Host", ctx.service});
    // Expect: 100-continue is answered here, as Envoy does: the client sends its body to us at
    // once, and the upstream gets the request without Expect (many servers never send a 100;
    // waiting for one while holding the body back would stall until a timeout).
    if (req.framing != h1::Framing::none && req.find("expect")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      if (!co_await writeDown(kContinue, ctx)) co_return false;
    }
    // HTTP/2 upstreams: an app that speaks only HTTP/2 (protocol http2 or grpc) is reached over
    // HTTP/2, and so is a peer's proxy for such a service (or for every HTTP service with
    // --http2-upstream: one multiplexed connection per peer instead of one per request in flight).
    if (!req.upgrade) {
      auto h2Only = [](catalog::Protocol p) { return p == catalog::Protocol::http2 || p == catalog::Protocol::grpc; };
      if ((local && h2Only(local->protocol)) || (cluster && (h2Only(cluster->protocol) || impl_.opt.http2Upstream))) {
        co_return co_await relayH1ViaH2(c_, pin_, req, ctx, cluster, local);
      }
    }
    // A body a Route's retries may send again is read whole first (Content-Length up to
    // kMaxReplayBody; others are relayed as they come and not retried).
    const bool bodyFits = req.framing == h1::Framing::length && req.contentLength > 0 &&
                          req.contentLength <= kMaxReplayBody;
    // Circuit breakers: the request's place among the cluster's requests in flight.
    Slot inFlight;
    if (std::string why; cluster && !admitRequest(w_, *cluster, ctx, inFlight, why)) {
      co_return co_await answer(ctx, req, 503, why, Failure::overflow);
    }
    // The Route's timeout and retry policy (bodyless requests only: bodies are relayed, not kept).
    policy_.setup(ctx, cluster, req.method, req.framing == h1::Framing::none || bodyFits);
    // Kept only when a retry or a mirror will want it (else it streams as it comes).
    const bool keepBody = bodyFits && (policy_.retry || ctx.mirror);
    if (ctx.mirror && req.framing != h1::Framing::none && !keepBody) impl_.mirrored[1]->inc();  // not kept: not copied
    const bool replayable = idempotent(req.method) && (req.framing == h1::Framing::none || keepBody);
    replay_.clear();
    replaying_ = keepBody;
    if (replaying_) {
      while (replay_.size() < req.contentLength) {
        if (!c_->buf.empty()) {
          const auto n = std::min<std::size_t>(c_->buf.size(), req.contentLength - replay_.size());
          replay_.append(c_->buf.view().substr(0, n));
          c_->buf.consume(n);
          continue;
        }
        c_->after(impl_.opt.bodyTimeout);
        if (!co_await readDown()) {
          ctx.failure = c_->timedOut ? Failure::requestTimeout : Failure::downstreamClosed;
          co_return false;
        }
      }
      if (ctx.mirror) mirrorRequest(c_, pin_, *ctx.mirror, req, ctx, replay_);
    }
    struct EndTry {
      RoutePolicy& p;
      Worker& w;
      ~EndTry() { p.tryEnded(w); }
    } endTry{policy_, w_};
    // Another try by the Route's policy, after its backoff. False: the client went meanwhile.
    auto policyRetry = [&]() -> awaitable<bool> {
      ctx.failure = Failure::none;
      auto wait = policy_.next(w_);
      // The last try's deadline must not cut the backoff and the next connect short.
      c_->after(wait + impl_.opt.upstreamTimeout);
      if (wait.count() > 0) {
        asio::steady_timer t(w_.io, wait);
        error_code ec;
        co_await t.async_wait(tok(ec));
      }
      co_return !c_->closed && !c_->timedOut;
    };
    std::string exclude;
    std::unique_ptr<Upstream> up;
    h1::Head resp;
    for (int attempt = 0;; ++attempt) {
      if (Clock::now() >= policy_.deadline) {
        co_return co_await answer(ctx, req, 504, "upstream timed out (route timeout)", Failure::upstreamTimeout);
      }
      // Upstream select phase.
      Target t = pickTarget(cluster, local, ctx, req, exclude);
      if (!t.local && !t.endpoint) {
        co_return co_await answer(ctx, req, 503, "no healthy endpoint of service '" + ctx.service + "'",
                                  Failure::noEndpoint);
      }
      ctx.endpoint = t.endpoint;
      ++ctx.attempts;
      const std::string& key = t.endpoint ? t.endpoint->key : t.local->poolKey;
      up = w_.take(key, cluster);
      Slot conn, pending;
      if (!up && t.endpoint) {
        auto o = co_await connectionSlot(*cluster, key, conn, pending, up);
        if (c_->closed || c_->timedOut) co_return false;
        if (o != Overflow::none) {
          co_return co_await answer(ctx, req, 503, overflowed(w_, *cluster, ctx, o), Failure::overflow);
        }
      }
      if (!up) {
        error_code ec;
        up = co_await connectUpstream(w_, *c_, t, ec);
        pending.release();
        if (up) up->conn = std::move(conn);
        if (!up) {
          if (c_->closed) co_return false;
          observe(w_, cluster, t.endpoint, 0);
          exclude = key;
          if (attempt + 1 < impl_.opt.connectAttempts && t.endpoint) {
            impl_.retries[0]->inc();
            continue;
          }
          if (policy_.retry && policy_.retry->onCause(RouteRule::Retry::Cause::connectFailure) &&
              policy_.mayRetry(w_)) {
            if (!co_await policyRetry()) co_return false;
            continue;
          }
          co_return co_await answer(ctx, req, 503, "could not connect to an endpoint of '" + ctx.service + "'",
                                    Failure::connectFailed);
        }
      }
      // Upstream request phase.
      if (t.endpoint) w_.balancer.started(*t.endpoint);
      auto result = co_await attemptOn(*up, req, ctx, resp);
      if (t.endpoint) w_.balancer.finished(*t.endpoint);
      policy_.tryEnded(w_);
      if (t.endpoint) {
        // What the endpoint did, for outlier detection: its status; or none (a reset, a
        // timeout, a response that could not be framed), unless the connection was a pooled
        // one the upstream had closed meanwhile (Attempt::retry: not the endpoint's failure),
        // the instance is gone from it (elsewhere), or the client failed (went, stalled, sent
        // a bad body).
        if (result == Attempt::ok || result == Attempt::again) {
          observe(w_, cluster, t.endpoint, resp.status);
        } else if ((result == Attempt::failed && !ctx.status &&
                    (ctx.failure == Failure::upstreamReset || ctx.failure == Failure::upstreamTimeout ||
                     ctx.failure == Failure::badResponse)) ||
                   (result == Attempt::retry && !up->reused)) {
          observe(w_, cluster, t.endpoint, 0);
        }
      }
      if (result == Attempt::ok) break;
      --impl_.upstreamOpen[up->stream.tls() ? 0 : 1];
      up.reset();
      if (result == Attempt::elsewhere && attempt + 1 < impl_.opt.connectAttempts) {
        impl_.retries[0]->inc();
        exclude = key;
        continue;
      }
      if (result == Attempt::retry && replayable && attempt + 1 < impl_.opt.connectAttempts) {
        // Closed before any byte of a response: a pooled connection the upstream had closed
        // meanwhile (the request never reached it), or a node that just died. An idempotent
        // request with no body goes again, to another endpoint when there is one (the other
        // pooled connections to a node that died are dead too).
        impl_.retries[c_->direction == Direction::outbound ? 0 : 1]->inc();
        exclude = key;
        ctx.failure = Failure::none;
        continue;
      }
      if (c_->closed || ctx.failure == Failure::downstreamClosed) co_return false;
      if (result == Attempt::again ||
          (result != Attempt::elsewhere && !ctx.status && policy_.retry &&
           policy_.retry->onCause(ctx.failure == Failure::upstreamTimeout ? RouteRule::Retry::Cause::timeout
                                                                          : RouteRule::Retry::Cause::reset) &&
           policy_.mayRetry(w_))) {
        // A status the Route retries on (that response went nowhere), or no response at all.
        exclude = key;
        if (!co_await policyRetry()) co_return false;
        continue;
      }
      if (result == Attempt::elsewhere) {
        co_return co_await answer(ctx, req, 503, "no endpoint of '" + ctx.service + "' still runs it",
                                  Failure::noEndpoint);
      }
      int status = ctx.failure == Failure::upstreamTimeout ? 504 : 502;
      Failure f = ctx.failure == Failure::none ? Failure::upstreamReset : ctx.failure;
      if (ctx.status) co_return false;  // a response had begun: nothing to do but close
      co_return co_await answer(ctx, req, status,
                                std::string(f == Failure::upstreamTimeout ? "upstream timed out" : "upstream failed") +
                                    " (" + failureName(f) + ")",
                                f);
    }
    // Response relayed; the upstream connection goes back to the pool if both ends allow it.
    const bool downKeep = req.keepAlive && resp.keepAlive && !w_.draining && ctx.failure == Failure::none;
    // A cluster's maxRequestsPerConnection closes a connection that carried that many.
    const bool spent = up && cluster && cluster->limits.maxRequestsPerConnection > 0 &&
                       ++up->served >= cluster->limits.maxRequestsPerConnection;
    if (up && !spent && resp.keepAlive && resp.framing != h1::Framing::untilClose &&
        resp.framing != h1::Framing::tunnel && ctx.failure == Failure::none) {
      w_.giveBack(std::move(up));
    } else if (up) {
      --impl_.upstreamOpen[up->stream.tls() ? 0 : 1];
    }
    co_return downKeep;
  }

  // CONNECT service[:port]: a byte tunnel to one of its instances (a tunnel over mTLS to its
  // node, which splices it to the instance). The connection is the tunnel's from here on.
  awaitable<bool> connect(const h1::Head& req, RequestContext& ctx, const Cluster& cluster) {
    std::string exclude;
    for (int attempt = 0; attempt < impl_.opt.connectAttempts; ++attempt) {
      Target t = pickTarget(&cluster, nullptr, ctx, req, exclude);
      if (!t.endpoint) break;
      ctx.endpoint = t.endpoint;
      ++ctx.attempts;
      error_code ec;
      auto up = co_await connectUpstream(w_, *c_, t, ec, /*tunnel=*/true);
      if (!up) {
        if (c_->closed) co_return false;
        exclude = t.endpoint->key;
        continue;
      }
      ctx.status = 200;
      static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";
      if (!co_await writeDown(kEstablished, ctx)) co_return false;
      ctx.responseBytes += kEstablished.size();
      w_.balancer.started(*t.endpoint);
      c_->up = &up->stream;
      auto pending = c_->buf.view();
      co_await tunnel(c_, up->stream, pending, {}, ctx.requestBytes, ctx.responseBytes);
      c_->buf.consume(pending.size());
      c_->up = nullptr;
      w_.balancer.finished(*t.endpoint);
      --impl_.upstreamOpen[0];
      co_return false;
    }
    co_return co_await answer(ctx, req, 503,
                              ctx.attempts ? "could not connect to an endpoint of '" + ctx.service + "'"
                                           : "no healthy endpoint of service '" + ctx.service + "'",
                              ctx.attempts ? Failure::connectFailed : Failure::noEndpoint);
  }

  // CONNECT host:port to an external host the egress phase allows: a byte tunnel to it (the
  // app's own TLS inside, say).
  awaitable<bool> connectExternal(const h1::Head& req, RequestContext& ctx, const LocalTarget& ext) {
    Target t;
    t.local = &ext;
    ++ctx.attempts;
    error_code ec;
    auto up = co_await connectUpstream(w_, *c_, t, ec, /*tunnel=*/true);
    if (!up) {
      if (c_->closed) co_return false;
      co_return co_await answer(ctx, req, 503, "could not connect to '" + ext.sni + "'", Failure::connectFailed);
    }
    ctx.status = 200;
    static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (!co_await writeDown(kEstablished, ctx)) co_return false;
    ctx.responseBytes += kEstablished.size();
    c_->up = &up->stream;
    auto pending = c_->buf.view();
    co_await tunnel(c_, up->stream, pending, {}, ctx.requestBytes, ctx.responseBytes);
    c_->buf.consume(pending.size());
    c_->up = nullptr;
    --impl_.upstreamOpen[up->stream.tls() ? 0 : 1];
    co_return false;
  }

  // retry: on a new connection; elsewhere: on another endpoint (the peer no longer runs the
  // instance: nothing reached an app, so any request may go again).
  // again: the response's status is one the Route's policy retries on (the response was not
  // relayed; the connection is not reused).
  enum class Attempt { ok, retry, elsewhere, failed, again };

  // Sends the request on `up` and relays the response. `retry`: failed before any response
  // byte came back, on a connection that may have been closed by the upstream meanwhile.
  awaitable<Attempt> attemptOn(Upstream& up, h1::Head& req, RequestContext& ctx, h1::Head& resp) {
    c_->up = &up.stream;
    struct Clear {
      Conn* c;
      ~Clear() { c->up = nullptr; }
    } clear{c_.get()};
    upHead_.clear();
    h1::writeRequest(req, req.path, ctx.upstreamHeaders, true, upHead_, ctx.upstreamEdits.empty() ? nullptr : &ctx.upstreamEdits);
    ctx.upstreamStart = Clock::now();
    error_code ec;
    if (replaying_) {
      // The body read whole beforehand (for a Route's retries): head and body in one write.
      upHead_.append(replay_);
      co_await up.stream.write(asio::buffer(upHead_), ec);
      if (ec) {
        ctx.failure = Failure::upstreamReset;
        co_return Attempt::retry;  // it is kept: it may go again
      }
      ctx.requestBytes += replay_.size();
    } else {
      BodyState reqBody(req);
      const bool bodyless = reqBody.done;
      if (!co_await writeHeadAndBody(up.stream, upHead_, c_->buf, reqBody, true, ctx, ctx.requestBytes)) {
        // Nothing of a bodyless request reached the upstream: it may go again.
        if (bodyless && ctx.failure == Failure::upstreamReset) co_return Attempt::retry;
        co_return Attempt::failed;
      }
      if (!co_await relayBody(c_->down, c_->buf, up.stream, reqBody, true, ctx, ctx.requestBytes))
        co_return Attempt::failed;
    }
    // Response head (1xx interim responses are passed on as they come). A timeout here ends the
    // attempt, not the downstream connection: the client gets a 504.
    c_->setDeadline(policy_.tryDeadline(Clock::now(), impl_.opt.upstreamTimeout));
    c_->upstreamOnly = true;
    c_->upTimedOut = false;
    struct UpOnly {
      Conn* c;
      ~UpOnly() { c->upstreamOnly = false; }
    } upOnly{c_.get()};
    bool any = false;
    for (;;) {
      auto pr = h1::parseResponse(up.buf.view(), impl_.opt.limits, req.method, resp);
      if (pr.state == h1::Parse::error) {
        ctx.failure = Failure::badResponse;
        co_return Attempt::failed;
      }
      if (pr.state == h1::Parse::complete) {
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
          auto interim = up.buf.view().substr(0, resp.headBytes);
          co_await c_->down.write(asio::buffer(interim.data(), interim.size()), ec);
          up.buf.consume(resp.headBytes);
          if (ec) {
            ctx.failure = Failure::downstreamClosed;
            co_return Attempt::failed;
          }
          continue;
        }
        break;
      }
      auto n = co_await up.stream.read(up.buf.prepare(), ec);
      up.buf.commit(n);
      any = any || n > 0;
      if (n == 0 && ec) {
        if (c_->upTimedOut || c_->timedOut) {
          ctx.failure = Failure::upstreamTimeout;
          co_return Attempt::failed;
        }
        ctx.failure = Failure::upstreamReset;
        co_return any ? Attempt::failed : Attempt::retry;
      }
    }
    c_->upstreamOnly = false;
    if (c_->direction == Direction::outbound && ctx.endpoint && resp.status == 503 &&
        req.framing == h1::Framing::none) {
      if (auto v = resp.find("x-mesh-error"); v && *v == failureName(Failure::noRoute)) co_return Attempt::elsewhere;
    }
    if (policy_.retry && policy_.retry->onStatus(resp.status) && policy_.mayRetry(w_)) co_return Attempt::again;
    ctx.upstreamHead = Clock::now();
    ctx.status = resp.status;
    // Response filter phase.
    for (auto& f : impl_.filters) f->onResponse(ctx, resp);
    const bool keep = req.keepAlive && resp.keepAlive && !w_.draining;
    downHead_.clear();
    h1::writeResponse(resp, ctx.downstreamHeaders, keep, downHead_,
                      ctx.downstreamEdits.empty() ? nullptr : &ctx.downstreamEdits);
    up.buf.consume(resp.headBytes);
    BodyState respBody(resp);
    if (!co_await writeHeadAndBody(c_->down, downHead_, up.buf, respBody, false, ctx, ctx.responseBytes)) {
      co_return Attempt::failed;
    }
    if (resp.framing == h1::Framing::tunnel) {
      // WebSocket (101) or CONNECT: from now on, bytes both ways until either side closes.
      auto pending = c_->buf.view();
      auto pendingUp = up.buf.view();
      co_await tunnel(c_, up.stream, pending, pendingUp, ctx.requestBytes, ctx.responseBytes);
      c_->buf.consume(pending.size());
      resp.keepAlive = false;
      req.keepAlive = false;
      co_return Attempt::ok;
    }
    if (!co_await relayBody(up.stream, up.buf, c_->down, respBody, false, ctx, ctx.responseBytes))
      co_return Attempt::failed;
    c_->after(impl_.opt.idleTimeout);
    co_return Attempt::ok;
  }

  std::shared_ptr<Conn> c_;
  Worker& w_;
  Shared& impl_;
  std::string upHead_, downHead_, xfcc_;
  std::shared_ptr<const Snapshot> pin_;
  LocalTarget external_;  // the request's external host (egress)
  std::string replay_;    // the request body kept for a Route's retries
  bool replaying_ = false;
  RoutePolicy policy_;  // the Route's, for the request being relayed
  std::vector<h1::Header> spareUp_, spareDown_;
  std::string spareId_;
};

// Original destination of a connection iptables redirected (REDIRECT keeps it in conntrack).
std::optional<tcp::endpoint> originalDestination(tcp::socket& s) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockopt(s.native_handle(), SOL_IP, SO_ORIGINAL_DST, &addr, &len) != 0) return std::nullopt;
  error_code ec;
  auto local = s.local_endpoint(ec);
  tcp::endpoint orig(asio::ip::address_v4(ntohl(addr.sin_addr.s_addr)), ntohs(addr.sin_port));
  if (ec || orig == local) return std::nullopt;
  return orig;
}

awaitable<void> serveOutbound(std::shared_ptr<Conn> c) {
  auto& w = c->worker;
  if (auto orig = originalDestination(c->down.socket())) {
    // Redirected by iptables: the original address names the service (an instance's
    // address:port from the catalog). A TCP service is spliced; HTTP ones are parsed.
    auto key = orig->address().to_string() + ":" + std::to_string(orig->port());
    const auto& snap = w.snapshot();
    const Cluster* found = nullptr;
    auto it = snap.byAddress.find(key);
    if (it != snap.byAddress.end()) {
      found = snap.find(it->second);
      c->redirectedTo = it->second;
    }
    if (found && found->protocol == catalog::Protocol::tcp) {
      RequestContext ctx;
      ctx.direction = Direction::outbound;
      ctx.start = Clock::now();
      ctx.sourceAddress = c->sourceAddress;
      ctx.service = found->service;
      found = routeTcp(w, snap, *c, found->service, found, orig->port(), ctx);
      ctx.cluster = found;
      auto pin = w.snap;
      std::string exclude;
      for (int attempt = 0; attempt < w.impl.opt.connectAttempts; ++attempt) {
        const Endpoint* e = w.balancer.pick(*found, c->sourceAddress, exclude);
        if (!e) break;
        Target t;
        t.cluster = found;
        t.endpoint = e;
        ctx.endpoint = e;
        ++ctx.attempts;
        error_code ec;
        auto up = co_await connectUpstream(w, *c, t, ec, /*tunnel=*/true);
        if (!up) {
          exclude = e->key;
          continue;
        }
        ctx.status = 200;
        w.balancer.started(*e);
        c->up = &up->stream;
        co_await tunnel(c, up->stream, {}, {}, ctx.requestBytes, ctx.responseBytes);
        c->up = nullptr;
        w.balancer.finished(*e);
        --w.impl.upstreamOpen[0];
        break;
      }
      if (ctx.status == 0) ctx.failure = ctx.attempts ? Failure::connectFailed : Failure::noEndpoint;
      logPhase(w, ctx);
      co_return;
    }
  }
  // HTTP/2 with prior knowledge (h2c: gRPC clients, h2load) starts with the client preface;
  // HTTP/1.1 never does. Read until the first bytes tell.
  c->idle = true;
  c->after(w.impl.opt.idleTimeout);
  while (c->buf.size() < h2::kPreface.size()) {
    auto have = c->buf.view();
    if (have != h2::kPreface.substr(0, have.size())) break;
    error_code ec;
    auto n = co_await c->down.read(c->buf.prepare(), ec);
    c->buf.commit(n);
    if (n == 0 && ec) co_return;
  }
  c->idle = false;
  if (c->buf.view().starts_with(h2::kPreface)) {
    co_await serveH2(c);
    co_return;
  }
  Relay r(c);
  co_await r.run();
}

awaitable<void> serveInbound(std::shared_ptr<Conn> c) {
  auto& w = c->worker;
  auto& impl = w.impl;
  c->after(impl.opt.handshakeTimeout);
  error_code ec;
  co_await c->down.tls()->async_handshake(asio::ssl::stream_base::server, tok(ec));
  if (ec) {
    impl.handshakeServerFail->inc();
    impl.log->debug("inbound TLS handshake from {} failed: {}", c->sourceAddress, ec.message());
    co_return;
  }
  auto id = impl.tls->peerIdentity(c->down.ssl());
  if (!id) {
    impl.handshakeServerFail->inc();
    impl.log->warn("inbound connection from {} refused: {}", c->sourceAddress, id.error().message());
    co_return;
  }
  impl.handshakeServerOk->inc();
  c->peerIdentity = std::move(*id);
  if (const char* sni = SSL_get_servername(c->down.ssl(), TLSEXT_NAMETYPE_host_name)) c->sni = sni;
  const auto& snap = w.snapshot();
  auto it = snap.local.find(c->sni);
  const auto alpn = alpnOf(c->down.ssl());
  const bool tunnelAsked = alpn == kTunnelProtocol;
  if (alpn == "h2") {
    co_await serveH2(c);
    co_return;
  }
  if (it == snap.local.end() && tunnelAsked) {
    // A tunnel carries the app's bytes, not HTTP: no answer of ours can go in it. Closing says
    // "not here" (the caller's client sees its connection end).
    impl.errors(Direction::inbound, Failure::noRoute).inc();
    impl.log->debug("tunnel from {} to unknown instance '{}' closed", c->peerIdentity, c->sni);
    co_return;
  }
  if (it != snap.local.end() && (it->second.protocol == catalog::Protocol::tcp || tunnelAsked)) {
    RequestContext ctx;
    ctx.direction = Direction::inbound;
    ctx.start = Clock::now();
    ctx.peerIdentity = c->peerIdentity;
    ctx.sourceAddress = c->sourceAddress;
    ctx.service = it->second.service;
    Target t;
    t.local = &it->second;
    auto pin = w.snap;
    auto up = co_await connectUpstream(w, *c, t, ec);
    if (up) {
      ctx.status = 200;
      c->up = &up->stream;
      co_await tunnel(c, up->stream, {}, {}, ctx.requestBytes, ctx.responseBytes);
      c->up = nullptr;
      --impl.upstreamOpen[1];
    } else {
      ctx.failure = Failure::connectFailed;
    }
    logPhase(w, ctx);
    co_return;
  }
  Relay r(c);
  co_await r.run();
}

awaitable<void> acceptLoop(Worker& w, tcp::acceptor& acc, Direction d) {
  for (;;) {
    error_code ec;
    tcp::socket s = co_await acc.async_accept(tok(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc.is_open()) co_return;
      // Out of descriptors and the like: back off briefly rather than spin.
      std::uint64_t skipped = 0;
      if (w.acceptWarn[static_cast<int>(d)].allow(Clock::now(), skipped))
        w.impl.log->warn("{} accept failed error={} repeats_not_logged={}", directionName(d), ec.message(), skipped);
      asio::steady_timer t(w.io, std::chrono::milliseconds(50));
      co_await t.async_wait(tok(ec));
      continue;
    }
    if (w.draining) continue;
    s.set_option(tcp::no_delay(true), ec);
    auto remote = s.remote_endpoint(ec);
    std::shared_ptr<Conn> c;
    if (d == Direction::outbound) {
      w.impl.acceptedOut->inc();
      c = std::make_shared<Conn>(w, d, Stream(std::move(s)));
    } else {
      w.impl.acceptedIn->inc();
      c = std::make_shared<Conn>(w, d, Stream(std::move(s), *w.serverCtx));
    }
    if (!ec) c->sourceAddress = remote.address().to_string();
    auto serve = d == Direction::outbound ? serveOutbound(c) : serveInbound(c);
    asio::co_spawn(w.io, std::move(serve), [c, &w](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          w.impl.log->error("{} connection ended by an exception: {}", directionName(c->direction), x.what());
        }
      }
      c->closeAll();
    });
  }
}

Result<tcp::acceptor> listenOn(asio::io_context& io, const HostPort& at) {
  error_code ec;
  auto addr = asio::ip::make_address(at.host, ec);
  if (ec) return Error(errc::invalid_argument, "not an IP address: " + at.host);
  tcp::endpoint ep(addr, at.port);
  tcp::acceptor acc(io);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) {
    // Every worker binds the same port; the kernel spreads new connections across them.
    int one = 1;
    if (::setsockopt(acc.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      ec = error_code(errno, boost::system::system_category());
    }
  }
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(4096, ec);
  if (ec) return Error(errc::io_error, "cannot listen on " + at.toString() + ": " + ec.message());
  return acc;
}

awaitable<void> sweeper(Worker& w) {
  asio::steady_timer t(w.io);
  int n = 0;
  for (;;) {
    t.expires_after(kSweep);
    error_code ec;
    co_await t.async_wait(tok(ec));
    if (ec == asio::error::operation_aborted) co_return;
    const auto now = Clock::now();
    std::vector<Conn*> expired;
    for (auto* c : w.conns) {
      if (c->deadline <= now) expired.push_back(c);
    }
    for (auto* c : expired) c->expire();
    const bool pools = ++n % 50 == 0 && !w.draining;  // idle upstream connections, every 5 s
    if (pools) w.sweepPool(false);
    w.releaseForPending();
    if (w.index == 0) evaluateOutliers(w, now);
    sweepH2(w, now, pools);
  }
}

}  // namespace detail

void Worker::startDrain() {
  draining = true;
  error_code ec;
  if (outbound) outbound->close(ec);
  if (inbound) inbound->close(ec);
  sweepPool(true);
  drainH2(*this);
  for (auto* c : conns) {
    if (c->idle) c->closeAll();
  }
}

struct Proxy::Impl : Shared {
  using Shared::Shared;
};

Result<std::unique_ptr<Proxy>> Proxy::start(ProxyOptions options, std::shared_ptr<const identity::MeshTls> tls,
                                            std::shared_ptr<const Snapshot> initial,
                                            std::vector<std::shared_ptr<Filter>> filters, metrics::Registry& registry) {
  if (!tls) return Error(errc::invalid_argument, "the proxy needs the node's TLS identity (--tls-dir)");
  std::unique_ptr<Proxy> p(new Proxy());
  auto impl = std::make_shared<Proxy::Impl>(std::move(options), registry);
  auto& o = impl->opt;
  impl->tls = std::move(tls);
  impl->filters = std::move(filters);
  impl->snap = initial ? std::move(initial) : std::make_shared<Snapshot>();
  impl->published = 1;
  auto& r = registry;
  for (Direction d : {Direction::outbound, Direction::inbound}) {
    for (int f = 0; f < Shared::kFailures; ++f) {
      impl->errorSeries[d == Direction::outbound ? 0 : 1][f] =
          &r.counter("mesh_proxy_errors_total", "Requests the proxy failed or refused, by cause.",
                     {{"direction", directionName(d)}, {"cause", failureName(static_cast<Failure>(f))}});
    }
  }
  impl->activeOut = &r.gauge("mesh_proxy_connections_active", "Downstream connections open, by listener.",
                             {{"listener", "outbound"}});
  impl->activeIn =
      &r.gauge("mesh_proxy_connections_active", "Downstream connections open, by listener.", {{"listener", "inbound"}});
  impl->acceptedOut = &r.counter("mesh_proxy_connections_total", "Downstream connections accepted, by listener.",
                                 {{"listener", "outbound"}});
  impl->acceptedIn = &r.counter("mesh_proxy_connections_total", "Downstream connections accepted, by listener.",
                                {{"listener", "inbound"}});
  const char* hs = "mTLS handshakes between proxies, by side and result.";
  impl->handshakeServerOk = &r.counter("mesh_proxy_tls_handshakes_total", hs, {{"side", "server"}, {"result", "ok"}});
  impl->handshakeServerFail =
      &r.counter("mesh_proxy_tls_handshakes_total", hs, {{"side", "server"}, {"result", "refused"}});
  impl->handshakeClientOk = &r.counter("mesh_proxy_tls_handshakes_total", hs, {{"side", "client"}, {"result", "ok"}});
  impl->handshakeClientFail =
      &r.counter("mesh_proxy_tls_handshakes_total", hs, {{"side", "client"}, {"result", "refused"}});
  for (int d = 0; d < 2; ++d) {
    const char* dir = d == 0 ? "outbound" : "inbound";
    impl->connectOk[d] = &r.counter("mesh_proxy_upstream_connects_total", "Upstream connection attempts, by result.",
                                    {{"direction", dir}, {"result", "ok"}});
    impl->connectFail[d] = &r.counter("mesh_proxy_upstream_connects_total", "Upstream connection attempts, by result.",
                                      {{"direction", dir}, {"result", "failed"}});
    impl->retries[d] = &r.counter(
        "mesh_proxy_upstream_retries_total",
        "Requests tried again on another connection or endpoint (failed connects, closed pooled connections).",
        {{"direction", dir}});
    auto* open = &impl->upstreamOpen[d];
    r.gaugeFn("mesh_proxy_upstream_connections", "Upstream connections open (in use or pooled).", {{"direction", dir}},
              [open] { return static_cast<double>(open->load()); });
  }
  for (int k = 0; k < 2; ++k) {
    impl->faults[k] = &r.counter("mesh_proxy_faults_injected_total", "Faults a Route injected, by kind.",
                                 {{"kind", k == 0 ? "abort" : "delay"}});
    impl->mirrored[k] = &r.counter("mesh_proxy_mirrored_requests_total",
                                   "Copies of requests a Route mirrored: sent, or dropped (a body, or too many in flight).",
                                   {{"result", k == 0 ? "sent" : "dropped"}});
    impl->routeRetries[k] =
        &r.counter("mesh_proxy_route_retries_total", "Retries a Route's policy asked for: made, or refused by its budget.",
                   {{"result", k == 0 ? "retried" : "budget_exhausted"}});
  }
  for (auto o : {Overflow::maxConnections, Overflow::maxPendingRequests, Overflow::maxRequests, Overflow::maxRetries}) {
    impl->overflows[static_cast<int>(o)] =
        &r.counter("mesh_proxy_overflow_total", "Requests or retries a circuit breaker refused, by limit.",
                   {{"limit", overflowName(o)}});
  }
  for (auto e : {Ejection::consecutive5xx, Ejection::consecutiveGateway, Ejection::successRate}) {
    impl->ejections[static_cast<int>(e)] = &r.counter(
        "mesh_proxy_outlier_ejections_total", "Endpoints outlier detection ejected, by detector.", {{"reason", ejectionName(e)}});
  }
  impl->ejectionsEnded = &r.counter("mesh_proxy_outlier_returns_total",
                                    "Ejected endpoints returned to their pools once their ejection time was over.");
  {
    auto* idle = &impl->upstreamIdle;
    r.gaugeFn("mesh_proxy_upstream_connections_idle", "Upstream connections idle in the pools.", {},
              [idle] { return static_cast<double>(idle->load()); });
    std::weak_ptr<Proxy::Impl> weak = impl;
    r.gaugeFn("mesh_proxy_snapshot_version", "Version of the snapshot the proxy routes by.", {}, [weak] {
      auto i = weak.lock();
      if (!i) return 0.0;
      std::lock_guard lock(i->snapMu);
      return static_cast<double>(i->snap->version);
    });
  }
  if (o.accessLog == "stdout") {
    impl->access = stdout;
  } else if (o.accessLog == "stderr") {
    impl->access = stderr;
  } else if (!o.accessLog.empty()) {
    impl->access = std::fopen(o.accessLog.c_str(), "a");
    if (!impl->access)
      return Error(errc::io_error, "cannot open the access log " + o.accessLog + ": " + std::strerror(errno));
    impl->ownsAccess = true;
  }
  SSL_CTX_set_alpn_select_cb(impl->tls->server(), selectAlpn, nullptr);
  int n = o.workers > 0 ? o.workers : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  HostPort outAt = o.outbound, inAt = o.inbound;
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(*impl, i);
    // Both contexts are the identity's, shared by reference (asio frees what it wraps).
    SSL_CTX_up_ref(impl->tls->server());
    w->serverCtx = std::make_unique<asio::ssl::context>(impl->tls->server());
    SSL_CTX_up_ref(impl->tls->client());
    w->clientCtx = std::make_unique<asio::ssl::context>(impl->tls->client());
    // TLS origination to external hosts: the web's rules (TLS 1.2 or later, the server's
    // certificate verified for its name against the egress CAs), not the mesh's.
    w->egressCtx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    {
      error_code ec;
      w->egressCtx->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1, ec);
      w->egressCtx->set_verify_mode(asio::ssl::verify_peer, ec);
      if (o.egressCaFile.empty())
        w->egressCtx->set_default_verify_paths(ec);
      else
        w->egressCtx->load_verify_file(o.egressCaFile, ec);
      if (ec) return Error(errc::invalid_argument, "--egress-ca-file " + o.egressCaFile + ": " + ec.message());
    }
    auto out = listenOn(w->io, outAt);
    if (!out) return Error(out.error().code, "--outbound: " + out.error().message());
    auto in = listenOn(w->io, inAt);
    if (!in) return Error(in.error().code, "--inbound: " + in.error().message());
    // Port 0 means any: the first worker's choice is every other worker's.
    outAt.port = out->local_endpoint().port();
    inAt.port = in->local_endpoint().port();
    w->outbound.emplace(std::move(*out));
    w->inbound.emplace(std::move(*in));
    impl->workers.push_back(std::move(w));
  }
  impl->outboundBound = outAt;
  impl->inboundBound = inAt;
  for (auto& w : impl->workers) {
    auto* wp = w.get();
    asio::co_spawn(w->io, acceptLoop(*wp, *wp->outbound, Direction::outbound), asio::detached);
    asio::co_spawn(w->io, acceptLoop(*wp, *wp->inbound, Direction::inbound), asio::detached);
    asio::co_spawn(w->io, sweeper(*wp), asio::detached);
    w->thread = std::thread([wp] {
      auto guard = asio::make_work_guard(wp->io);
      wp->io.run();
    });
  }
  impl->log->info("proxy listening outbound={} inbound={} workers={}", outAt.toString(), inAt.toString(), n);
  p->impl_ = impl;
  return p;
}

Proxy::~Proxy() { stop(); }

void Proxy::publish(std::shared_ptr<const Snapshot> snapshot) {
  if (!impl_ || !snapshot) return;
  std::lock_guard lock(impl_->snapMu);
  impl_->snap = std::move(snapshot);
  impl_->published.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const Snapshot> Proxy::snapshot() const {
  std::lock_guard lock(impl_->snapMu);
  return impl_->snap;
}

void Proxy::beginDrain() {
  if (!impl_) return;
  for (auto& w : impl_->workers) asio::post(w->io, [wp = w.get()] { wp->startDrain(); });
}

void Proxy::drain(std::chrono::milliseconds timeout) {
  if (!impl_) return;
  beginDrain();
  auto until = Clock::now() + timeout;
  while (impl_->openConns.load() > 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (impl_->openConns.load() > 0)
    impl_->log->warn("drain timed out with {} connections open", impl_->openConns.load());
  stop();
}

void Proxy::stop() {
  if (!impl_) return;
  for (auto& w : impl_->workers) {
    asio::post(w->io, [wp = w.get()] {
      wp->startDrain();
      stopH2(*wp);
      for (auto* c : std::vector<Conn*>(wp->conns.begin(), wp->conns.end())) c->closeAll();
      wp->io.stop();
    });
  }
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
    // Sockets go before the io_context they belong to.
    w->pool.clear();
    w->h2pool.clear();
    w->outbound.reset();
    w->inbound.reset();
  }
  impl_->workers.clear();
  impl_.reset();
}

HostPort Proxy::outboundAddress() const { return impl_->outboundBound; }
HostPort Proxy::inboundAddress() const { return impl_->inboundBound; }
std::size_t Proxy::openConnections() const {
  if (!impl_) return 0;
  return static_cast<std::size_t>(std::max<std::int64_t>(0, impl_->openConns.load()));
}

}  // namespace mesh::proxy
