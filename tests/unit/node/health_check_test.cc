// Health checks. The state machine on a virtual clock with a scripted prober (thresholds, no
// flapping on one bad probe, TTL expiry); the real prober against real local HTTP and TCP
// servers and commands started by the test (status ranges, 429, refused connections, timeouts).

#include "node/health/check.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <deque>
#include <thread>

#include "common/asio.h"
#include "common/asio_event_loop.h"
#include "common/metrics.h"
#include "common/virtual_clock.h"
#include "node/admin/server.h"
#include "node/health/grpc_probe.h"
#include "node/health/prober.h"

#include <nghttp2/nghttp2.h>

namespace mesh::health {
namespace {

using namespace std::chrono_literals;
using catalog::Health;

// Answers probes from a script, one result a probe (the last one repeats).
class ScriptedProber : public Prober {
 public:
  std::deque<Health> script;
  int probes = 0;
  void probe(const CheckDef&, std::function<void(ProbeResult)> done) override {
    ++probes;
    Health h = script.front();
    if (script.size() > 1) script.pop_front();
    done({h, std::string(catalog::healthName(h))});
  }
};

CheckDef tcpCheck() {
  CheckDef d;
  d.kind = CheckDef::Kind::tcp;
  d.id = "svc:0";
  d.target = "127.0.0.1:1";
  d.interval = 1s;
  d.timeout = 500ms;
  return d;
}

TEST(HealthCheck, ThresholdsKeepOneBadProbeFromFlapping) {
  VirtualClock clock;
  ScriptedProber prober;
  using H = Health;
  // pass, fail, pass (flap), fail, fail, fail (critical), pass, pass (passing again)
  prober.script = {H::passing, H::critical, H::passing, H::critical, H::critical, H::critical, H::passing, H::passing};
  std::vector<Health> changes;
  Check check(tcpCheck(), clock, &prober, [&](const CheckStatus& s) { changes.push_back(s.health); });
  EXPECT_EQ(check.status().health, Health::critical);  // initial: no traffic before a result
  check.start();
  clock.advance(1ms);
  EXPECT_EQ(check.status().health, Health::passing);  // the first result applies at once
  clock.advance(1s);
  EXPECT_EQ(check.status().health, Health::warning);  // one bad probe: warning, still serving
  clock.advance(1s);
  EXPECT_EQ(check.status().health, Health::passing);  // back at once from warning
  clock.advance(2s);
  EXPECT_EQ(check.status().health, Health::warning);  // two failures
  clock.advance(1s);
  EXPECT_EQ(check.status().health, Health::critical);  // the third: critical
  clock.advance(1s);
  EXPECT_EQ(check.status().health, Health::critical);  // one success is not enough to pass again
  EXPECT_EQ(check.status().consecutiveSuccesses, 1);
  clock.advance(1s);
  EXPECT_EQ(check.status().health, Health::passing);
  EXPECT_EQ(changes, (std::vector<Health>{H::passing, H::warning, H::passing, H::warning, H::critical, H::passing}));
  EXPECT_EQ(prober.probes, 8);
  check.stop();
  clock.advance(10s);
  EXPECT_EQ(prober.probes, 8);
}

TEST(HealthCheck, TtlChecksExpireUnlessUpdated) {
  VirtualClock clock;
  CheckDef d;
  d.kind = CheckDef::Kind::ttl;
  d.id = "svc:ttl";
  d.ttl = 10s;
  Check check(d, clock, nullptr, nullptr);
  check.start();
  ASSERT_TRUE(check.update(Health::passing, "all good").ok());
  clock.advance(9s);
  EXPECT_EQ(check.status().health, Health::passing);
  ASSERT_TRUE(check.update(Health::warning, "slow").ok());  // restarts the TTL
  clock.advance(9s);
  EXPECT_EQ(check.status().health, Health::warning);
  clock.advance(2s);
  EXPECT_EQ(check.status().health, Health::critical);
  EXPECT_NE(check.status().output.find("TTL of 10s expired"), std::string::npos);
  Check tcp(tcpCheck(), clock, nullptr, nullptr);
  EXPECT_FALSE(tcp.update(Health::passing, "").ok());
}

// The real prober on a real io_context, against servers this test starts on 127.0.0.1.
class RealProbes : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    server_ = std::make_unique<admin::Server>(io_, registry_);
    server_->route("GET", "/ok", [](const http::Request&) { return http::Response::text(200, "fine\n"); });
    server_->route("GET", "/busy", [](const http::Request&) { return http::Response::text(429, "later\n"); });
    server_->route("GET", "/broken", [](const http::Request&) { return http::Response::text(503, "down\n"); });
    // Answers a flapping sequence: up, down, up, down...
    server_->route("GET", "/flap", [this](const http::Request&) {
      return http::Response::text(flap_++ % 2 == 0 ? 200 : 500, "flap\n");
    });
    // Answers after 600 ms, from a timer, so the probe times out first.
    server_->routeAsync("GET", "/slow", [this](const http::Request&, admin::Reply reply) {
      auto t = std::make_shared<boost::asio::steady_timer>(io_, 600ms);
      t->async_wait([t, reply](boost::system::error_code) { reply(http::Response::text(200, "slow\n")); });
    });
    auto bound = server_->listen(*parseHostPort("127.0.0.1:0", {.allowPortZero = true}));
    ASSERT_TRUE(bound.ok());
    port_ = bound->port;
    // A port nobody listens on: bind, note it, close.
    boost::asio::ip::tcp::acceptor a(io_, {boost::asio::ip::make_address("127.0.0.1"), 0});
    closedPort_ = a.local_endpoint().port();
  }

  ProbeResult probeOnce(CheckDef d) {
    AsioProber prober(io_);
    std::optional<ProbeResult> got;
    prober.probe(d, [&](ProbeResult r) { got = std::move(r); });
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (!got && std::chrono::steady_clock::now() < until) io_.run_for(10ms);
    EXPECT_TRUE(got.has_value());
    return got.value_or(ProbeResult{});
  }

  CheckDef http(const std::string& path) {
    CheckDef d;
    d.kind = CheckDef::Kind::http;
    d.id = "h";
    d.target = "http://127.0.0.1:" + std::to_string(port_) + path;
    d.timeout = 300ms;
    return d;
  }

  boost::asio::io_context io_;
  metrics::Registry registry_;
  std::unique_ptr<admin::Server> server_;
  std::uint16_t port_ = 0, closedPort_ = 0;
  int flap_ = 0;
};

TEST_F(RealProbes, Http) {
  auto ok = probeOnce(http("/ok"));
  EXPECT_EQ(ok.result, Health::passing) << ok.output;
  EXPECT_EQ(ok.output, "HTTP GET " + http("/ok").target + ": 200 OK");
  EXPECT_EQ(probeOnce(http("/busy")).result, Health::warning);
  auto broken = probeOnce(http("/broken"));
  EXPECT_EQ(broken.result, Health::critical);
  EXPECT_NE(broken.output.find("503"), std::string::npos);
  auto notFound = probeOnce(http("/nope"));
  EXPECT_EQ(notFound.result, Health::critical);
  CheckDef range = http("/nope");
  range.statusMin = 200, range.statusMax = 404;
  EXPECT_EQ(probeOnce(range).result, Health::passing);
  auto slow = probeOnce(http("/slow"));
  EXPECT_EQ(slow.result, Health::critical);
  EXPECT_NE(slow.output.find("timed out after 0.3s"), std::string::npos) << slow.output;
  CheckDef refused = http("/ok");
  refused.target = "http://127.0.0.1:" + std::to_string(closedPort_) + "/";
  auto r = probeOnce(refused);
  EXPECT_EQ(r.result, Health::critical);
  EXPECT_NE(r.output.find("refused"), std::string::npos) << r.output;
}

TEST_F(RealProbes, TcpAndExec) {
  CheckDef tcp;
  tcp.kind = CheckDef::Kind::tcp;
  tcp.target = "127.0.0.1:" + std::to_string(port_);
  tcp.timeout = 500ms;
  EXPECT_EQ(probeOnce(tcp).result, Health::passing);
  tcp.target = "127.0.0.1:" + std::to_string(closedPort_);
  EXPECT_EQ(probeOnce(tcp).result, Health::critical);
  tcp.target = "localhost:" + std::to_string(port_);  // a name, from /etc/hosts (no DNS traffic)
  EXPECT_EQ(probeOnce(tcp).result, Health::passing);

  CheckDef exec;
  exec.kind = CheckDef::Kind::exec;
  exec.timeout = 2s;
  exec.target = "echo fine; exit 0";
  auto e0 = probeOnce(exec);
  EXPECT_EQ(e0.result, Health::passing);
  EXPECT_EQ(e0.output, "fine\n");
  exec.target = "exit 1";
  EXPECT_EQ(probeOnce(exec).result, Health::warning);
  exec.target = "exit 2";
  EXPECT_EQ(probeOnce(exec).result, Health::critical);
  exec.target = "sleep 5";
  exec.timeout = 200ms;
  auto slow = probeOnce(exec);
  EXPECT_EQ(slow.result, Health::critical);
  EXPECT_NE(slow.output.find("timed out"), std::string::npos);
}

// A minimal gRPC health server (h2c, nghttp2) for the gRPC check: answers every
// grpc.health.v1.Health/Check with `status` (1 SERVING, 2 NOT_SERVING), or with grpc-status 12
// (gRPC's status for a service the server does not have) when `unknownService`, or never when
// `silent`.
class GrpcHealthServer {
 public:
  int status = 1;
  bool unknownService = false;
  bool silent = false;

  explicit GrpcHealthServer(boost::asio::io_context& io)
      : io_(io), acceptor_(io, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  struct Conn : std::enable_shared_from_this<Conn> {
    explicit Conn(boost::asio::ip::tcp::socket s, GrpcHealthServer* srv) : socket(std::move(s)), server(srv) {}
    ~Conn() {
      if (session) nghttp2_session_del(session);
    }
    boost::asio::ip::tcp::socket socket;
    GrpcHealthServer* server;
    nghttp2_session* session = nullptr;
    std::array<char, 4096> buf{};
    std::string reply;
    std::size_t sent = 0;

    void start() {
      nghttp2_session_callbacks* cbs = nullptr;
      nghttp2_session_callbacks_new(&cbs);
      nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, [](nghttp2_session* s, const nghttp2_frame* f, void* user) -> int {
        auto* c = static_cast<Conn*>(user);
        if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
          c->respond(s, f->hd.stream_id);
        }
        return 0;
      });
      nghttp2_session_server_new(&session, cbs, this);
      nghttp2_session_callbacks_del(cbs);
      nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
      flush();
      read();
    }
    static nghttp2_nv nv(const char* n, const char* v) {
      return {reinterpret_cast<uint8_t*>(const_cast<char*>(n)), reinterpret_cast<uint8_t*>(const_cast<char*>(v)),
              std::strlen(n), std::strlen(v), NGHTTP2_NV_FLAG_NONE};
    }
    void respond(nghttp2_session* s, int32_t stream) {
      if (server->silent) return;
      if (server->unknownService) {
        nghttp2_nv h[] = {nv(":status", "200"), nv("content-type", "application/grpc"), nv("grpc-status", "12"),
                          nv("grpc-message", "unknown service")};
        nghttp2_submit_headers(s, NGHTTP2_FLAG_END_STREAM, stream, nullptr, h, 4, nullptr);
        return;
      }
      reply = health::grpcHealthResponse(server->status);
      sent = 0;
      nghttp2_nv h[] = {nv(":status", "200"), nv("content-type", "application/grpc")};
      nghttp2_data_provider p{};
      p.source.ptr = this;
      p.read_callback = [](nghttp2_session* ss, int32_t id, uint8_t* out, size_t len, uint32_t* flags,
                           nghttp2_data_source* src, void*) -> ssize_t {
        auto* c = static_cast<Conn*>(src->ptr);
        const std::size_t n = std::min(len, c->reply.size() - c->sent);
        std::memcpy(out, c->reply.data() + c->sent, n);
        c->sent += n;
        if (c->sent == c->reply.size()) {
          *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
          nghttp2_nv t[] = {nv("grpc-status", "0")};
          nghttp2_submit_trailer(ss, id, t, 1);
        }
        return static_cast<ssize_t>(n);
      };
      nghttp2_submit_response(s, stream, h, 2, &p);
    }
    void flush() {
      const uint8_t* data = nullptr;
      std::string out;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(session, &data)) > 0) out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
      if (out.empty()) return;
      auto b = std::make_shared<std::string>(std::move(out));
      boost::asio::async_write(socket, boost::asio::buffer(*b), [self = shared_from_this(), b](boost::system::error_code, std::size_t) {});
    }
    void read() {
      socket.async_read_some(boost::asio::buffer(buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
        if (ec) return;
        if (nghttp2_session_mem_recv(self->session, reinterpret_cast<const uint8_t*>(self->buf.data()), n) < 0) return;
        self->flush();
        self->read();
      });
    }
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;
      std::make_shared<Conn>(std::move(s), this)->start();
      accept();
    });
  }

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

TEST_F(RealProbes, GrpcHealth) {
  GrpcHealthServer server(io_);
  CheckDef g;
  g.kind = CheckDef::Kind::grpc;
  g.target = "127.0.0.1:" + std::to_string(server.port()) + "/reviews.Reviews";
  g.timeout = 500ms;
  auto serving = probeOnce(g);
  EXPECT_EQ(serving.result, Health::passing) << serving.output;
  EXPECT_NE(serving.output.find("SERVING"), std::string::npos) << serving.output;
  server.status = 2;
  auto notServing = probeOnce(g);
  EXPECT_EQ(notServing.result, Health::critical);
  EXPECT_NE(notServing.output.find("NOT_SERVING"), std::string::npos) << notServing.output;
  server.unknownService = true;
  auto unknown = probeOnce(g);
  EXPECT_EQ(unknown.result, Health::critical);
  EXPECT_NE(unknown.output.find("grpc-status 12 (unknown service)"), std::string::npos) << unknown.output;
  server.unknownService = false;
  server.silent = true;
  auto silent = probeOnce(g);
  EXPECT_EQ(silent.result, Health::critical);
  EXPECT_NE(silent.output.find("timed out"), std::string::npos) << silent.output;
  // An HTTP/1.1 server is not a gRPC server.
  g.target = "127.0.0.1:" + std::to_string(port_);
  auto http1 = probeOnce(g);
  EXPECT_EQ(http1.result, Health::critical);
  g.target = "127.0.0.1:" + std::to_string(closedPort_);
  EXPECT_EQ(probeOnce(g).result, Health::critical);
  // The framing on its own.
  EXPECT_EQ(health::grpcHealthStatus(health::grpcHealthResponse(1)).value(), 1);
  EXPECT_FALSE(health::grpcHealthStatus("\x00\x00\x00\x00\x05\x08").ok());
  EXPECT_EQ(health::grpcHealthRequest("a"), std::string("\x00\x00\x00\x00\x03\x0a\x01" "a", 8));
}

// A Check with the real prober against a flapping HTTP server: with the default thresholds it
// never goes critical (every other probe passes), only warning.
TEST_F(RealProbes, AFlappingServiceStaysOutOfCritical) {
  AsioEventLoop loop(io_);
  AsioProber prober(io_);
  CheckDef d = http("/flap");
  d.interval = 100ms;
  d.timeout = 90ms;
  std::vector<Health> changes;
  Check check(d, loop, &prober, [&](const CheckStatus& s) { changes.push_back(s.health); });
  check.start();
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) io_.run_for(20ms);
  check.stop();
  EXPECT_GE(check.status().runs, 8u);
  ASSERT_FALSE(changes.empty());
  for (Health h : changes) EXPECT_NE(h, Health::critical);
  EXPECT_EQ(changes.front(), Health::passing);
}

}  // namespace
}  // namespace mesh::health
