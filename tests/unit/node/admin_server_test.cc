#include "node/admin/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <thread>

#include "common/asio.h"
#include "common/http/client.h"
#include "common/metrics.h"

namespace mesh::admin {
namespace {

// A server on 127.0.0.1 port 0 (a socket is unavoidable here; CONVENTIONS.md allows port 0),
// its event loop on a thread of its own for the length of a test.
class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }
  void start(ServerOptions opts) {
    server_ = std::make_unique<Server>(io_, registry_, opts);
    server_->route("GET", "/hello", [](const http::Request& r) {
      return http::Response::text(200, "hello " + r.queryParam("name").value_or("you") + "\n");
    });
    server_->route("PUT", "/echo", [](const http::Request& r) {
      return http::Response::text(200, r.body);
    });
    server_->routePrefix("GET", "/items/", [](const http::Request& r) {
      return http::Response::text(200, std::string(r.path().substr(7)));
    });
    server_->route("GET", "/boom", [](const http::Request&) -> http::Response {
      throw std::runtime_error("handler bug");
    });
    // Answers 150 ms later, from a timer, as a cluster query does.
    server_->routeAsync("POST", "/later", [this](const http::Request& r, Reply reply) {
      auto t = std::make_shared<boost::asio::steady_timer>(io_, std::chrono::milliseconds(150));
      t->async_wait([t, reply, body = r.body](boost::system::error_code) {
        reply(http::Response::text(200, "later " + body));
      });
    });
    server_->routeAsync("GET", "/now", [](const http::Request&, Reply reply) {
      reply(http::Response::text(200, "now"));
      reply(http::Response::text(500, "a second reply is ignored"));
    });
    auto bound = server_->listen(*parseHostPort("127.0.0.1:0", {.allowPortZero = true}));
    ASSERT_TRUE(bound.ok()) << bound.error().message();
    addr_ = *bound;
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    boost::asio::post(io_, [this] { server_->stop(); });
    work_.reset();
    thread_.join();
  }

  Result<http::Response> call(const std::string& method, const std::string& target,
                              const std::string& body = {}) {
    return http::request(addr_, method, target, body);
  }

  // Sends raw bytes, reads until the server closes or `timeout`.
  std::string raw(const std::string& bytes, int timeoutMs = 2000) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(addr_.port);
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    timeval tv{timeoutMs / 1000, (timeoutMs % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
  }

  boost::asio::io_context io_;
  metrics::Registry registry_;
  std::unique_ptr<Server> server_;
  HostPort addr_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
};

TEST_F(AdminServerTest, RoutesAndQueryParameters) {
  auto r = call("GET", "/hello?name=mesh");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello mesh\n");
  EXPECT_EQ(http::findHeader(r->headers, "Content-Type"), "text/plain; charset=utf-8");
  auto p = call("GET", "/items/abc");
  EXPECT_EQ(p->body, "abc");
  auto e = call("PUT", "/echo", "payload");
  EXPECT_EQ(e->body, "payload");
}

TEST_F(AdminServerTest, AsyncRoutesAnswerLaterOrAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  auto later = call("POST", "/later", "x");
  ASSERT_TRUE(later.ok()) << later.error().message();
  EXPECT_EQ(later->status, 200);
  EXPECT_EQ(later->body, "later x");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
  auto now = call("GET", "/now");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->body, "now");
  // Other connections are served while one waits.
  std::thread slow([this] { EXPECT_TRUE(call("POST", "/later", "y").ok()); });
  auto hello = call("GET", "/hello");
  ASSERT_TRUE(hello.ok());
  slow.join();
  // Keep-alive after an async answer: two in one connection, in order.
  std::string both = raw("POST /later HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\naGET /now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto first = both.find("later a"), second = both.find("\r\n\r\nnow");
  ASSERT_NE(first, std::string::npos) << both;
  ASSERT_NE(second, std::string::npos) << both;
  EXPECT_LT(first, second);
}

TEST_F(AdminServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  auto nf = call("GET", "/nope");
  EXPECT_EQ(nf->status, 404);
  EXPECT_EQ(nf->body, "{\"error\":\"no such endpoint: /nope\"}\n");
  auto na = call("DELETE", "/hello");
  EXPECT_EQ(na->status, 405);
  EXPECT_EQ(http::findHeader(na->headers, "Allow"), "GET");
}

TEST_F(AdminServerTest, HeadGetsHeadersOnly) {
  auto h = call("HEAD", "/hello");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "");
  EXPECT_EQ(http::findHeader(h->headers, "Content-Length"), "10");  // "hello you\n"
}

TEST_F(AdminServerTest, AThrowingHandlerIs500AndTheServerLives) {
  EXPECT_EQ(call("GET", "/boom")->status, 500);
  EXPECT_EQ(call("GET", "/hello")->status, 200);
}

TEST_F(AdminServerTest, PipelinedKeepAliveRequests) {
  std::string out = raw(
      "GET /hello?name=a HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /hello?name=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto first = out.find("hello a\n");
  auto second = out.find("hello b\n");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
  EXPECT_NE(out.find("Connection: keep-alive"), std::string::npos);
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
}

TEST_F(AdminServerTest, BadAndOversizedRequestsAreRefused) {
  EXPECT_EQ(raw("NOT HTTP\r\n\r\n").rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
  std::string huge = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
  EXPECT_EQ(raw(huge).rfind("HTTP/1.1 431 ", 0), 0u);
  EXPECT_EQ(raw("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n")
                .rfind("HTTP/1.1 400 ", 0),
            0u);
  // The server still answers afterwards.
  EXPECT_EQ(call("GET", "/hello")->status, 200);
}

TEST_F(AdminServerTest, CountsRequestsByRouteNotByRawPath) {
  ASSERT_TRUE(call("GET", "/hello").ok());
  ASSERT_TRUE(call("GET", "/items/1").ok());
  ASSERT_TRUE(call("GET", "/random-probe-1").ok());
  std::string m = registry_.render();
  EXPECT_NE(m.find("mesh_admin_requests_total{route=\"/hello\",code=\"200\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("mesh_admin_requests_total{route=\"/items/*\",code=\"200\"} 1"), std::string::npos);
  EXPECT_NE(m.find("mesh_admin_requests_total{route=\"not_found\",code=\"404\"} 1"), std::string::npos);
  EXPECT_EQ(m.find("random-probe"), std::string::npos);
}

TEST(AdminServerIdle, IdleConnectionsAreClosed) {
  boost::asio::io_context io;
  metrics::Registry reg;
  Server s(io, reg, ServerOptions{.idleTimeout = std::chrono::milliseconds(100)});
  auto bound = s.listen(*parseHostPort("127.0.0.1:0", {.allowPortZero = true}));
  ASSERT_TRUE(bound.ok());
  auto guard = boost::asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(bound->port);
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto started = std::chrono::steady_clock::now();
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0);  // orderly close by the server, not our 3 s timeout
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  ::close(fd);
  boost::asio::post(io, [&] { s.stop(); });
  guard.reset();
  t.join();
}

TEST(AdminServerSerialize, WireFormat) {
  http::Response r{201, {{"X-A", "1"}}, "body"};
  EXPECT_EQ(Server::serialize(r, false, true),
            "HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\nbody");
  EXPECT_EQ(Server::serialize(r, true, false),
            "HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 4\r\nConnection: close\r\n\r\n");
}

}  // namespace
}  // namespace mesh::admin
