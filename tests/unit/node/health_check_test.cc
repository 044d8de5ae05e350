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
#include "node/health/prober.h"

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
