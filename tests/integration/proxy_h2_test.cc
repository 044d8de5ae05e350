// HTTP/2 through the data plane with real processes (issue 7): a real HTTP/2 client (nghttp,
// h2load from nghttp2-client; a gRPC client on grpcio) -> meshd A's outbound listener (h2c) ->
// h2 over mTLS -> meshd B's inbound listener -> a real upstream: an HTTP/1.1 server (the request
// bridged) or a gRPC server (HTTP/2 end to end).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include <cstring>

#include "node/proxy/http2.h"
#include "tests/integration/proxy_cluster.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class ProxyH2Test : public ::testing::Test {
 protected:
  ProxyCluster c;

  RunResult tool(std::vector<std::string> argv) { return run(argv, 60s, c.tmp.path()); }
  // nghttp: one request over h2c (prior knowledge) to node 1's outbound listener, -v output.
  RunResult nghttp(const std::string& authority, const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{"/usr/bin/nghttp", "-v", "-H", ":authority: " + authority};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("http://" + c.outbound(1).toString() + path);
    return tool(argv);
  }
};

// The value of a field in nghttp -v output (the last one of that name).
std::string fieldOf(const std::string& out, const std::string& name) {
  std::regex re("\\(stream_id=[0-9]+\\) " + name + ": ([^\\n]*)");
  std::string last;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator(); ++it) {
    last = (*it)[1];
  }
  return last;
}

TEST_F(ProxyH2Test, H2cCrossesTwoProxiesToAnHttp1AppAndMultiplexes) {
  c.twoNodesServing("reviews", 9080);

  // GET: the HTTP/1.1 app behind node 2 answers; it saw who called and a request id; a
  // caller's own x-forwarded-client-cert is replaced.
  auto r = nghttp("reviews", "/hello", {"-H", "x-forwarded-client-cert: URI=spiffe://evil/node/x"});
  ASSERT_TRUE(r.status.exited && r.status.code == 0) << r.out << r.err;
  EXPECT_EQ(fieldOf(r.out, ":status"), "200");
  EXPECT_NE(r.out.find("reviews-b"), std::string::npos) << r.out;
  EXPECT_EQ(fieldOf(r.out, "x-seen-x-forwarded-client-cert"), "URI=spiffe://test.mesh/node/p1");
  EXPECT_EQ(fieldOf(r.out, "x-seen-x-request-id").size(), 36u);
  EXPECT_EQ(fieldOf(r.out, "x-upstream"), "reviews-b");

  // A 100,000-byte POST echoed (sent as HTTP/1.1 chunks to the app; flow control both ways).
  std::string body;
  for (int i = 0; body.size() < 100'000; ++i) body += std::to_string(i) + ",";
  body.resize(100'000);
  std::ofstream(c.tmp.sub("body.bin"), std::ios::binary) << body;
  auto post = tool({"/usr/bin/nghttp", "-H", ":authority: reviews", "-d", c.tmp.sub("body.bin"),
                    "http://" + c.outbound(1).toString() + "/echo"});
  ASSERT_TRUE(post.status.exited && post.status.code == 0) << post.err;
  EXPECT_EQ(post.out.size(), body.size());
  EXPECT_TRUE(post.out == body);

  // A chunked HTTP/1.1 response with a trailer arrives as DATA and HTTP/2 trailers.
  auto tr = nghttp("reviews", "/chunked");
  ASSERT_TRUE(tr.status.exited && tr.status.code == 0) << tr.err;
  EXPECT_EQ(fieldOf(tr.out, ":status"), "200");
  EXPECT_EQ(fieldOf(tr.out, "grpc-status"), "0") << tr.out;
  EXPECT_EQ(fieldOf(tr.out, "transfer-encoding"), "");  // never an HTTP/2 field

  // An unknown service: 503 with the reason, from node 1 itself.
  auto unknown = nghttp("nosuch", "/");
  EXPECT_EQ(fieldOf(unknown.out, ":status"), "503");
  EXPECT_EQ(fieldOf(unknown.out, "x-mesh-error"), "no_route");
  EXPECT_NE(unknown.out.find("no service 'nosuch' in the mesh catalog"), std::string::npos);

  // Too many fields: 431, and nothing reached the app.
  std::vector<std::string> many;
  for (int i = 0; i < 120; ++i) many.insert(many.end(), {"-H", "x-f" + std::to_string(i) + ": v"});
  auto big = nghttp("reviews", "/big", many);
  EXPECT_EQ(fieldOf(big.out, ":status"), "431") << big.out << big.err;

  // 4,000 POSTs of 4 KiB echoed, as 2 connections x 50 concurrent streams: all succeed (16 MB
  // each way, four times the connection windows: every byte relayed is acknowledged, whatever
  // the order in which streams end), and node 1 reaches node 2 over a handful of multiplexed
  // connections (one per worker), not one per stream.
  std::ofstream(c.tmp.sub("4k.bin"), std::ios::binary) << std::string(4096, 'p');
  auto load = tool({"/usr/bin/h2load", "-n", "4000", "-c", "2", "-m", "50", "-H", ":authority: reviews", "-d",
                    c.tmp.sub("4k.bin"), "http://" + c.outbound(1).toString() + "/load"});
  ASSERT_TRUE(load.status.exited && load.status.code == 0) << load.err;
  EXPECT_NE(load.out.find("4000 succeeded, 0 failed, 0 errored"), std::string::npos) << load.out;
  EXPECT_NE(load.out.find("status codes: 4000 2xx"), std::string::npos) << load.out;
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_requests_total",
                              {"direction=\"inbound\"", "service=\"reviews\"", "class=\"2xx\""}, 4003));
  auto connects = c.metric(1, "mesh_proxy_upstream_connects_total", {"direction=\"outbound\"", "result=\"ok\""});
  EXPECT_GE(connects, 1);
  EXPECT_LE(connects, 4) << "HTTP/2 between proxies should multiplex";
}

TEST_F(ProxyH2Test, Http1ClientsShareOneMultiplexedConnectionPerPeer) {
  c.twoNodesServing("reviews", 9080);  // --peer-protocol http2, the default
  // 100 HTTP/1.1 connections of steady load: every request answered 200, through one HTTP/2
  // connection from node 1 to node 2 (one worker), where HTTP/1.1 would need one per request in
  // flight.
  auto j = c.load(1, "reviews", {"--connections", "100", "--requests", "6000"});
  EXPECT_TRUE(j["errors"].empty()) << j.dump();
  EXPECT_EQ(j["status"].value("200", 0), 6000) << j.dump();
  EXPECT_EQ(c.metric(1, "mesh_proxy_upstream_connects_total", {"direction=\"outbound\"", "result=\"ok\""}), 1);
  // A POST body and a chunked response with its trailer cross too (chunk boundaries are not
  // kept over HTTP/2; the bytes and the trailer are).
  auto r = c.request(1, "reviews", "POST", "/echo", std::string(100'000, 'e'));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, std::string(100'000, 'e'));
  auto t = run({"/usr/bin/curl", "-sS", "--raw", "-H", "Host: reviews", "http://" + c.outbound(1).toString() + "/chunked"},
               30s, c.tmp.path());
  EXPECT_NE(t.out.find("hello, world"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("0\r\ngrpc-status: 0\r\n\r\n"), std::string::npos) << t.out;
  // curl --http2 asks to upgrade to h2c: the proxy answers in HTTP/1.1 (a server may ignore the
  // upgrade), and the upstream never sees it.
  auto u = run({"/usr/bin/curl", "-sS", "-i", "--http2", "-H", "Host: reviews", "http://" + c.outbound(1).toString() + "/up"},
               30s, c.tmp.path());
  EXPECT_NE(u.out.find("HTTP/1.1 200"), std::string::npos) << u.out << u.err;
  EXPECT_EQ(u.out.find("101"), std::string::npos) << u.out;
}

// Counts what a client session hears.
struct Listener : proxy::h2::Handler {
  int heads = 0, closes = 0;
  void onHead(std::int32_t, proxy::h2::Head&&, bool) override { ++heads; }
  void onData(std::int32_t, std::string_view) override {}
  void onTrailers(std::int32_t, std::vector<proxy::h2::Field>&&) override {}
  void onEnd(std::int32_t) override {}
  void onClose(std::int32_t, std::uint32_t) override { ++closes; }
};

// An HTTP/2 client session over a blocking socket, for what nghttp will not do.
class H2Socket {
 public:
  H2Socket(const HostPort& to, proxy::h2::Handler& h)
      : conn_(to), s_(proxy::h2::Session::make(proxy::h2::Session::Role::client, h).value()) {}
  bool ok() const { return conn_.ok(); }
  proxy::h2::Session& session() { return *s_; }
  // Writes what the session has to say, then reads what has come (waiting up to `wait`).
  void pump(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    std::string out;
    s_->drain(out);
    if (!out.empty()) conn_.send(out);
    auto until = std::chrono::steady_clock::now() + wait;
    char b[16384];
    for (;;) {
      auto n = ::recv(conn_.fd(), b, sizeof b, MSG_DONTWAIT);
      if (n > 0) {
        (void)s_->feed(std::string_view(b, static_cast<std::size_t>(n)));
        continue;
      }
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  RawConn conn_;
  std::unique_ptr<proxy::h2::Session> s_;
};

TEST_F(ProxyH2Test, EarlyAnswersToUnfinishedUploadsDoNotUseUpTheStreamsBetweenProxies) {
  c.twoNodesServing("reviews", 9080);
  // 600 POSTs whose body never ends, each answered at once by node 2's proxy: 100 fields pass
  // node 1's limit, and with the request id node 1 adds they are 101 at node 2, which answers
  // 431 without waiting for the body. Node 1 must let go of each stream to node 2 (one shared
  // connection, at most 256 streams) rather than hold it open for a body that will not come: a
  // request after them is served at once.
  Listener l;
  std::vector<std::unique_ptr<H2Socket>> socks;
  for (int k = 0; k < 3; ++k) {
    socks.push_back(std::make_unique<H2Socket>(c.outbound(1), l));
    ASSERT_TRUE(socks.back()->ok());
  }
  proxy::h2::Head req;
  req.method = "POST";
  req.authority = "reviews";
  req.path = "/upload";
  for (int i = 0; i < 100; ++i) req.fields.push_back({"x-f" + std::to_string(i), "v"});
  int sent = 0;
  for (int round = 0; round < 200; ++round) {
    for (auto& sock : socks) {
      auto id = sock->session().request(req, false);
      ASSERT_TRUE(id);
      sock->session().send(*id, "part of a body", false);  // and never the end of it
      ++sent;
    }
    for (auto& sock : socks) sock->pump();
  }
  for (int i = 0; i < 200 && l.heads < sent; ++i) {
    for (auto& sock : socks) sock->pump(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(l.heads, sent) << "every early answer arrives";
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_errors_total", {"direction=\"inbound\"", "cause=\"header_too_large\""},
                              sent));
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.request(1, "reviews", "GET", "/after");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

// What a WebSocket client over HTTP/2 hears: the response head and the stream's bytes.
struct WsListener : proxy::h2::Handler {
  int status = 0;
  std::string protocolField, data;
  bool ended = false;
  std::uint32_t closed = ~0u;
  proxy::h2::Session* s = nullptr;
  void onHead(std::int32_t, proxy::h2::Head&& h, bool end) override {
    status = h.status;
    if (auto* p = h.find("sec-websocket-protocol")) protocolField = *p;
    ended = ended || end;
  }
  void onData(std::int32_t id, std::string_view d) override {
    data.append(d);
    s->consumed(id, d.size());
  }
  void onTrailers(std::int32_t, std::vector<proxy::h2::Field>&&) override {}
  void onEnd(std::int32_t) override { ended = true; }
  void onClose(std::int32_t, std::uint32_t e) override { closed = e; }
};

// WebSocket over HTTP/2 (extended CONNECT, RFC 8441) from an app: through both proxies to an
// HTTP/1.1 WebSocket server (the test upstream echoes frames), and the stream ends when the app
// ends it.
TEST_F(ProxyH2Test, AWebSocketOverHttp2CrossesBothProxies) {
  c.twoNodesServing("reviews", 9080);
  WsListener l;
  H2Socket sock(c.outbound(1), l);
  ASSERT_TRUE(sock.ok());
  l.s = &sock.session();
  sock.pump(200ms);  // the proxy's SETTINGS (ENABLE_CONNECT_PROTOCOL) before the request
  proxy::h2::Head req;
  req.method = "CONNECT";
  req.protocol = "websocket";
  req.authority = "reviews";
  req.path = "/chat";
  req.fields = {{"sec-websocket-version", "13"}, {"sec-websocket-protocol", "chat"}};
  auto id = sock.session().request(req, false);
  ASSERT_TRUE(id) << id.error().message();
  for (int i = 0; i < 100 && l.status == 0; ++i) sock.pump(20ms);
  ASSERT_EQ(l.status, 200);
  for (const char* text : {"hello", "over http/2"}) {
    l.data.clear();
    sock.session().send(*id, wsFrame(1, text), false);
    for (int i = 0; i < 100 && l.data.size() < 2 + std::strlen(text); ++i) sock.pump(20ms);
    // The upstream's echo: an unmasked text frame with the same payload.
    ASSERT_EQ(l.data.size(), 2 + std::strlen(text)) << l.data;
    EXPECT_EQ(static_cast<unsigned char>(l.data[0]), 0x81);
    EXPECT_EQ(l.data.substr(2), text);
  }
  // The app ends its side; the tunnel closes and so does the stream.
  sock.session().send(*id, {}, true);
  for (int i = 0; i < 100 && l.closed == ~0u; ++i) sock.pump(20ms);
  EXPECT_TRUE(l.ended);
  EXPECT_NE(l.closed, ~0u);
  // To a name the mesh lacks: answered by the proxy, as any request.
  proxy::h2::Head other = req;
  other.authority = "nosuch";
  auto id2 = sock.session().request(other, false);
  ASSERT_TRUE(id2);
  l.status = 0;
  for (int i = 0; i < 100 && l.status == 0; ++i) sock.pump(20ms);
  EXPECT_EQ(l.status, 503);  // no such service

  // To a host outside the mesh (MeshConfig's default ALLOW_ANY): the upgrade goes to it directly.
  c.upstream(1, 9099, "outside");
  proxy::h2::Head ext = req;
  ext.authority = c.address(1) + ":9099";
  l = WsListener{};
  l.s = &sock.session();
  auto id3 = sock.session().request(ext, false);
  ASSERT_TRUE(id3);
  for (int i = 0; i < 100 && l.status == 0; ++i) sock.pump(20ms);
  ASSERT_EQ(l.status, 200) << l.data;
  sock.session().send(*id3, wsFrame(1, "outside"), false);
  for (int i = 0; i < 100 && l.data.size() < 2 + 7; ++i) sock.pump(20ms);
  ASSERT_EQ(l.data.size(), 2u + 7) << l.data;
  EXPECT_EQ(l.data.substr(2), "outside");
  sock.session().send(*id3, {}, true);
  for (int i = 0; i < 100 && l.closed == ~0u; ++i) sock.pump(20ms);
  EXPECT_TRUE(l.ended);
}

// CONNECT over HTTP/2 (RFC 9113 section 8.5), as HTTP/1.1's: a byte tunnel to an instance of
// the service through both proxies (mTLS, ALPN mesh-tcp/1 between them), and one to a host
// outside the mesh (ALLOW_ANY); what goes through is the app's business.
TEST_F(ProxyH2Test, ConnectOverHttp2TunnelsToAServiceAndToAnExternalHost) {
  c.twoNodesServing("reviews", 9080);
  c.upstream(1, 9099, "outside");  // not in the catalog: an external host to the proxy
  WsListener l;
  H2Socket sock(c.outbound(1), l);
  ASSERT_TRUE(sock.ok());
  l.s = &sock.session();
  // Opens a CONNECT stream to `authority` and waits for its answer (l.status).
  auto connect = [&](const std::string& authority) {
    l = WsListener{};
    l.s = &sock.session();
    proxy::h2::Head req;
    req.method = "CONNECT";
    req.authority = authority;
    auto id = sock.session().request(req, false);
    for (int i = 0; id && i < 200 && l.status == 0; ++i) sock.pump(20ms);
    return id ? *id : 0;
  };
  auto tunnelTo = [&](const std::string& authority, const std::string& expectName) {
    SCOPED_TRACE(authority);
    auto id = connect(authority);
    ASSERT_NE(id, 0);
    ASSERT_EQ(l.status, 200) << l.data;
    for (const char* path : {"/inside", "/again"}) {
      l.data.clear();
      sock.session().send(id, std::string("GET ") + path + " HTTP/1.1\r\nHost: anything\r\n\r\n", false);
      for (int i = 0; i < 100 && l.data.find(expectName + "\n") == std::string::npos; ++i) sock.pump(20ms);
      EXPECT_EQ(l.data.rfind("HTTP/1.1 200", 0), 0u) << l.data;
      EXPECT_NE(l.data.find(expectName + "\n"), std::string::npos) << l.data;
      // Untouched: the proxies added no request id inside the tunnel.
      EXPECT_EQ(l.data.find("x-seen-x-request-id"), std::string::npos) << l.data;
    }
    // The app ends its side: the tunnel closes and so does the stream.
    sock.session().send(id, {}, true);
    for (int i = 0; i < 100 && l.closed == ~0u; ++i) sock.pump(20ms);
    EXPECT_TRUE(l.ended);
  };
  tunnelTo("reviews:9080", "reviews-b");
  tunnelTo(c.address(1) + ":9099", "outside");
  // Apps may end tunnels with RST_STREAM (Go's client does): 120 of them in a row are not the
  // rapid-reset attack, whose defence would send the connection away after 100.
  for (int i = 0; i < 120; ++i) {
    auto id = connect("reviews:9080");
    ASSERT_NE(id, 0) << i;
    ASSERT_EQ(l.status, 200) << i;
    sock.session().reset(id, proxy::h2::kCancel);
    sock.pump();
  }
  EXPECT_TRUE(sock.session().acceptsStreams());
  tunnelTo("reviews:9080", "reviews-b");
  // Nothing listening there, no such service, or the proxy itself: answered, not tunnelled.
  for (const auto& [authority, status] : std::vector<std::pair<std::string, int>>{
           {c.address(1) + ":9", 503}, {"nosuch.mesh:80", 503}, {c.outbound(1).toString(), 508}}) {
    EXPECT_NE(connect(authority), 0);
    EXPECT_EQ(l.status, status) << authority;
  }
}

TEST_F(ProxyH2Test, AClientResettingStreamsInALoopIsSentAway) {
  c.twoNodesServing("reviews", 9080);
  // CVE-2023-44487 ("rapid reset"): open a stream, cancel it at once, again and again.
  Listener l;
  H2Socket sock(c.outbound(1), l);
  ASSERT_TRUE(sock.ok());
  auto* s = &sock.session();
  proxy::h2::Head req;
  req.method = "GET";
  req.authority = "reviews";
  req.path = "/slow";
  for (int i = 0; i < 1000 && s->acceptsStreams(); ++i) {
    auto id = s->request(req, true);
    if (!id) break;
    sock.pump();  // the HEADERS go out first (a stream reset before them is never sent at all)
    // Half with CANCEL, half with NO_ERROR: the code does not matter.
    s->reset(*id, i % 2 ? proxy::h2::kCancel : proxy::h2::kNoError);
    sock.pump();  // and what has come back so far (the GOAWAY ends the loop)
  }
  // Wait for the GOAWAY if it has not come yet.
  for (int i = 0; i < 50 && s->acceptsStreams(); ++i) sock.pump(std::chrono::milliseconds(100));
  EXPECT_FALSE(s->acceptsStreams()) << "the proxy never sent GOAWAY";
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_errors_total", {"direction=\"outbound\"", "cause=\"bad_request\""}, 1));
  // The proxy still serves everyone else.
  auto r = c.request(1, "reviews", "GET", "/after");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status, 200);
}

TEST_F(ProxyH2Test, GrpcCallsOfEveryKindPassWithTheirStatusAndTrailers) {
  const std::string python = "/usr/bin/python3";
  if (run({python, "-c", "import grpc"}, 20s, c.tmp.path()).status.code != 0) {
    GTEST_SKIP() << "Debian's python3-grpcio is not installed (make deps installs it)";
  }
  c.start(2);
  auto server = ChildProcess::start({python, MESH_GRPC_PEER_PATH, "server", "--listen", c.address(2) + ":50051",
                                     "--name", "echo-b"},
                                    c.tmp.path(), "grpc-server");
  ASSERT_TRUE(eventually([&] { return server.stdoutText().find("ready") != std::string::npos; }, 20s))
      << server.stderrText();
  c.service(2, "echo-1", "echo", 50051, "grpc");
  ASSERT_TRUE(c.waitEndpoints(1, "echo", 1));

  auto r = run({python, MESH_GRPC_PEER_PATH, "client", "--target", c.outbound(1).toString(), "--authority", "echo",
                "--calls", "20"},
               60s, c.tmp.path());
  ASSERT_TRUE(r.status.exited && r.status.code == 0) << r.out << r.err;
  auto j = json::parse(r.out);
  ASSERT_EQ(j["echo"].size(), 20u);
  EXPECT_EQ(j["echo"][0], "echo-b:hello-0");
  EXPECT_EQ(j["echo"][19], "echo-b:hello-19");
  // The server saw the calling node's identity and a request id (as trailing metadata back).
  EXPECT_EQ(j["echo_trailing"]["x-seen-xfcc"], "URI=spiffe://test.mesh/node/p1");
  EXPECT_EQ(j["echo_trailing"]["x-seen-request-id"].get<std::string>().size(), 36u);
  // Server streaming, client streaming, bidirectional streaming.
  EXPECT_EQ(j["count"], json::array({"0", "1", "2", "3", "4"}));
  EXPECT_EQ(j["sum"], "a+b+c");
  EXPECT_EQ(j["chat"], json::array({"re:x", "re:y"}));
  // A 1 MiB message each way (flow control across both hops).
  EXPECT_EQ(j["big"], (1 << 20) + 7);
  // An error status travels in the trailers, with its message and metadata.
  EXPECT_EQ(j["fail"]["code"], "NOT_FOUND");
  EXPECT_EQ(j["fail"]["details"], "no such thing");
  EXPECT_EQ(j["fail"]["trailing"]["x-why"], "testing");
  // An HTTP/1.1 client reaches the same HTTP/2-only app: the request goes over HTTP/2 between
  // the proxies and to the app, the response comes back chunked with gRPC's trailers.
  std::string frame("\0\0\0\0\x02hi", 7);
  std::ofstream(c.tmp.sub("grpc.bin"), std::ios::binary) << frame;
  auto h1 = run({"/usr/bin/curl", "-sS", "-i", "--raw", "-H", "Host: echo", "-H", "content-type: application/grpc",
                 "-H", "te: trailers", "--data-binary", "@" + c.tmp.sub("grpc.bin"),
                 "http://" + c.outbound(1).toString() + "/mesh.test.Echo/Echo"},
                30s, c.tmp.path());
  ASSERT_TRUE(h1.status.exited && h1.status.code == 0) << h1.err;
  EXPECT_TRUE(h1.out.starts_with("HTTP/1.1 200 OK\r\n")) << h1.out;
  EXPECT_NE(h1.out.find("content-type: application/grpc"), std::string::npos) << h1.out;
  EXPECT_NE(h1.out.find("transfer-encoding: chunked"), std::string::npos) << h1.out;
  EXPECT_NE(h1.out.find(std::string("\0\0\0\0\x09" "echo-b:hi", 14)), std::string::npos) << h1.out;
  EXPECT_NE(h1.out.find("\r\n0\r\ngrpc-status: 0\r\n"), std::string::npos) << h1.out;

  // Counted on both sides (gRPC answers 200 whatever its status).
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_requests_total",
                              {"direction=\"outbound\"", "service=\"echo\"", "class=\"2xx\""}, 26));
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_requests_total",
                              {"direction=\"inbound\"", "service=\"echo\"", "class=\"2xx\""}, 26));
}

}  // namespace
}  // namespace mesh::testing
