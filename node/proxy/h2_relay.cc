// HTTP/2 in the proxy (issue 7): downstream HTTP/2 connections (h2c from local apps on the
// outbound listener, h2 over mTLS from peers on the inbound one), multiplexed upstream HTTP/2
// connections (one per endpoint and worker, to a peer's inbound listener or to a local app that
// speaks HTTP/2 or gRPC), and the bridge from an HTTP/2 request to a local HTTP/1.1 app.
//
// Each downstream stream is an Exchange: it goes through the same phases as an HTTP/1.1 request
// (request id, filters, route, upstream select, upstream request, response filter, logging) and
// is relayed frame by frame: heads, DATA and trailers (gRPC's status) pass as they come, and
// flow control is end to end (a stream's received bytes are acknowledged when the next hop
// took them), so a slow reader holds back its writer, not the proxy's memory.

#include <openssl/sha.h>

#include "common/base64.h"
#include "common/http/message.h"
#include "node/proxy/http2.h"
#include "node/proxy/worker.h"

#include <charconv>

// GCC 12 reports Asio's coroutine frame allocator (recycling, sized delete) as mismatched in
// the bridge coroutine: a known false positive (GCC bug 109224), not a mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace mesh::proxy::detail {

struct Exchange;

namespace {

// An HTTP/1.1 app's response bytes waiting to be framed for an HTTP/2 client, per stream: above
// this the bridge stops reading from the app until the client's window lets them go.
constexpr std::size_t kHighWater = 256 * 1024;

h2::Settings sessionSettings(const ProxyOptions& o) {
  h2::Settings s;
  s.maxHeadBytes = o.limits.maxHeadBytes;
  s.maxFields = o.limits.maxHeaders;
  return s;
}

using http::asciiLower;

// A chunk's size line of HTTP/1.1 chunked coding ("1a2b\r\n"), without snprintf (per chunk).
void appendChunkSize(std::string& out, std::size_t n) {
  char hex[2 * sizeof(std::size_t)];
  const auto printed = std::to_chars(hex, hex + sizeof hex, n, 16);
  out.append(hex, printed.ptr).append("\r\n");
}

// `name` is lower case already (HTTP/2); the extra fields' names may not be.
bool namedIn(std::string_view name, const std::vector<h1::Header>& fields) {
  for (const auto& f : fields) {
    if (http::iequals(f.name, name)) return true;
  }
  return false;
}

// A route's removals and additions on a request going on over HTTP/2 (its replacements travel
// as the session's extra fields).
void editRequest(std::vector<h2::Field>& fields, const h1::FieldEdits& edits) {
  if (edits.empty()) return;
  std::erase_if(fields, [&](const h2::Field& f) { return edits.removes(f.name); });
  for (const auto& a : edits.add) fields.push_back({asciiLower(a.name), std::string(a.value)});
}

// A response head for the client: the upstream's fields less those the phases replace or
// remove, then the phases' own.
void finishResponse(const RequestContext& ctx, h2::Head& dh) {
  if (!ctx.downstreamHeaders.empty() || !ctx.downstreamEdits.remove.empty()) {
    std::erase_if(dh.fields, [&](const h2::Field& f) {
      return namedIn(f.name, ctx.downstreamHeaders) || ctx.downstreamEdits.removes(f.name);
    });
  }
  for (const auto& d : ctx.downstreamHeaders) dh.fields.push_back({asciiLower(d.name), std::string(d.value)});
  for (const auto& a : ctx.downstreamEdits.add) dh.fields.push_back({asciiLower(a.name), std::string(a.value)});
}

// A tunnel's upstream connection, counted as connected and open while it lasts.
struct CountedOpen {
  CountedOpen(Shared& i, int d) : impl(i), dir(d) {
    impl.connectOk[dir]->inc();
    ++impl.upstreamOpen[dir];
  }
  ~CountedOpen() { --impl.upstreamOpen[dir]; }
  CountedOpen(const CountedOpen&) = delete;
  CountedOpen& operator=(const CountedOpen&) = delete;
  Shared& impl;
  int dir;
};

// Dials `t` within `timeout` (the connection closed when it passes). The timer's handler can run
// after the dial is over, even after cancel(): it holds what it touches, never the caller's frame.
awaitable<void> dialWithin(Worker& w, std::shared_ptr<Upstream> up, const Target& t, const unsigned char* alpn,
                           std::size_t alpnLen, Clock::duration timeout, error_code& ec) {
  struct State {
    bool done = false, timedOut = false;
  };
  auto st = std::make_shared<State>();
  asio::steady_timer timer(w.io, timeout);
  timer.async_wait([st, up](error_code e) {
    if (e || st->done) return;
    st->timedOut = true;
    up->stream.close();
  });
  co_await dial(w, *up, t, alpn, alpnLen, ec);
  st->done = true;
  timer.cancel();
  if (!ec && st->timedOut) ec = asio::error::timed_out;
}

}  // namespace

// Either end of an HTTP/2 connection: the session, and reading and writing on its stream.
// Writes are callbacks, not a coroutine: a flush is asked for from inside handlers of any
// session of the worker, and runs once, after them, for everything they queued.
struct H2Conn : std::enable_shared_from_this<H2Conn>, h2::Handler {
  explicit H2Conn(Worker& worker) : w(worker) {}
  Worker& w;
  std::unique_ptr<h2::Session> session;
  std::string wbuf;
  bool writing = false, flushPosted = false, closed = false;
  bool closeWhenIdle = false;  // draining: close once no stream is left
  Clock::time_point lastRead = Clock::now();
  std::unordered_map<std::int32_t, std::shared_ptr<Exchange>> exchanges;

  virtual Stream& stream() = 0;
  virtual void ended() {}  // the connection is gone; every exchange has been told

  Exchange* find(std::int32_t id) {
    auto it = exchanges.find(id);
    return it == exchanges.end() ? nullptr : it->second.get();
  }
  std::shared_ptr<Exchange> take(std::int32_t id) {
    auto it = exchanges.find(id);
    if (it == exchanges.end()) return nullptr;
    auto ex = std::move(it->second);
    exchanges.erase(it);
    return ex;
  }

  void flush() {
    if (writing || flushPosted || closed) return;
    flushPosted = true;
    asio::post(w.io, [self = shared_from_this()] {
      self->flushPosted = false;
      self->writeSome();
    });
  }

  void writeSome() {
    if (writing || closed) return;
    wbuf.clear();
    session->drain(wbuf);
    if (wbuf.empty()) {
      if (!session->alive() || (closeWhenIdle && exchanges.empty())) closeStream();
      return;
    }
    writing = true;
    stream().writeThen(asio::buffer(wbuf), [self = shared_from_this()](error_code ec, std::size_t) {
      self->writing = false;
      if (ec) {
        self->closeStream();
        return;
      }
      self->writeSome();
    });
  }

  void closeStream() {
    if (closed) return;
    closed = true;
    stream().close();
  }

  // Reads and feeds the session until the connection ends.
  awaitable<void> readLoop(std::string_view initial) {
    auto self = shared_from_this();
    std::vector<char> rb(16 * 1024);
    std::string_view bytes = initial;
    while (!closed) {
      if (!bytes.empty()) {
        auto r = session->feed(bytes);
        if (!r) {
          w.impl.log->debug("HTTP/2 connection closed: {}", r.error().message());
          // The GOAWAY nghttp2 queued goes out before the close.
          if (!writing) {
            // Marked as writing: a flush posted meanwhile must not touch wbuf or write too.
            writing = true;
            wbuf.clear();
            session->drain(wbuf);
            error_code ec;
            if (!wbuf.empty()) co_await stream().write(asio::buffer(wbuf), ec);
            writing = false;
          }
          break;
        }
      }
      flush();
      error_code ec;
      auto n = co_await stream().read(asio::buffer(rb), ec);
      if (n > 0) lastRead = Clock::now();
      bytes = std::string_view(rb.data(), n);
      if (ec && n == 0) break;
    }
    closeStream();
  }
};

// A multiplexed upstream connection: to a peer's inbound listener (h2 over mTLS) or to a local
// app speaking HTTP/2 (h2c). Shared by every request of the worker to that endpoint.
struct H2Client : H2Conn {
  H2Client(Worker& worker, std::string k, int d) : H2Conn(worker), key(std::move(k)), dir(d) {}
  std::string key;
  int dir;  // 0: to a peer, 1: to a local app (the upstream metrics' direction)
  enum class State { connecting, ready, dead } state = State::connecting;
  std::unique_ptr<Upstream> up;
  std::vector<std::shared_ptr<Exchange>> waiting;  // until connected
  Clock::time_point idleSince = Clock::now();

  Stream& stream() override { return up->stream; }
  bool usable() const {
    return !closeWhenIdle &&
           (state == State::connecting || (state == State::ready && !closed && session->acceptsStreams()));
  }

  awaitable<void> run(Target t, std::shared_ptr<const Snapshot> pin);
  void onHead(std::int32_t id, h2::Head&& head, bool end) override;
  void onData(std::int32_t id, std::string_view data) override;
  void onTrailers(std::int32_t id, std::vector<h2::Field>&& t) override;
  void onEnd(std::int32_t id) override;
  void onClose(std::int32_t id, std::uint32_t error) override;
  void onSent(std::int32_t id, std::size_t bytes) override;
};

// A downstream HTTP/2 connection.
struct H2Server : H2Conn {
  explicit H2Server(std::shared_ptr<Conn> conn) : H2Conn(conn->worker), c(std::move(conn)) { w.h2servers.insert(this); }
  ~H2Server() override { w.h2servers.erase(this); }
  std::shared_ptr<Conn> c;
  // Streams that started upstream work, and those of them the client ended (reset, with any
  // code) before their response did: a client that opens and cancels streams in a loop (the
  // "rapid reset" attack, CVE-2023-44487) makes the proxy start upstream work it never pays
  // for; past a share of such resets it is sent away. (nghttp2 1.52 predates its own limit.)
  std::uint64_t opened = 0, cancelled = 0;

  Stream& stream() override { return c->down; }
  void onHead(std::int32_t id, h2::Head&& head, bool end) override;
  void onData(std::int32_t id, std::string_view data) override;
  void onTrailers(std::int32_t id, std::vector<h2::Field>&& t) override;
  void onEnd(std::int32_t id) override;
  void onClose(std::int32_t id, std::uint32_t error) override;
  void onSent(std::int32_t id, std::size_t bytes) override;
  void idleCheck() {
    // No stream: the connection's idle timeout runs (the sweep closes it); a draining one closes.
    if (!exchanges.empty()) return;
    c->after(w.impl.opt.idleTimeout);
    if (closeWhenIdle) flush();
  }
};

// Where an exchange's response goes, and what tells its client's side that request bytes were
// taken: a stream of a downstream HTTP/2 connection (H2Down), or an HTTP/1.1 client whose relay
// coroutine writes what is queued (H1Down).
struct Down {
  virtual ~Down() = default;
  virtual bool respond(const h2::Head& head, bool end) = 0;  // interim (1xx) or final
  virtual void send(std::string_view data, bool end) = 0;
  virtual void trailers(const std::vector<h2::Field>& fields) = 0;
  virtual void reset(std::uint32_t error) = 0;
  virtual void consumed(std::size_t bytes) = 0;  // request body bytes the upstream took
  virtual std::size_t queued() const = 0;         // response bytes not yet written
  virtual void flush() = 0;
  // The exchange is over on the proxy's side (it timed out): forget it now, not when the
  // client's side of the stream closes (which a client that stopped reading never lets happen).
  virtual void detach() {}
};

struct H2Down final : Down {
  H2Down(std::shared_ptr<H2Server> s, std::int32_t i) : server(std::move(s)), id(i) {}
  std::shared_ptr<H2Server> server;
  std::int32_t id;
  bool respond(const h2::Head& h, bool end) override { return bool(server->session->respond(id, h, end)); }
  void send(std::string_view d, bool end) override { server->session->send(id, d, end); }
  void trailers(const std::vector<h2::Field>& t) override { server->session->trailers(id, t); }
  void reset(std::uint32_t e) override { server->session->reset(id, e); }
  void consumed(std::size_t n) override { server->session->consumed(id, n); }
  std::size_t queued() const override { return server->session->queued(id); }
  void flush() override { server->flush(); }
  void detach() override;
};

// One request relayed to an HTTP/2 upstream (or, from an HTTP/2 client, to an HTTP/1.1 app),
// through its phases to its logging.
struct Exchange : std::enable_shared_from_this<Exchange> {
  // external: the HTTP/1.1 relay's context (it runs the phases before and logs after).
  // A stream of a downstream HTTP/2 connection (its Down is part of the exchange: one
  // allocation per request, not two).
  Exchange(std::shared_ptr<Conn> c, std::shared_ptr<H2Server> server, std::int32_t id)
      : conn(std::move(c)), h2down(std::in_place, std::move(server), id), down(&*h2down), w(conn->worker), ctx(own),
        logs(true) {}
  // An HTTP/1.1 client (its relay runs the phases before and logs after, with its own context).
  Exchange(std::shared_ptr<Conn> c, std::shared_ptr<Down> d, RequestContext* external)
      : conn(std::move(c)), downHold(std::move(d)), down(downHold.get()), w(conn->worker), ctx(*external),
        logs(false) {}
  std::shared_ptr<Conn> conn;
  std::optional<H2Down> h2down;
  std::shared_ptr<Down> downHold;
  Down* down;
  Worker& w;
  h2::Head req;
  h1::Head view;  // the request as filters and the access log see it (views into req)
  RequestContext own;
  RequestContext& ctx;
  bool logs;
  std::shared_ptr<const Snapshot> pin;
  const Cluster* cluster = nullptr;
  const LocalTarget* local = nullptr;
  std::string exclude;
  std::string xfcc;  // what upstreamHeaders' x-forwarded-client-cert views
  bool replayable = false;
  // The request body: what came from downstream and has not gone upstream yet.
  bool reqEnd = false;
  std::string body;
  std::vector<h2::Field> reqTrailers;
  bool bodySent = false;
  // Upstream: an HTTP/2 stream, or the HTTP/1.1 bridge.
  std::shared_ptr<H2Client> up;
  std::int32_t upId = 0;    // 0 once the upstream stream closed
  std::int32_t flowId = 0;  // the upstream stream whose DATA the client's reads acknowledge: kept
                            // after it closes (its last DATA may still be on its way down)
  // Bytes handed to the other side and not yet taken by it: acknowledged when that side goes,
  // or the connection windows would shrink by them for good.
  std::size_t pendingDown = 0, pendingUp = 0;
  const Endpoint* counted = nullptr;  // balancer.started() was called for it
  bool h1 = false;
  bool tunnel = false;  // a WebSocket or CONNECT: bytes both ways once answered 200
  Stream* h1Up = nullptr;
  bool h1TimedOut = false;
  std::optional<asio::steady_timer> wake;
  // Response.
  bool responded = false;  // a final head went downstream
  bool upDone = false;     // the response is complete (or the proxy answered itself)
  bool trailersSeen = false;
  RoutePolicy policy;  // the Route's timeout and retries for this request
  // A Route's mirror for a request with a body: copied once the body is whole (mirrorBody, up
  // to kMaxReplayBody: a larger one is not copied).
  const Cluster* mirrorTo = nullptr;
  KeptBody mirrorBody;
  void mirrorWhenWhole(const Cluster* to) {
    if (reqEnd && body.size() > kMaxReplayBody) {
      impl().mirrored[1]->inc();  // too large to keep: not copied
      return;
    }
    if (reqEnd) return mirrorRequest(conn, pin, *to, view, ctx, body.empty() ? std::nullopt : std::optional(body));
    mirrorTo = to;
    mirrorBody.start(body);
  }
  // The request body kept for the Route's retries (up to kMaxReplayBody; past that the
  // request is no longer retried).
  KeptBody replay;
  // Sets up the Route's policy: a request whose body may still fit is retried, its body kept.
  void setupPolicy() {
    auto len = req.find("content-length");
    std::uint64_t declared = 0;
    const bool known = len && std::from_chars(len->data(), len->data() + len->size(), declared).ec == std::errc();
    const bool fits = body.size() <= kMaxReplayBody && (!known || declared <= kMaxReplayBody);
    policy.setup(ctx, cluster, req.method, fits);
    if (policy.retry && !(reqEnd && body.empty())) replay.start(body);
  }
  std::optional<asio::steady_timer> backoffTimer;
  bool mirror = false;  // a mirrored copy (its response goes nowhere)
  bool finished = false;  // the downstream stream closed: logged
  bool started = false;   // routed to an upstream: work began there (or waits for a connection)
  Slot inFlight;          // among the cluster's requests in flight (maxRequests)
  Slot pending;           // among its pending requests, while waiting for a connection
  Clock::time_point deadline = Clock::time_point::max();

  Shared& impl() const { return w.impl; }

  void begin(h2::Head&& head, bool end) {
    req = std::move(head);
    reqEnd = end;
    ctx.direction = conn->direction;
    ctx.start = Clock::now();
    ctx.peerIdentity = conn->peerIdentity;
    ctx.sourceAddress = conn->sourceAddress;
    view.method = req.method;
    view.target = view.path = req.path;
    view.host = req.authority;
    view.headers.reserve(req.fields.size());
    for (const auto& f : req.fields) {
      view.headers.push_back({f.name, f.value});
      if (f.name == "x-request-id") view.requestId = f.value;
      if (view.host.empty() && f.name == "host") view.host = f.value;
    }
    if (req.authority.empty() && !view.host.empty()) {
      // A Host field instead of :authority: kept as the authority, not as a view into the
      // fields (a route's header edits may move them).
      req.authority.assign(view.host);
      view.host = req.authority;
    }
    view.minorVersion = 1;
    view.framing = end ? h1::Framing::none : (req.find("content-length") ? h1::Framing::length : h1::Framing::chunked);
    ctx.request = &view;
    if (req.tooLarge) return reply(431, "request head larger than the limit", Failure::headerTooLarge);
    // Request filter phase.
    if (requestPhase(w, ctx, view.requestId)) return reply(ctx.reply.status, ctx.reply.body, Failure::none);
    // Route phase.
    const Snapshot& snap = w.snapshot();
    pin = w.snap;
    if (ctx.direction == Direction::outbound) {
      std::string unknown;
      cluster = routeOutbound(w, snap, *conn, view, ctx, unknown);
      if (ctx.faultDelay.count() > 0) {
        // An injected delay: the exchange goes on when it ends (unless the client went).
        auto t = std::make_shared<asio::steady_timer>(w.io, ctx.faultDelay);
        t->async_wait([self = shared_from_this(), t, unknown](const error_code&) {
          if (self->finished || self->responded) return;
          self->routed(unknown);
        });
        return;
      }
      routed(unknown);
      return;
    }
    if (routeInbound(snap)) afterRoute();
  }

  // The outbound route phase decided: answer, or go on to the upstream.
  void routed(const std::string& unknown) {
    if (!cluster && ctx.reply.status) return reply(ctx.reply.status, ctx.reply.body, Failure::none);
    // CONNECT host:port: the Route's tcp rules for that host decide (as for HTTP/1.1's CONNECT).
    if (tunnelRequest()) cluster = routeConnect(w, *pin, *conn, req.authority, cluster, ctx);
    if (!cluster && ctx.route) {
      // A Route decided, but its destination is not known (yet): never the host outside.
      return reply(503, "no service '" + unknown + "' in the mesh catalog", Failure::noRoute);
    }
    if (!cluster) {
      // Egress: a host outside the mesh, as MeshConfig and the ExternalServices allow.
      auto eg = egressFor(pin->egress, req.authority);
      if (eg.kind == EgressDecision::Kind::blocked) return reply(502, eg.why, Failure::egressBlocked);
      if (eg.kind == EgressDecision::Kind::notExternal)
        return reply(503, "no service '" + unknown + "' in the mesh catalog", Failure::noRoute);
      if (req.method == "CONNECT" && !tunnelRequest() &&
          !(req.protocol == "websocket" && ctx.direction == Direction::outbound)) {
        return reply(501, "extended CONNECT protocol '" + req.protocol + "' is not supported", Failure::badRequest);
      }
      ctx.service = eg.service;
      if (req.method == "CONNECT") {
        // A WebSocket to an external host: an HTTP/1.1 upgrade to it, as to a mesh endpoint's
        // proxy. A tunnel carries the app's bytes (its own TLS, say) to the port it asked for:
        // never originated TLS.
        const bool ws = req.protocol == "websocket";
        if (!ws) {
          eg.tls = false;
          eg.port = eg.askedPort;
        }
        egress = std::move(eg);
        started = h1 = tunnel = true;
        ++ctx.attempts;
        deadline = Clock::time_point::max();  // the tunnel's own connect timer, then its idle timeout
        asio::co_spawn(w.io, ws ? websocket(shared_from_this()) : connectTunnel(shared_from_this()), asio::detached);
        return;
      }
      started = true;
      h1 = true;  // external hosts are spoken to in HTTP/1.1 (the bridge)
      ++ctx.attempts;
      deadline = Clock::now() + impl().opt.connectTimeout;
      egress = std::move(eg);
      asio::co_spawn(w.io, bridge(shared_from_this()), asio::detached);
      return;
    }
    ctx.cluster = cluster;
    // A rule's rewrites: what goes on is the rewritten path and authority.
    if (!ctx.rewrittenPath.empty()) {
      req.path = ctx.rewrittenPath;
      view.target = view.path = req.path;
    }
    if (!ctx.rewrittenAuthority.empty()) {
      req.authority.assign(ctx.rewrittenAuthority);
      view.host = req.authority;
    }
    if (!ctx.upstreamEdits.empty()) {
      editRequest(req.fields, ctx.upstreamEdits);
      // The view's fields point into req.fields, which the edit moved.
      view.headers.clear();
      view.requestId = {};
      for (const auto& f : req.fields) {
        view.headers.push_back({f.name, f.value});
        if (f.name == "x-request-id") view.requestId = f.value;
      }
    }
    if (ctx.mirror) mirrorWhenWhole(ctx.mirror);
    afterRoute();
  }

  // The inbound route phase: the instance the peer named (TLS SNI). False: answered.
  bool routeInbound(const Snapshot& snap) {
    auto it = snap.local.find(conn->sni);
    if (it == snap.local.end()) {
      reply(503, "no instance '" + conn->sni + "' on this node", Failure::noRoute);
      return false;
    }
    local = &it->second;
    ctx.service = local->service;
    if (auto why = rateLimited(w, snap, ctx, view)) {
      reply(429, *why, Failure::rateLimited);
      return false;
    }
    xfcc = "URI=" + conn->peerIdentity;
    ctx.upstreamHeaders.push_back({"x-forwarded-client-cert", xfcc});
    return true;
  }

  void afterRoute() {
    if (req.method == "CONNECT" && req.protocol == "websocket" && cluster && ctx.direction == Direction::outbound) {
      // A WebSocket over HTTP/2 (RFC 8441): an HTTP/1.1 upgrade to the endpoint's proxy, then
      // the stream's DATA both ways.
      if (!admit()) return;
      started = h1 = tunnel = true;
      ++ctx.attempts;
      deadline = Clock::time_point::max();  // the tunnel's own connect timer, then its idle timeout
      asio::co_spawn(w.io, websocket(shared_from_this()), asio::detached);
      return;
    }
    if (tunnelRequest() && cluster) {
      // CONNECT service:port (RFC 9113 section 8.5): a byte tunnel to one of its instances, over
      // mTLS to its node (ALPN mesh-tcp/1), which splices it to the instance. As HTTP/1.1's
      // tunnels, not counted by the circuit breakers.
      started = h1 = tunnel = true;
      deadline = Clock::time_point::max();  // the tunnel's own connect timer, then its idle timeout
      asio::co_spawn(w.io, connectTunnel(shared_from_this()), asio::detached);
      return;
    }
    if (req.method == "CONNECT") {
      // Inbound: peers send tunnels as mesh-tcp/1 connections, never as HTTP/2 CONNECT; an
      // extended CONNECT other than a WebSocket has nothing to speak to.
      return reply(501,
                   req.protocol.empty() ? "CONNECT is for the outbound listener"
                                        : "extended CONNECT protocol '" + req.protocol + "' is not supported",
                   Failure::badRequest);
    }
    replayable = idempotent(req.method) && reqEnd && body.empty();
    setupPolicy();
    if (admit()) attempt();
  }

  // The egress phase's external host did not resolve, or is this proxy: answered (true).
  bool refusedExternal(ExternalResolve resolved) {
    if (resolved == ExternalResolve::ok) return false;
    auto refusal = externalRefusal(*egress, resolved);
    reply(refusal.status, refusal.body, refusal.failure);
    return true;
  }

  // A plain CONNECT (no :protocol) from an app: a byte tunnel.
  bool tunnelRequest() const {
    return req.method == "CONNECT" && req.protocol.empty() && ctx.direction == Direction::outbound;
  }

  // Circuit breakers: the request's place among the cluster's requests in flight. False: answered.
  bool admit() {
    std::string why;
    if (!cluster || admitRequest(w, *cluster, ctx, inFlight, why)) return true;
    reply(503, why, Failure::overflow);
    return false;
  }

  // Upstream select phase, then the upstream request.
  void attempt() {
    started = true;  // routed: upstream work begins (a connect, a stream, the bridge)
    Target t;
    if (local) {
      t.local = local;
      ++ctx.attempts;
      if (local->protocol == catalog::Protocol::http || local->protocol == catalog::Protocol::tcp) {
        h1 = true;
        asio::co_spawn(w.io, bridge(shared_from_this()), asio::detached);
        return;
      }
      useH2(t);
      return;
    }
    t.cluster = cluster;
    t.endpoint = w.balancer.pick(*cluster, hashInput(*cluster, view, ctx.sourceAddress), exclude);
    if (!t.endpoint) {
      return ctx.attempts ? reply(503, "could not connect to an endpoint of '" + ctx.service + "'",
                                  Failure::connectFailed)
                          : reply(503, "no healthy endpoint of service '" + ctx.service + "'", Failure::noEndpoint);
    }
    ctx.endpoint = t.endpoint;
    ++ctx.attempts;
    useH2(t);
  }

  void useH2(const Target& t) {
    const std::string& key = t.endpoint ? t.endpoint->key : t.local->poolKey;
    auto& slot = w.h2pool[key];
    if (!slot || !slot->usable()) {
      // Neither limited nor counted by maxConnections, which bounds HTTP/1.1 connections (as
      // Istio's does): over HTTP/2 one connection per endpoint and worker carries every
      // request, and maxRequests bounds those.
      slot = std::make_shared<H2Client>(w, key, t.endpoint ? 0 : 1);
      asio::co_spawn(w.io, slot->run(t, pin), asio::detached);
    }
    if (slot->state == H2Client::State::ready) {
      up = slot;
      return open();
    }
    // Waiting for the connection to be up: a pending request of the cluster.
    if (t.endpoint) {
      if (!ClusterState::tryAcquire(cluster->state->pending, cluster->limits.maxPendingRequests)) {
        return reply(503, overflowed(w, *cluster, ctx, Overflow::maxPendingRequests), Failure::overflow);
      }
      pending = Slot(cluster->state, &cluster->state->pending);
    }
    up = slot;
    up->waiting.push_back(shared_from_this());
  }

  ~Exchange() {
    policy.tryEnded(w);
    if (mirror) {
      w.bridged.erase(this);
      --w.mirrors;
    }
  }

  // Whether the Route's policy allows another try now.
  bool mayRetry() { return !finished && !responded && policy.mayRetry(w); }
  // Another try after the policy's backoff (the upstream stream is already gone).
  // A new try sends the kept body from its start (what is still to come follows it).
  void rewindBody() {
    if (!replay.keeping) return;
    body = replay.bytes;
    bodySent = false;
  }
  void retryAfterBackoff() {
    rewindBody();
    auto wait = policy.next(w);
    if (ctx.endpoint) exclude = ctx.endpoint->key;
    ctx.failure = Failure::none;
    up.reset();
    upId = flowId = 0;
    deadline = policy.deadline;
    if (wait.count() == 0) return attempt();
    backoffTimer.emplace(w.io, wait);
    backoffTimer->async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->finished || self->responded) return;
      self->attempt();
    });
  }

  // Whether another attempt may go (on another endpoint when there is one).
  bool retry(Failure cause) {
    if (finished || responded || ctx.attempts >= impl().opt.connectAttempts || local) return false;
    if (ctx.endpoint) exclude = ctx.endpoint->key;
    impl().retries[0]->inc();
    ctx.failure = Failure::none;
    (void)cause;
    rewindBody();
    up.reset();
    upId = flowId = 0;
    attempt();
    return true;
  }

  // The upstream connection is up: the request goes.
  void open() {
    pending.release();
    if (finished || upDone || responded) return;
    // The request goes on as it came (no copy of its fields), with the fields the phases added
    // in place of any of the same name.
    if (req.authority.empty()) req.authority.assign(view.host);
    req.scheme = "http";
    h2::Session::Extra extra;
    extra.reserve(ctx.upstreamHeaders.size());
    std::vector<std::string> lowered;  // names a filter gave in upper case (HTTP/2 wants lower)
    lowered.reserve(ctx.upstreamHeaders.size());
    for (const auto& f : ctx.upstreamHeaders) {
      std::string_view n = f.name;
      if (std::any_of(n.begin(), n.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; })) n = lowered.emplace_back(asciiLower(n));
      if (n != "host") extra.emplace_back(n, f.value);
    }
    const bool endNow = reqEnd && body.empty() && reqTrailers.empty();
    auto id = up->session->request(req, endNow, extra);
    if (!id) {
      if (!retry(Failure::upstreamReset)) reply(502, "upstream failed (upstream_reset)", Failure::upstreamReset);
      return;
    }
    upId = flowId = *id;
    up->exchanges[upId] = shared_from_this();
    if (ctx.endpoint) {
      w.balancer.started(*ctx.endpoint);
      counted = ctx.endpoint;
    }
    ctx.upstreamStart = Clock::now();
    deadline = policy.tryDeadline(ctx.upstreamStart, reqEnd ? impl().opt.upstreamTimeout : impl().opt.bodyTimeout);
    if (!endNow) {
      if (!body.empty()) {
        up->session->send(upId, body, reqEnd && reqTrailers.empty());
        bodySent = true;
        body.clear();
      }
      if (reqEnd && !reqTrailers.empty()) up->session->trailers(upId, reqTrailers);
    }
    up->flush();
  }

  // A response the proxy makes itself.
  void reply(int status, const std::string& text, Failure f) {
    if (responded || finished) return;
    ctx.status = status;
    ctx.failure = f;
    responded = upDone = true;
    // The client has this long to take the answer (and end its request) before it is dropped.
    deadline = Clock::now() + impl().opt.bodyTimeout;
    h2::Head h;
    h.status = status;
    if (f == Failure::none && ctx.reply.grpcStatus) {
      // A gRPC status (a fault): a trailers-only response, as a gRPC server refuses a call.
      h.fields.push_back({"content-type", "application/grpc"});
      h.fields.push_back({"grpc-status", std::to_string(ctx.reply.grpcStatus)});
      h.fields.push_back({"grpc-message", "fault injected"});
      finishResponse(ctx, h);
      down->respond(h, true);
    } else {
      // The proxy's own errors end in a newline (for curl); a policy's answer goes as written.
      std::string b = f == Failure::none ? text : text + "\n";
      const bool noBody = req.method == "HEAD";
      h.fields.push_back({"content-type", "text/plain; charset=utf-8"});
      h.fields.push_back({"content-length", std::to_string(b.size())});
      if (f != Failure::none) h.fields.push_back({"x-mesh-error", failureName(f)});
      if (f == Failure::overflow && ctx.overflow) h.fields.push_back({"x-mesh-overflow", ctx.overflow});
      if (f == Failure::rateLimited) {
        h.fields.push_back({"retry-after", ctx.limited.retryAfter});
        h.fields.push_back({"x-mesh-ratelimit", ctx.limited.rule});
      }
      finishResponse(ctx, h);
      if (down->respond(h, noBody) && !noBody) down->send(b, true);
    }
    // What the client sent of its body and still sends goes nowhere: acknowledged as it comes.
    if (pendingUp) {
      down->consumed(pendingUp);
      pendingUp = 0;
    }
    body.clear();
    down->flush();
  }

  // --- Downstream events.
  void downData(std::string_view d) {
    // The copy gets the whole body, whatever became of the request itself; too large to keep:
    // not copied.
    if (mirrorTo && !mirrorBody.append(d)) {
      mirrorTo = nullptr;
      impl().mirrored[1]->inc();
    }
    if (upDone) {
      // Answered already: the rest of the body goes nowhere.
      down->consumed(d.size());
      down->flush();
      return;
    }
    pendingUp += d.size();
    if (replay.keeping && !replay.append(d)) policy.retry = nullptr;  // too large to keep: no more retries
    if (up && upId) {
      up->session->send(upId, d, false);
      bodySent = true;
      up->flush();
    } else {
      body.append(d);
      if (wake) wake->cancel();
    }
    if (!responded) deadline = Clock::now() + impl().opt.bodyTimeout;
  }
  void downTrailers(std::vector<h2::Field>&& t) { reqTrailers = std::move(t); }
  void downEnd() {
    reqEnd = true;
    if (mirrorTo && !finished) {
      mirrorRequest(conn, pin, *mirrorTo, view, ctx, std::move(mirrorBody.bytes));
      mirrorTo = nullptr;
      mirrorBody.drop();
    }
    if (!responded) deadline = Clock::now() + impl().opt.upstreamTimeout;
    if (up && upId && !upDone) {
      if (!reqTrailers.empty())
        up->session->trailers(upId, reqTrailers);
      else
        up->session->send(upId, {}, true);
      up->flush();
    }
    if (wake) wake->cancel();
  }
  void downSent(std::size_t n) {
    if (wakeDown) wakeDown->cancel();
    ctx.responseBytes += n;
    // Only what came from upstream is acknowledged there (not the proxy's own replies).
    const auto k = std::min(pendingDown, n);
    pendingDown -= k;
    if (k && up && flowId) {
      // Also after the stream closed: the connection's window counts these bytes.
      up->session->consumed(flowId, k);
      up->flush();
    }
    if (responded)  // the client is reading
      deadline = Clock::now() + (tunnel ? impl().opt.idleTimeout : impl().opt.bodyTimeout);
    if (wake) wake->cancel();
  }
  // The downstream stream is over (complete, reset by the client, or the connection gone).
  void downClose(std::uint32_t error) {
    if (finished) return;
    finished = true;
    if (!upDone && ctx.failure == Failure::none) ctx.failure = Failure::downstreamClosed;
    if (up && upId) {
      // Still open upstream (a response not done, or a request body it no longer wants): it
      // must not hold a stream of the shared connection.
      up->session->reset(upId, upDone ? h2::kNoError : h2::kCancel);
      up->flush();
    }
    if (!upDone && h1Up) h1Up->close();
    if (wakeDown) wakeDown->cancel();
    (void)error;
    if (wake) wake->cancel();
    if (pendingUp) {
      // Request body bytes no stream will carry now: acknowledged to the client's connection.
      down->consumed(pendingUp);
      down->flush();
      pendingUp = 0;
    }
    body.clear();
    if (pendingDown && up && flowId) {
      up->session->consumed(flowId, pendingDown);
      up->flush();
    }
    pendingDown = 0;
    release();
    inFlight.release();
    pending.release();
    if (logs) logPhase(w, ctx);
  }

  void release() {
    policy.tryEnded(w);
    if (counted) {
      w.balancer.finished(*counted);
      counted = nullptr;
    }
    if (up && upId) up->exchanges.erase(upId);
  }

  // --- Upstream (HTTP/2) events.
  h2::Head downHead(h2::Head&& head) {
    h2::Head dh;
    dh.status = head.status;
    dh.fields.reserve(head.fields.size() + ctx.downstreamHeaders.size());
    for (auto& f : head.fields) dh.fields.push_back(std::move(f));
    finishResponse(ctx, dh);
    return dh;
  }

  void responseFilters(const std::vector<h2::Field>& fields, int status) {
    if (impl().filters.empty()) return;
    h1::Head rv;
    rv.status = status;
    for (const auto& f : fields) rv.headers.push_back({f.name, f.value});
    for (auto& f : impl().filters) f->onResponse(ctx, rv);
  }

  void upHead(h2::Head&& head, bool end) {
    if (finished) return;
    if (head.tooLarge) {
      // Over the field limits: not relayed cut short.
      up->session->reset(upId, h2::kCancel);
      up->flush();
      release();
      upId = 0;
      upDone = responded;
      if (!responded) return reply(502, "upstream response head larger than the limit", Failure::badResponse);
      down->reset(h2::kInternalError);
      down->flush();
      return;
    }
    if (head.status < 200) {
      // A stream the client reset meanwhile takes nothing more (here and below).
      if (head.status != 100) down->respond(downHead(std::move(head)), false);
      down->flush();
      return;
    }
    if (ctx.direction == Direction::outbound && ctx.endpoint && head.status == 503 && !bodySent) {
      if (auto v = head.find("x-mesh-error"); v && *v == failureName(Failure::noRoute)) {
        // The peer no longer runs the instance: nothing reached an app, so it may go elsewhere.
        up->session->reset(upId, h2::kCancel);
        up->flush();
        release();
        if (retry(Failure::noEndpoint)) return;
        return reply(503, "no endpoint of '" + ctx.service + "' still runs it", Failure::noEndpoint);
      }
    }
    observe(w, cluster, ctx.endpoint, head.status);
    if (policy.retry && policy.retry->onStatus(head.status) && mayRetry()) {
      // A status the Route retries on: this response goes nowhere, the request goes again.
      up->session->reset(upId, h2::kCancel);
      up->flush();
      release();
      if (pendingDown && flowId) {
        up->session->consumed(flowId, pendingDown);
        pendingDown = 0;
      }
      return retryAfterBackoff();
    }
    ctx.upstreamHead = Clock::now();
    ctx.status = head.status;
    responseFilters(head.fields, head.status);
    responded = true;
    replay.drop();  // answered: no try will need it again
    deadline = Clock::now() + impl().opt.bodyTimeout;
    down->respond(downHead(std::move(head)), end);
    down->flush();
    if (end) upstreamComplete();
  }
  // The upstream's response is whole. A request still being sent is of no more use to it: its
  // stream is reset (NO_ERROR, RFC 9113 section 8.1) rather than left holding a slot of the
  // shared connection; what the client still sends is acknowledged and dropped.
  void upstreamComplete() {
    upDone = true;
    deadline = Clock::now() + impl().opt.bodyTimeout;  // for the client to take the response
    if (!reqEnd && up && upId) {
      up->session->reset(upId, h2::kNoError);
      up->flush();
    }
  }
  void upData(std::string_view d) {
    if (finished) {
      up->session->consumed(upId, d.size());
      up->flush();
      return;
    }
    pendingDown += d.size();
    down->send(d, false);
    deadline = Clock::now() + impl().opt.bodyTimeout;
    down->flush();
  }
  void upTrailers(std::vector<h2::Field>&& t) {
    trailersSeen = true;
    if (finished) return;
    down->trailers(t);
    down->flush();
    upstreamComplete();
  }
  void upEnd() {
    if (finished || upDone) return;
    if (!trailersSeen) down->send({}, true);
    down->flush();
    upstreamComplete();
  }
  void upSent(std::size_t n) {
    ctx.requestBytes += n;
    const auto k = std::min(pendingUp, n);
    pendingUp -= k;
    if (k) {
      down->consumed(k);
      down->flush();
    }
  }
  // The upstream stream closed; error: reset, or the connection failed (kInternalError).
  void upClose(std::uint32_t error) {
    policy.tryEnded(w);
    if (counted) {
      w.balancer.finished(*counted);
      counted = nullptr;
    }
    upId = 0;
    if (!finished && !upDone && !responded && error != h2::kRefusedStream) observe(w, cluster, ctx.endpoint, 0);
    if (!finished && !upDone && !responded) {
      // Refused (GOAWAY, REFUSED_STREAM): the peer did not process it, any request may go
      // again; otherwise only an idempotent one with no body. (What of the body is buffered
      // goes with the retry.)
      if ((error == h2::kRefusedStream && !bodySent) || replayable) {
        if (retry(Failure::upstreamReset)) return;
      }
      if (policy.retry && policy.retry->onCause(RouteRule::Retry::Cause::reset) && mayRetry()) return retryAfterBackoff();
    }
    if (pendingUp) {
      // Body bytes the stream will never carry: acknowledged, or the client's connection
      // window would shrink by them for good.
      down->consumed(pendingUp);
      down->flush();
      pendingUp = 0;
    }
    body.clear();
    if (finished || upDone) return;
    if (!responded) return reply(502, "upstream failed (upstream_reset)", Failure::upstreamReset);
    ctx.failure = Failure::upstreamReset;
    upDone = true;
    down->reset(h2::kInternalError);
    down->flush();
  }
  void connectFailed() {
    pending.release();
    if (finished) return;
    observe(w, cluster, ctx.endpoint, 0);
    up.reset();
    if (retry(Failure::connectFailed)) return;
    if (policy.retry && policy.retry->onCause(RouteRule::Retry::Cause::connectFailure) && mayRetry())
      return retryAfterBackoff();
    reply(503, "could not connect to an endpoint of '" + ctx.service + "'", Failure::connectFailed);
  }

  // The sweep found the deadline passed.
  void expire() {
    deadline = Clock::time_point::max();
    // An attempt under way (not a backoff between tries, whose last try was already observed);
    // with the whole request sent (a client that stalls its body is not the endpoint's fault).
    const bool attemptTimedOut = up != nullptr && reqEnd;
    if (upDone) {
      // Answered, but the client neither took the whole answer nor ended its request in time
      // (it stopped reading, or never sends END_STREAM): the stream goes, and the exchange is
      // logged and forgotten now.
      if (finished) return;
      if (ctx.failure == Failure::none) ctx.failure = Failure::downstreamClosed;
      down->reset(h2::kCancel);
      down->flush();
      auto self = shared_from_this();
      downClose(h2::kCancel);
      down->detach();
      return;
    }
    if (up && !upId) {
      // Still waiting for its connection: it no longer does.
      auto& q = up->waiting;
      q.erase(std::remove(q.begin(), q.end(), shared_from_this()), q.end());
      pending.release();
    }
    if (h1) {
      h1TimedOut = true;
      if (h1Up) h1Up->close();
      if (wake) wake->cancel();
      return;
    }
    if (up && upId) {
      up->session->reset(upId, h2::kCancel);
      up->flush();
      if (!responded && up->lastRead < ctx.upstreamStart) {
        // Nothing at all came on the connection since this request went: the peer is cut off
        // in a way TCP has not noticed. The connection goes (its other streams fail, idempotent
        // ones to another endpoint) and the next request opens a new one.
        w.impl.log->warn("HTTP/2 connection to {} silent since a request went {} ms ago: closed", up->key,
                         std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - ctx.upstreamStart).count());
        auto it = w.h2pool.find(up->key);
        if (it != w.h2pool.end() && it->second == up) w.h2pool.erase(it);
        up->closeStream();
      }
    }
    release();
    upId = 0;
    if (!responded && attemptTimedOut && ctx.endpoint) observe(w, cluster, ctx.endpoint, 0);
    if (!responded && attemptTimedOut && policy.retry && policy.retry->onCause(RouteRule::Retry::Cause::timeout) &&
        mayRetry())
      return retryAfterBackoff();
    if (!responded) return reply(504, "upstream timed out (upstream_timeout)", Failure::upstreamTimeout);
    ctx.failure = Failure::upstreamTimeout;
    upDone = true;
    down->reset(h2::kCancel);
    down->flush();
    deadline = Clock::now() + impl().opt.bodyTimeout;  // the reset must get out too
  }

  awaitable<void> waitWake() {
    if (!wake) wake.emplace(w.io);
    wake->expires_at(Clock::time_point::max());
    error_code ec;
    co_await wake->async_wait(tok(ec));
  }

  static awaitable<void> bridge(std::shared_ptr<Exchange> ex);
  static awaitable<void> websocket(std::shared_ptr<Exchange> ex);
  static awaitable<void> connectTunnel(std::shared_ptr<Exchange> ex);
  static awaitable<void> relayTunnel(std::shared_ptr<Exchange> ex, std::shared_ptr<Upstream> up,
                                     const Endpoint* endpoint);
  static awaitable<void> tunnelDown(std::shared_ptr<Exchange> ex, std::shared_ptr<Upstream> up);
  std::optional<asio::steady_timer> wakeDown;  // the WebSocket's upstream-to-client pump waits here
  // The egress phase's decision, for the bridge to resolve first; then its target.
  std::optional<EgressDecision> egress;
  LocalTarget external;
};

// Where a mirrored copy's response goes: nowhere. What it takes of the upstream connection's
// window is acknowledged at once, and its end (or reset) ends the exchange; both posted, never
// run from inside the session callback that delivered them.
struct NullDown final : Down {
  explicit NullDown(Worker& worker) : w(worker) {}
  Worker& w;
  std::weak_ptr<Exchange> ex;
  RequestContext ctx;  // the copy's own (it is not logged)
  void later(std::size_t taken, bool end) {
    // A strong reference: the upstream stream may close (and drop its own) before this runs,
    // and the bytes must still be acknowledged on the shared connection.
    auto e = ex.lock();
    if (!e) return;
    asio::post(w.io, [e = std::move(e), taken, end] {
      if (taken) e->downSent(taken);
      if (end) e->downClose(0);
    });
  }
  bool respond(const h2::Head&, bool end) override {
    if (end) later(0, true);
    return true;
  }
  void send(std::string_view d, bool end) override { later(d.size(), end); }
  void trailers(const std::vector<h2::Field>&) override { later(0, true); }
  void reset(std::uint32_t) override { later(0, true); }
  void consumed(std::size_t) override {}
  std::size_t queued() const override { return 0; }
  void flush() override {}
};

void mirrorRequest(const std::shared_ptr<Conn>& c, std::shared_ptr<const Snapshot> pin, const Cluster& mirror,
                   const h1::Head& req, const RequestContext& ctx, std::optional<std::string> body) {
  auto& w = c->worker;
  if ((req.framing != h1::Framing::none && !body) || w.mirrors >= kMaxMirrors) {
    w.impl.mirrored[1]->inc();
    return;
  }
  auto down = std::make_shared<NullDown>(w);
  down->ctx.direction = Direction::outbound;
  down->ctx.start = Clock::now();
  down->ctx.service = mirror.service;
  down->ctx.sourceAddress = ctx.sourceAddress;
  auto ex = std::make_shared<Exchange>(c, down, &down->ctx);
  down->ex = ex;
  ex->mirror = true;
  ++w.mirrors;
  w.bridged.insert(ex.get());
  ex->pin = std::move(pin);  // the snapshot `mirror` belongs to (the request was routed on it)
  ex->cluster = &mirror;
  ex->req.method = std::string(req.method);
  ex->req.scheme = "http";
  // As Envoy marks them: the shadow's authority says it is a copy.
  ex->req.authority = std::string(req.host.empty() ? std::string_view(mirror.service) : req.host) + "-shadow";
  ex->req.path = std::string(req.path.empty() ? std::string_view("/") : req.path);
  for (const auto& f : req.headers) {
    auto n = asciiLower(f.name);
    if (n == "expect" || namedIn(n, ctx.upstreamHeaders) || ctx.upstreamEdits.removes(n)) continue;
    ex->req.fields.push_back({std::move(n), std::string(f.value)});
  }
  for (const auto& f : ctx.upstreamHeaders) {
    if (!http::iequals(f.name, "host")) ex->req.fields.push_back({asciiLower(f.name), std::string(f.value)});
  }
  for (const auto& f : ctx.upstreamEdits.add) ex->req.fields.push_back({asciiLower(f.name), std::string(f.value)});
  ex->view.method = ex->req.method;
  ex->view.target = ex->view.path = ex->req.path;
  ex->view.host = ex->req.authority;
  for (const auto& f : ex->req.fields) ex->view.headers.push_back({f.name, f.value});
  ex->reqEnd = true;
  if (body) ex->body = std::move(*body);
  w.impl.mirrored[0]->inc();
  ex->attempt();
}

// ---------------------------------------------------------------------------------------------
// Handlers.

void H2Down::detach() {
  server->exchanges.erase(id);
  server->idleCheck();
}

void H2Server::onHead(std::int32_t id, h2::Head&& head, bool end) {
  if (head.status) return;  // a response on a server: nghttp2 refuses it before this
  if (closeWhenIdle) {
    // A GOAWAY is queued (draining, or the client was sent away): nothing new starts.
    session->reset(id, h2::kRefusedStream);
    flush();
    return;
  }
  auto ex = std::make_shared<Exchange>(c, std::static_pointer_cast<H2Server>(shared_from_this()), id);
  exchanges[id] = ex;
  c->setDeadline(Clock::time_point::max());
  ex->begin(std::move(head), end);
}
void H2Server::onData(std::int32_t id, std::string_view d) {
  if (auto* ex = find(id))
    ex->downData(d);
  else
    session->consumed(id, d.size());
}
void H2Server::onTrailers(std::int32_t id, std::vector<h2::Field>&& t) {
  if (auto* ex = find(id)) ex->downTrailers(std::move(t));
}
void H2Server::onEnd(std::int32_t id) {
  if (auto* ex = find(id)) ex->downEnd();
}
void H2Server::onClose(std::int32_t id, std::uint32_t error) {
  if (auto ex = take(id)) {
    // Whatever the code the client reset it with (NO_ERROR included): a stream that started
    // upstream work and ended before its response did.
    if (ex->started) {
      ++opened;
      // A tunnel answered 200 is the app's to end, a reset included (Go's client resets them).
      if (!ex->upDone && !(ex->tunnel && ex->responded)) ++cancelled;
    }
    ex->downClose(error);
  }
  if (cancelled >= 100 && cancelled * 2 > opened && !closeWhenIdle) {
    w.impl.log->warn("HTTP/2 client {} reset {} of {} streams: connection closed", c->sourceAddress, cancelled, opened);
    w.impl.errors(c->direction, Failure::badRequest).inc();
    session->goAway(h2::kEnhanceYourCalm);
    closeWhenIdle = true;
    // Its open streams end with it: no more upstream work on its behalf.
    auto open = std::move(exchanges);
    exchanges.clear();
    for (auto& [sid, ex] : open) {
      session->reset(sid, h2::kCancel);
      ex->downClose(h2::kCancel);
    }
    flush();
    return;
  }
  idleCheck();
}
void H2Server::onSent(std::int32_t id, std::size_t n) {
  if (auto* ex = find(id)) ex->downSent(n);
}

void H2Client::onHead(std::int32_t id, h2::Head&& head, bool end) {
  // A copy: a retry takes the exchange off this connection while it runs.
  auto it = exchanges.find(id);
  if (it == exchanges.end()) return;
  auto ex = it->second;
  ex->upHead(std::move(head), end);
}
void H2Client::onData(std::int32_t id, std::string_view d) {
  if (auto* ex = find(id))
    ex->upData(d);
  else
    session->consumed(id, d.size());
}
void H2Client::onTrailers(std::int32_t id, std::vector<h2::Field>&& t) {
  if (auto* ex = find(id)) ex->upTrailers(std::move(t));
}
void H2Client::onEnd(std::int32_t id) {
  if (auto* ex = find(id)) ex->upEnd();
}
void H2Client::onClose(std::int32_t id, std::uint32_t error) {
  if (auto ex = take(id)) ex->upClose(error);
  if (exchanges.empty()) idleSince = Clock::now();
  flush();
}
void H2Client::onSent(std::int32_t id, std::size_t n) {
  if (auto* ex = find(id)) ex->upSent(n);
}

awaitable<void> H2Client::run(Target t, std::shared_ptr<const Snapshot> pin) {
  auto self = std::static_pointer_cast<H2Client>(shared_from_this());
  auto& impl = w.impl;
  if (t.endpoint)
    up = std::make_unique<Upstream>(tcp::socket(w.io), *w.clientCtx);
  else
    up = std::make_unique<Upstream>(tcp::socket(w.io));
  up->key = key;
  if (t.cluster) up->idleTimeout = t.cluster->limits.idleTimeout;
  // A connect is rare (one per endpoint and worker): a timer of its own is cheap enough.
  asio::steady_timer timer(w.io, t.cluster && t.cluster->limits.connectTimeout.count() > 0
                                     ? t.cluster->limits.connectTimeout
                                     : impl.opt.connectTimeout);
  bool timedOut = false;
  timer.async_wait([this, self, &timedOut](error_code ec) {
    if (ec || state != State::connecting) return;
    timedOut = true;
    up->stream.close();
  });
  error_code ec;
  co_await dial(w, *up, t, kAlpnH2, sizeof kAlpnH2, ec);
  timer.cancel();
  if (!ec && timedOut) ec = asio::error::timed_out;
  if (!ec && t.endpoint && alpnOf(up->stream.ssl()) != "h2") ec = asio::error::no_protocol_option;
  if (!ec) {
    auto s = h2::Session::make(h2::Session::Role::client, *this, sessionSettings(impl.opt));
    if (s)
      session = std::move(*s);
    else
      ec = asio::error::no_memory;
  }
  auto forget = [&] {
    auto it = w.h2pool.find(key);
    if (it != w.h2pool.end() && it->second.get() == this) w.h2pool.erase(it);
  };
  if (ec) {
    state = State::dead;
    impl.connectFail[dir]->inc();
    impl.log->debug("HTTP/2 connect to {} failed: {}", key, ec.message());
    forget();
    auto waiters = std::move(waiting);
    for (auto& ex : waiters) ex->connectFailed();
    co_return;
  }
  impl.connectOk[dir]->inc();
  ++impl.upstreamOpen[dir];
  state = State::ready;
  auto waiters = std::move(waiting);
  for (auto& ex : waiters) ex->open();
  pin.reset();
  if (closeWhenIdle) {
    // Pruned or drained while connecting: it serves its waiters and goes.
    session->goAway();
    flush();
  }
  co_await readLoop({});
  state = State::dead;
  --impl.upstreamOpen[dir];
  forget();
  // Streams still open had no end: each is failed (and maybe tried again elsewhere).
  auto open = std::move(exchanges);
  exchanges.clear();
  for (auto& [id, ex] : open) ex->upClose(h2::kInternalError);
}

// ---------------------------------------------------------------------------------------------
// A WebSocket over HTTP/2 (extended CONNECT, RFC 8441) from an app: an HTTP/1.1 upgrade
// (RFC 6455's handshake, its key made and its answer checked here) to an endpoint's proxy, over
// the mesh's mTLS as every upgrade goes; then the stream's DATA and the connection's bytes are
// relayed both ways, each acknowledged (flow control) as the other side takes it.

awaitable<void> Exchange::websocket(std::shared_ptr<Exchange> ex) {
  auto& w = ex->w;
  auto& impl = w.impl;
  auto& ctx = ex->ctx;
  Target t;
  std::shared_ptr<Upstream> up;
  if (ex->egress) {
    // To an external host the egress phase allows: the upgrade goes to it directly (over TLS
    // when the policy originates it).
    const auto& d = *ex->egress;
    const auto resolved = co_await externalTarget(w, d, ex->external);
    if (ex->finished || ex->refusedExternal(resolved)) co_return;
    t.local = &ex->external;
    up = t.local->tls ? std::make_shared<Upstream>(tcp::socket(w.io), *w.egressCtx)
                      : std::make_shared<Upstream>(tcp::socket(w.io));
    up->key = t.local->poolKey;
  } else {
    t.cluster = ex->cluster;
    t.endpoint = w.balancer.pick(*ex->cluster, hashInput(*ex->cluster, ex->view, ctx.sourceAddress));
    if (!t.endpoint) co_return ex->reply(503, "no healthy endpoint of service '" + ctx.service + "'", Failure::noEndpoint);
    ctx.endpoint = t.endpoint;
    up = std::make_shared<Upstream>(tcp::socket(w.io), *w.clientCtx);
    up->key = t.endpoint->key;
  }
  const int dir = t.endpoint ? 0 : 1;
  ex->h1Up = &up->stream;  // a client reset closes it
  error_code ec;
  // ALPN only between proxies: an external host is spoken to as any client would.
  co_await dialWithin(w, up, t, t.endpoint ? kAlpnHttp : nullptr, t.endpoint ? sizeof kAlpnHttp : 0,
                      impl.opt.connectTimeout, ec);
  if (ec || ex->finished) {
    impl.connectFail[dir]->inc();
    ex->h1Up = nullptr;
    if (!ex->finished) {
      ex->reply(503,
                t.endpoint ? "could not connect to an endpoint of '" + ctx.service + "'"
                           : "could not connect to '" + ex->req.authority + "'",
                Failure::connectFailed);
    }
    co_return;
  }
  const CountedOpen counted(impl, dir);
  // The handshake: the app's fields (its subprotocols and extensions among them) less those of
  // HTTP/2 and of the key, which is made here.
  std::string rnd(16, '\0');
  for (int i = 0; i < 2; ++i) {
    auto v = w.balancer.draw();
    std::memcpy(rnd.data() + 8 * i, &v, 8);
  }
  const std::string key = base64Encode(rnd);
  std::string out = "GET " + (ex->req.path.empty() ? std::string("/") : ex->req.path) + " HTTP/1.1\r\nhost: " +
                    ex->req.authority + "\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: " + key +
                    "\r\n";
  for (const auto& f : ex->req.fields) {
    if (f.name == "sec-websocket-key" || f.name == "host" || h2::connectionSpecific(f.name, f.value)) continue;
    if (namedIn(f.name, ctx.upstreamHeaders)) continue;
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  if (!ex->req.find("sec-websocket-version")) out.append("sec-websocket-version: 13\r\n");
  for (const auto& f : ctx.upstreamHeaders) out.append(f.name).append(": ").append(f.value).append("\r\n");
  out.append("\r\n");
  ctx.upstreamStart = Clock::now();
  co_await up->stream.write(asio::buffer(out), ec);
  h1::Head resp;
  for (;;) {
    if (ec) break;
    auto pr = h1::parseResponse(up->buf.view(), impl.opt.limits, "GET", resp);
    if (pr.state == h1::Parse::error) {
      ec = asio::error::invalid_argument;
      break;
    }
    if (pr.state == h1::Parse::complete) break;
    auto n = co_await up->stream.read(up->buf.prepare(), ec);
    up->buf.commit(n);
    if (n == 0 && ec) break;
  }
  if (ex->finished) co_return;
  if (ec) {
    ex->h1Up = nullptr;
    co_return ex->reply(502, "the WebSocket upgrade got no answer (upstream_reset)", Failure::upstreamReset);
  }
  ctx.upstreamHead = Clock::now();
  // RFC 6455 section 4.1: the server proves it read our key.
  std::string accept;
  {
    const std::string g = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(g.data()), g.size(), md);
    accept = base64Encode(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
  }
  auto got = resp.find("sec-websocket-accept");
  if (resp.status != 101 || !got || *got != accept) {
    // Refused (or not a WebSocket server): its status goes to the app, the stream ends.
    ex->h1Up = nullptr;
    const int status = resp.status == 101 ? 502 : resp.status;
    co_return ex->reply(status, "the upstream did not accept the WebSocket (status " + std::to_string(resp.status) + ")",
                        resp.status == 101 ? Failure::badResponse : Failure::none);
  }
  h2::Head dh;
  dh.status = 200;
  for (const auto& f : resp.headers) {
    auto n = asciiLower(f.name);
    if (n == "sec-websocket-protocol" || n == "sec-websocket-extensions") dh.fields.push_back({n, std::string(f.value)});
  }
  finishResponse(ctx, dh);
  ctx.status = 200;
  ex->responded = true;
  ex->down->respond(dh, false);
  ex->down->flush();
  up->buf.consume(resp.headBytes);
  co_await relayTunnel(ex, up, t.endpoint);
}

// CONNECT host:port over HTTP/2 from an app (RFC 9113 section 8.5), as HTTP/1.1's CONNECT: a
// byte tunnel to an instance of the service (over mTLS to its node, ALPN mesh-tcp/1, spliced
// there to the instance; another endpoint tried when one does not answer) or to an external
// host the egress phase allows; answered 200 once connected, then the stream's DATA both ways.
awaitable<void> Exchange::connectTunnel(std::shared_ptr<Exchange> ex) {
  auto& w = ex->w;
  auto& impl = w.impl;
  auto& ctx = ex->ctx;
  if (ex->egress) {
    const auto& d = *ex->egress;
    const auto resolved = co_await externalTarget(w, d, ex->external);
    if (ex->finished || ex->refusedExternal(resolved)) co_return;
    ex->local = &ex->external;
  }
  std::string exclude;
  const int attempts = ex->cluster ? impl.opt.connectAttempts : 1;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    Target t;
    if (ex->cluster) {
      t.cluster = ex->cluster;
      t.endpoint = w.balancer.pick(*ex->cluster, hashInput(*ex->cluster, ex->view, ctx.sourceAddress), exclude);
      if (!t.endpoint) break;
      ctx.endpoint = t.endpoint;
      ++ctx.attempts;
    } else {
      t.local = ex->local;
    }
    const int dir = t.endpoint ? 0 : 1;
    auto up = t.endpoint ? std::make_shared<Upstream>(tcp::socket(w.io), *w.clientCtx)
                         : std::make_shared<Upstream>(tcp::socket(w.io));
    up->key = t.endpoint ? t.endpoint->key : t.local->poolKey;
    ex->h1Up = &up->stream;  // a client reset closes it
    error_code ec;
    const auto timeout = t.cluster && t.cluster->limits.connectTimeout.count() > 0 ? t.cluster->limits.connectTimeout
                                                                                  : impl.opt.connectTimeout;
    co_await dialWithin(w, up, t, t.endpoint ? kAlpnTunnel : nullptr, t.endpoint ? sizeof kAlpnTunnel : 0, timeout,
                        ec);
    if (ex->finished) {
      ex->h1Up = nullptr;
      co_return;
    }
    if (ex->h1TimedOut) {
      // The exchange's own deadline passed meanwhile (a client that sent its end long ago).
      ex->h1Up = nullptr;
      co_return ex->reply(504, "no tunnel to '" + ex->req.authority + "' in time", Failure::upstreamTimeout);
    }
    if (ec) {
      ex->h1Up = nullptr;
      impl.connectFail[dir]->inc();
      if (t.endpoint) exclude = t.endpoint->key;
      continue;
    }
    const CountedOpen counted(impl, dir);
    ctx.upstreamStart = ctx.upstreamHead = Clock::now();
    h2::Head dh;
    dh.status = 200;
    finishResponse(ctx, dh);
    ctx.status = 200;
    ex->responded = true;
    ex->down->respond(dh, false);
    ex->down->flush();
    co_await relayTunnel(ex, up, t.endpoint);
    co_return;
  }
  if (ex->finished) co_return;
  if (!ex->cluster) {
    co_return ex->reply(503, "could not connect to '" + ex->req.authority + "'", Failure::connectFailed);
  }
  ex->reply(503,
            ctx.attempts ? "could not connect to an endpoint of '" + ctx.service + "'"
                         : "no healthy endpoint of service '" + ctx.service + "'",
            ctx.attempts ? Failure::connectFailed : Failure::noEndpoint);
}

// A tunnel's bytes both ways once the stream was answered 200: the stream's DATA to the
// connection (this coroutine) and the connection's bytes to the stream (tunnelDown), each
// acknowledged (flow control) as the other side takes it.
awaitable<void> Exchange::relayTunnel(std::shared_ptr<Exchange> ex, std::shared_ptr<Upstream> up,
                                      const Endpoint* endpoint) {
  auto& w = ex->w;
  auto& ctx = ex->ctx;
  error_code ec;
  if (endpoint) w.balancer.started(*endpoint);
  // A tunnel lasts while bytes move either way; idle for the proxy's idle timeout, it goes.
  ex->deadline = Clock::now() + w.impl.opt.idleTimeout;
  // Upstream to client, beside this coroutine's client to upstream.
  asio::co_spawn(w.io, tunnelDown(ex, up), asio::detached);
  for (;;) {
    if (ex->finished) break;
    if (!ex->body.empty()) {
      std::string chunk = std::move(ex->body);
      ex->body.clear();
      co_await up->stream.write(asio::buffer(chunk), ec);
      if (ec) break;
      ex->deadline = Clock::now() + w.impl.opt.idleTimeout;
      ctx.requestBytes += chunk.size();
      const auto k = std::min(ex->pendingUp, chunk.size());
      ex->pendingUp -= k;
      ex->down->consumed(chunk.size());
      ex->down->flush();
      continue;
    }
    if (ex->reqEnd) {
      up->stream.shutdownSend();  // the app closed its side: so do we (half-closed, as TCP)
      break;
    }
    co_await ex->waitWake();
  }
  if (ec) up->stream.close();  // the other pump's read fails and ends the stream
  // Over when the other way is too (the upstream's end relayed) or the stream is gone.
  while (!ex->upDone && !ex->finished) co_await ex->waitWake();
  up->stream.close();
  ex->h1Up = nullptr;
  if (endpoint) w.balancer.finished(*endpoint);
}

awaitable<void> Exchange::tunnelDown(std::shared_ptr<Exchange> ex, std::shared_ptr<Upstream> up) {
  auto& impl = ex->w.impl;
  error_code ec;
  std::vector<char> b(16 * 1024);
  for (;;) {
    if (!up->buf.empty()) {
      auto v = up->buf.view();
      ex->down->send(v, false);
      ex->ctx.responseBytes += v.size();
      up->buf.consume(v.size());
      ex->down->flush();
    }
    if (ex->finished) break;
    // Held back while the client has not taken what it was given.
    while (!ex->finished && ex->down->queued() > 256 * 1024) {
      if (!ex->wakeDown) ex->wakeDown.emplace(ex->w.io);
      ex->wakeDown->expires_at(Clock::time_point::max());
      error_code we;
      co_await ex->wakeDown->async_wait(tok(we));
    }
    if (ex->finished) break;
    auto n = co_await up->stream.read(asio::buffer(b), ec);
    if (n > 0) {
      ex->down->send(std::string_view(b.data(), n), false);
      ex->ctx.responseBytes += n;
      ex->down->flush();
      ex->deadline = Clock::now() + impl.opt.idleTimeout;
    }
    if (ec) break;
  }
  const bool failed = ec && ec != asio::error::eof && ec != asio::ssl::error::stream_truncated;
  if (!ex->finished) {
    // The upstream closed its side: so does the stream (END_STREAM), and the app may still send
    // (a half-close, as TCP). It failed: the stream is reset.
    if (failed)
      ex->down->reset(h2::kCancel);
    else
      ex->down->send({}, true);
    ex->down->flush();
  }
  ex->upDone = true;
  if (failed) up->stream.close();
  if (ex->wake) ex->wake->cancel();  // the other pump learns of it
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 request -> HTTP/1.1 app (inbound, protocol http): the request is written as HTTP/1.1
// (chunked when its length is not known), the response read back and framed as HTTP/2.

awaitable<void> Exchange::bridge(std::shared_ptr<Exchange> ex) {
  auto& w = ex->w;
  auto& impl = w.impl;
  auto& ctx = ex->ctx;
  auto fail = [&](int status, Failure f, const char* what) {
    if (ex->responded) {
      ctx.failure = f;
      ex->upDone = true;
      if (!ex->finished) {
        ex->down->reset(h2::kInternalError);
        ex->down->flush();
      }
      return;
    }
    ex->reply(status, std::string(what) + " (" + failureName(f) + ")", f);
  };
  if (ex->egress) {
    // An external host (egress): resolved first.
    const auto& d = *ex->egress;
    const auto resolved = co_await externalTarget(w, d, ex->external);
    if (ex->finished || ex->refusedExternal(resolved)) co_return;
    if (ex->h1TimedOut) {
      ex->reply(504, "external host '" + d.host + "' did not resolve in time", Failure::upstreamTimeout);
      co_return;
    }
    ex->local = &ex->external;
  }
  Target t;
  t.local = ex->local;
  std::unique_ptr<Upstream> up = w.take(t.local->poolKey);
  if (!up) {
    if (t.local->tls)
      up = std::make_unique<Upstream>(tcp::socket(w.io), *w.egressCtx);
    else
      up = std::make_unique<Upstream>(tcp::socket(w.io));
    up->key = t.local->poolKey;
    ex->h1Up = &up->stream;
    ex->deadline = Clock::now() + impl.opt.connectTimeout;
    error_code ec;
    co_await dial(w, *up, t, nullptr, 0, ec);
    ex->h1Up = nullptr;
    if (ec || ex->h1TimedOut) {
      impl.connectFail[1]->inc();
      if (!ex->finished)
        fail(503, Failure::connectFailed,
             t.local->external ? "could not connect to the external host" : "could not connect to the local instance");
      co_return;
    }
    impl.connectOk[1]->inc();
    ++impl.upstreamOpen[up->stream.tls() ? 0 : 1];  // as every release counts it down
  }
  if (ex->finished) {
    w.giveBack(std::move(up));
    co_return;
  }
  ex->h1Up = &up->stream;
  struct Clear {
    Exchange* e;
    ~Clear() { e->h1Up = nullptr; }
  } clear{ex.get()};
  bool keep = true;
  auto drop = [&] {
    if (up) --impl.upstreamOpen[up->stream.tls() ? 0 : 1];
    up.reset();
  };
  // Request head.
  const auto& req = ex->req;
  std::string out;
  out.reserve(512);
  out.append(req.method).append(" ").append(req.path.empty() ? "/" : req.path).append(" HTTP/1.1\r\nhost: ");
  out.append(req.authority.empty() ? std::string(ex->view.host) : req.authority).append("\r\n");
  std::string cookies;
  for (const auto& f : req.fields) {
    if (h2::connectionSpecific(f.name, f.value) || namedIn(f.name, ctx.upstreamHeaders)) continue;
    if (f.name == "cookie") {
      // HTTP/2 may split cookies into fields; HTTP/1.1 wants one (RFC 9113 section 8.2.3).
      cookies.append(cookies.empty() ? "" : "; ").append(f.value);
      continue;
    }
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  if (!cookies.empty()) out.append("cookie: ").append(cookies).append("\r\n");
  for (const auto& f : ctx.upstreamHeaders) out.append(f.name).append(": ").append(f.value).append("\r\n");
  const bool hasLength = req.find("content-length") != nullptr;
  bool chunked = false;
  if (ex->reqEnd && ex->body.empty() && ex->reqTrailers.empty()) {
    if (!hasLength && (req.method == "POST" || req.method == "PUT" || req.method == "PATCH"))
      out.append("content-length: 0\r\n");
  } else if (!hasLength) {
    chunked = true;
    out.append("transfer-encoding: chunked\r\n");
  }
  out.append("\r\n");
  ctx.upstreamStart = Clock::now();
  ex->deadline = ctx.upstreamStart + impl.opt.bodyTimeout;
  // Request body, as it comes.
  for (;;) {
    std::string chunk = std::move(ex->body);
    ex->body.clear();
    const bool end = ex->reqEnd;
    if (chunked && !chunk.empty()) {
      appendChunkSize(out, chunk.size());
      out.append(chunk).append("\r\n");
    } else {
      out.append(chunk);
    }
    if (chunked && end) {
      out.append("0\r\n");
      for (const auto& f : ex->reqTrailers) out.append(f.name).append(": ").append(f.value).append("\r\n");
      out.append("\r\n");
    }
    if (!out.empty()) {
      error_code ec;
      co_await up->stream.write(asio::buffer(out), ec);
      if (ec || ex->finished) {
        drop();
        if (!ex->finished) fail(ex->h1TimedOut ? 504 : 502, ex->h1TimedOut ? Failure::upstreamTimeout : Failure::upstreamReset,
                                "upstream failed");
        co_return;
      }
      out.clear();
    }
    if (!chunk.empty()) {
      ctx.requestBytes += chunk.size();
      ex->pendingUp -= std::min(ex->pendingUp, chunk.size());
      ex->down->consumed(chunk.size());
      ex->down->flush();
      ex->deadline = Clock::now() + impl.opt.bodyTimeout;
    }
    if (end) break;
    if (ex->body.empty() && !ex->reqEnd && !ex->finished && !ex->h1TimedOut) co_await ex->waitWake();
    if (ex->finished || ex->h1TimedOut) {
      drop();
      if (!ex->finished) fail(408, Failure::requestTimeout, "the request body stopped coming");
      co_return;
    }
  }
  // Response head (interim ones passed on, but 101: HTTP/2 has no upgrade).
  ex->deadline = Clock::now() + impl.opt.upstreamTimeout;
  h1::Head resp;
  for (;;) {
    auto pr = h1::parseResponse(up->buf.view(), impl.opt.limits, req.method, resp);
    if (pr.state == h1::Parse::error || (pr.state == h1::Parse::complete && resp.framing == h1::Framing::tunnel)) {
      drop();
      fail(502, Failure::badResponse, "upstream sent a response that cannot be relayed");
      co_return;
    }
    if (pr.state == h1::Parse::complete) {
      if (resp.status >= 100 && resp.status < 200) {
        if (resp.status != 100 && !ex->finished) {
          h2::Head interim;
          interim.status = resp.status;
          for (const auto& f : resp.headers) {
            interim.fields.push_back({asciiLower(f.name), std::string(f.value)});
          }
          ex->down->respond(interim, false);
          ex->down->flush();
        }
        up->buf.consume(resp.headBytes);
        continue;
      }
      break;
    }
    error_code ec;
    auto n = co_await up->stream.read(up->buf.prepare(), ec);
    up->buf.commit(n);
    if (ex->finished) {
      drop();
      co_return;
    }
    if (n == 0 && ec) {
      drop();
      fail(ex->h1TimedOut ? 504 : 502, ex->h1TimedOut ? Failure::upstreamTimeout : Failure::upstreamReset,
           ex->h1TimedOut ? "upstream timed out" : "upstream failed");
      co_return;
    }
  }
  ctx.upstreamHead = Clock::now();
  ctx.status = resp.status;
  for (auto& f : impl.filters) f->onResponse(ctx, resp);
  h2::Head dh;
  dh.status = resp.status;
  for (const auto& f : resp.headers) {
    dh.fields.push_back({asciiLower(f.name), std::string(f.value)});
  }
  finishResponse(ctx, dh);
  const auto framing = resp.framing;
  std::uint64_t left = resp.contentLength;
  keep = resp.keepAlive && framing != h1::Framing::untilClose;
  const bool noBody = framing == h1::Framing::none || (framing == h1::Framing::length && left == 0);
  up->buf.consume(resp.headBytes);
  ex->responded = true;
  ex->down->respond(dh, noBody);
  ex->down->flush();
  ex->deadline = Clock::now() + impl.opt.bodyTimeout;
  // Response body, decoded from its HTTP/1.1 framing into DATA (and trailers).
  h1::ChunkedScanner scanner;
  std::string data, trailerLines;
  bool done = noBody;
  while (!done) {
    if (!up->buf.empty()) {
      auto v = up->buf.view();
      data.clear();
      std::size_t used = 0;
      if (framing == h1::Framing::length) {
        used = static_cast<std::size_t>(std::min<std::uint64_t>(left, v.size()));
        data.assign(v.substr(0, used));
        left -= used;
        done = left == 0;
      } else if (framing == h1::Framing::chunked) {
        auto st = scanner.feed(v, &data, &trailerLines);
        if (st.error) {
          up->buf.consume(v.size());
          drop();
          fail(502, Failure::badResponse, "bad chunked encoding from upstream");
          co_return;
        }
        used = st.used;
        done = st.done;
      } else {
        used = v.size();
        data.assign(v);
      }
      up->buf.consume(used);
      if (ex->finished) {
        drop();
        co_return;
      }
      if (!data.empty() || done) {
        if (done && framing == h1::Framing::chunked && !trailerLines.empty()) {
          if (!data.empty()) ex->down->send(data, false);
          std::vector<h2::Field> tf;
          for (auto [n, val] : h1::trailerFields(trailerLines)) {
            tf.push_back({asciiLower(n), std::string(val)});
          }
          ex->down->trailers(tf);
        } else {
          ex->down->send(data, done);
        }
        ex->down->flush();
      }
      continue;
    }
    // Held back while the client's window keeps what was sent from going.
    while (!ex->finished && !ex->h1TimedOut && ex->down->queued() > kHighWater)
      co_await ex->waitWake();
    if (ex->finished || ex->h1TimedOut) {
      drop();
      if (!ex->finished) fail(504, Failure::upstreamTimeout, "the client stopped reading");
      co_return;
    }
    ex->deadline = Clock::now() + impl.opt.bodyTimeout;
    error_code ec;
    auto n = co_await up->stream.read(up->buf.prepare(), ec);
    up->buf.commit(n);
    if (n == 0 && ec) {
      if (framing == h1::Framing::untilClose && !ex->h1TimedOut && !ex->finished) {
        ex->down->send({}, true);
        ex->down->flush();
        keep = false;
        break;
      }
      drop();
      if (!ex->finished)
        fail(502, ex->h1TimedOut ? Failure::upstreamTimeout : Failure::upstreamReset, "upstream failed");
      co_return;
    }
  }
  ex->upDone = true;
  ex->deadline = Clock::time_point::max();
  if (keep && up)
    w.giveBack(std::move(up));
  else
    drop();
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client -> HTTP/2 upstream: the relay coroutine reads the request body and writes the
// response as HTTP/1.1 (chunked when the upstream gave no length, trailers in the last chunk);
// the exchange does the rest as for an HTTP/2 client.

namespace {

struct H1Down final : Down {
  H1Down(Worker& w, bool head, int minor, bool keep) : wake(w.io), headRequest(head), minorVersion(minor), keepAlive(keep) {}
  asio::steady_timer wake;
  std::string out;               // response bytes to write
  std::size_t outBody = 0;       // of which body bytes (acknowledged upstream once written)
  std::size_t acked = 0;         // request body bytes the upstream took
  bool headRequest;
  int minorVersion;
  bool keepAlive;
  bool final = false, chunked = false, noBody = false, ended = false, failed = false;
  int status = 0;
  // The request body read in progress: an answer (or a failure) before the body ended stops it,
  // so that the answer goes out now rather than when the client sends more.
  Stream* reading = nullptr;
  void stopReading() {
    if (!reading) return;
    error_code ec;
    reading->socket().cancel(ec);
  }

  bool respond(const h2::Head& h, bool end) override {
    char code[12];
    const auto printed = std::to_chars(code, code + sizeof code, h.status);
    out.append("HTTP/1.1 ").append(code, printed.ptr).append(" ").append(http::reasonPhrase(h.status)).append("\r\n");
    bool hasLength = false;
    for (const auto& f : h.fields) {
      if (f.name == "content-length") hasLength = true;
      out.append(f.name).append(": ").append(f.value).append("\r\n");
    }
    if (h.status >= 200) {
      final = true;
      status = h.status;
      const bool bodyless = headRequest || h.status == 204 || h.status == 304;
      if (end || bodyless) {
        noBody = true;
        if (!hasLength && !bodyless) out.append("content-length: 0\r\n");
      } else if (!hasLength) {
        if (minorVersion >= 1) {
          chunked = true;
          out.append("transfer-encoding: chunked\r\n");
        } else {
          keepAlive = false;  // HTTP/1.0: the body ends with the connection
        }
      }
      if (!keepAlive) out.append("connection: close\r\n");
      if (end) {
        ended = true;
        stopReading();
      }
    }
    out.append("\r\n");
    flush();
    return true;
  }
  void send(std::string_view d, bool end) override {
    if (!noBody && !d.empty()) {
      if (chunked) {
        appendChunkSize(out, d.size());
        out.append(d).append("\r\n");
      } else {
        out.append(d);
      }
    }
    outBody += d.size();
    if (end) {
      if (chunked) out.append("0\r\n\r\n");
      ended = true;
      stopReading();
    }
  }
  void trailers(const std::vector<h2::Field>& t) override {
    if (chunked) {
      out.append("0\r\n");
      for (const auto& f : t) out.append(f.name).append(": ").append(f.value).append("\r\n");
      out.append("\r\n");
    }
    ended = true;
    stopReading();
  }
  void reset(std::uint32_t) override {
    failed = true;
    stopReading();
    flush();
  }
  void consumed(std::size_t n) override {
    acked += n;
    flush();
  }
  std::size_t queued() const override { return out.size(); }
  void flush() override { wake.cancel(); }

  awaitable<void> wait() {
    wake.expires_at(Clock::time_point::max());
    error_code ec;
    co_await wake.async_wait(tok(ec));
  }
};

}  // namespace

awaitable<bool> relayH1ViaH2(std::shared_ptr<Conn> c, std::shared_ptr<const Snapshot> pin, h1::Head& req,
                             RequestContext& ctx, const Cluster* cluster, const LocalTarget* local) {
  auto& w = c->worker;
  auto& impl = w.impl;
  auto down = std::make_shared<H1Down>(w, req.method == "HEAD", req.minorVersion, req.keepAlive && !w.draining);
  auto ex = std::make_shared<Exchange>(c, down, &ctx);
  ex->view = req;
  ex->pin = std::move(pin);  // the snapshot `cluster` and the route's pointers are into
  ex->cluster = cluster;
  ex->local = local;
  ex->req.method = std::string(req.method);
  ex->req.scheme = "http";
  ex->req.authority = req.host.empty() ? ctx.service : std::string(req.host);
  ex->req.path = std::string(req.path.empty() ? std::string_view("/") : req.path);
  for (const auto& f : req.headers) {
    // Connection-specific fields are Session::request()'s to leave out; Expect was answered here.
    auto n = asciiLower(f.name);
    if (n != "expect") ex->req.fields.push_back({std::move(n), std::string(f.value)});
  }
  editRequest(ex->req.fields, ctx.upstreamEdits);
  ex->reqEnd = req.framing == h1::Framing::none;
  ex->replayable = idempotent(req.method) && ex->reqEnd;
  ex->setupPolicy();
  // The HTTP/1.1 relay left a mirror of a request with a body to the exchange (its body comes
  // through it).
  if (ctx.mirror && !ex->reqEnd) ex->mirrorWhenWhole(ctx.mirror);
  // The exchange's own deadline (the sweep) bounds the wait for the upstream from here on.
  c->setDeadline(Clock::time_point::max());
  w.bridged.insert(ex.get());
  struct Unlist {
    Worker& w;
    Exchange* e;
    ~Unlist() { w.bridged.erase(e); }
  } unlist{w, ex.get()};
  if (ex->admit()) ex->attempt();

  // Request body, decoded from its HTTP/1.1 framing, handed on as the upstream takes it.
  bool ok = true, bodyRead = ex->reqEnd;
  if (!bodyRead) {
    std::uint64_t left = req.contentLength;
    h1::ChunkedScanner scanner;
    std::string data, trailerLines;
    std::uint64_t given = 0;
    while (!bodyRead && ok) {
      if (!c->buf.empty()) {
        auto v = c->buf.view();
        data.clear();
        std::size_t used;
        if (req.framing == h1::Framing::length) {
          used = static_cast<std::size_t>(std::min<std::uint64_t>(left, v.size()));
          data.assign(v.substr(0, used));
          left -= used;
          bodyRead = left == 0;
        } else {
          auto st = scanner.feed(v, &data, &trailerLines);
          if (st.error) {
            ctx.failure = Failure::badRequest;
            ok = false;
            break;
          }
          used = st.used;
          bodyRead = st.done;
        }
        c->buf.consume(used);
        given += data.size();
        if (!data.empty()) ex->downData(data);
        if (bodyRead) {
          if (!trailerLines.empty()) {
            std::vector<h2::Field> tf;
            for (auto [n, val] : h1::trailerFields(trailerLines)) tf.push_back({asciiLower(n), std::string(val)});
            ex->downTrailers(std::move(tf));
          }
          ex->downEnd();
        }
        continue;
      }
      // Held back while the upstream has not taken what it was given (its window is closed).
      while (given - down->acked > kHighWater && !ex->upDone && !down->failed) co_await down->wait();
      if (ex->upDone || down->failed) break;  // answered (or failed) before the body ended
      c->after(impl.opt.bodyTimeout);
      error_code ec;
      down->reading = &c->down;
      auto n = co_await c->down.read(c->buf.prepare(), ec);
      down->reading = nullptr;
      c->buf.commit(n);
      c->setDeadline(Clock::time_point::max());
      if (n == 0 && ec) {
        if ((down->ended || down->failed) && !c->timedOut) break;  // answered meanwhile: stop reading
        ctx.failure = c->timedOut ? Failure::requestTimeout : Failure::downstreamClosed;
        ok = false;
      }
    }
    if (!ok) {
      ex->downClose(h2::kCancel);
      co_return false;
    }
  }
  // Response, as the exchange queues it.
  for (;;) {
    if (!down->out.empty()) {
      std::string bytes = std::move(down->out);
      down->out.clear();
      const std::size_t body = down->outBody;
      down->outBody = 0;
      error_code ec;
      c->after(impl.opt.bodyTimeout);  // a client that stops reading is cut off
      co_await c->down.write(asio::buffer(bytes), ec);
      c->setDeadline(Clock::time_point::max());
      if (ec) {
        if (ctx.failure == Failure::none) ctx.failure = Failure::downstreamClosed;
        ex->downClose(h2::kCancel);
        co_return false;
      }
      ex->downSent(body);
      // Heads and framing (downSent counted the body; a body the client may not get, as after a
      // HEAD, was counted there and not written).
      ctx.responseBytes += bytes.size() > body ? bytes.size() - body : 0;
      continue;
    }
    if (down->ended || down->failed) break;
    co_await down->wait();
  }
  const bool keep = ok && bodyRead && !down->failed && down->keepAlive && ex->ctx.failure == Failure::none;
  ex->downClose(down->failed ? h2::kCancel : h2::kNoError);
  c->after(impl.opt.idleTimeout);
  co_return keep && !w.draining;
}

// ---------------------------------------------------------------------------------------------

awaitable<void> serveH2(std::shared_ptr<Conn> c) {
  auto& w = c->worker;
  auto s = std::make_shared<H2Server>(c);
  auto settings = sessionSettings(w.impl.opt);
  // Apps may open WebSockets over HTTP/2 (extended CONNECT, RFC 8441) on the outbound listener.
  settings.enableConnectProtocol = c->direction == Direction::outbound;
  auto made = h2::Session::make(h2::Session::Role::server, *s, settings);
  if (!made) co_return;
  s->session = std::move(*made);
  if (w.draining) {
    s->session->goAway();
    s->closeWhenIdle = true;
  }
  c->after(w.impl.opt.idleTimeout);
  std::string initial(c->buf.view());
  c->buf.consume(initial.size());
  co_await s->readLoop(initial);
  // The connection is gone: what is still open ends here (the client will not see it).
  auto open = std::move(s->exchanges);
  s->exchanges.clear();
  for (auto& [id, ex] : open) ex->downClose(h2::kCancel);
  s->closed = true;
}

void sweepH2(Worker& w, Clock::time_point now, bool pools) {
  std::vector<std::shared_ptr<Exchange>> expired;
  for (auto* s : w.h2servers) {
    for (auto& [id, ex] : s->exchanges) {
      if (ex->deadline <= now) expired.push_back(ex);
    }
  }
  for (auto* ex : w.bridged) {
    if (ex->deadline <= now) expired.push_back(ex->shared_from_this());
  }
  for (auto& ex : expired) ex->expire();
  if (!pools) return;
  std::vector<std::shared_ptr<H2Client>> idle;
  for (auto& [key, cl] : w.h2pool) {
    if (cl->state == H2Client::State::ready && cl->exchanges.empty() &&
        now - cl->idleSince >= cl->up->idleLimit(w.impl.opt.poolIdleTimeout))
      idle.push_back(cl);
  }
  for (auto& cl : idle) {
    w.h2pool.erase(cl->key);
    cl->session->goAway();
    cl->closeWhenIdle = true;
    cl->flush();
  }
}

void pruneH2(Worker& w, const Snapshot& snap) {
  std::vector<std::shared_ptr<H2Client>> gone;
  for (auto& [key, cl] : w.h2pool) {
    if (!knownKey(snap, key)) gone.push_back(cl);
  }
  for (auto& cl : gone) {
    // Not used for new requests; the ones it carries finish (or fail when the node is dead).
    w.h2pool.erase(cl->key);
    cl->closeWhenIdle = true;  // a connecting one goes once connected (run())
    if (cl->state == H2Client::State::ready) {
      cl->session->goAway();
      cl->flush();
    }
  }
}

void drainH2(Worker& w) {
  for (auto* s : w.h2servers) {
    s->session->goAway();
    s->closeWhenIdle = true;
    s->flush();
  }
  for (auto& [key, cl] : w.h2pool) {
    if (cl->state != H2Client::State::ready) continue;
    cl->session->goAway();
    cl->closeWhenIdle = true;
    cl->flush();
  }
}

void stopH2(Worker& w) {
  for (auto* s : std::vector<H2Server*>(w.h2servers.begin(), w.h2servers.end())) s->closeStream();
  for (auto& [key, cl] : w.h2pool) {
    if (cl->up) cl->closeStream();
  }
}

}  // namespace mesh::proxy::detail
