// The data plane through real processes (issue 7): a client -> meshd A (outbound) -> mTLS ->
// meshd B (inbound) -> a real upstream server.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "node/identity/identity.h"
#include "tests/integration/proxy_cluster.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

int statusOf(const std::string& raw) { return raw.size() > 12 ? std::atoi(raw.c_str() + 9) : 0; }

class ProxyTest : public ::testing::Test {
 protected:
  ProxyCluster c;
};

TEST_F(ProxyTest, Http1CrossesTwoProxiesOverMutualTls) {
  // HTTP/1.1 between the proxies too (chunked bodies byte for byte, pipelining, pools); the
  // default, HTTP/2 between them, is proxy_h2_test's.
  c.nodeArgs[1] = {"--peer-protocol", "http1"};
  c.twoNodesServing("reviews", 9080);

  // GET by service name, and by name.mesh with a port; the upstream sees who called (the
  // calling node's SPIFFE ID), a generated request id and the trace headers as sent.
  auto r = c.request(1, "reviews", "GET", "/hello", {},
                     {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                      {"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"}});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "reviews-b\n");
  EXPECT_EQ(http::findHeader(r->headers, "x-seen-x-forwarded-client-cert").value_or(""),
            "URI=spiffe://test.mesh/node/p1");
  EXPECT_EQ(http::findHeader(r->headers, "x-seen-x-request-id").value_or("").size(), 36u);
  EXPECT_EQ(http::findHeader(r->headers, "x-seen-traceparent").value_or(""),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(http::findHeader(r->headers, "x-seen-x-b3-traceid").value_or(""), "80f198ee56343ba864fe8b2a57d3eff7");
  r = c.request(1, "reviews.mesh:80", "GET", "/", {}, {{"x-request-id", "given-id-1"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(http::findHeader(r->headers, "x-seen-x-request-id").value_or(""), "given-id-1");

  // Bodies both ways: Content-Length and chunked requests; a chunked response with trailers
  // (what gRPC-style trailers look like in HTTP/1.1) arrives intact.
  r = c.request(1, "reviews", "POST", "/echo", std::string(100000, 'z'));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body.size(), 100000u);
  {
    RawConn raw(c.outbound(1));
    raw.send(
        "POST /echo HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n");
    auto got = raw.readUntil("0\r\n\r\n");
    EXPECT_EQ(statusOf(got), 200) << got;
    EXPECT_NE(got.find("4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"), std::string::npos) << got;
    raw.send("GET /chunked HTTP/1.1\r\nHost: reviews\r\n\r\n");
    got = raw.readUntil("grpc-status: 0\r\n\r\n");
    EXPECT_NE(got.find("5\r\nhello\r\n7\r\n, world\r\n0\r\ngrpc-status: 0\r\n\r\n"), std::string::npos) << got;
    // Expect: 100-continue: the proxy says 100 itself (the upstream, like many servers, never
    // would), the client then sends its body, and the upstream gets it without Expect.
    raw.send("POST /echo HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_EQ(raw.readUntil("\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
    raw.send("12345");
    got = raw.readUntil("12345");
    EXPECT_EQ(statusOf(got), 200) << got;
    EXPECT_NE(got.find("\r\n\r\n12345"), std::string::npos) << got;
    // HEAD: a length but no body; the connection stays usable.
    raw.send("HEAD / HTTP/1.1\r\nHost: reviews\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: reviews\r\n\r\n");
    got = raw.readUntil("204 No Content");
    EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
    EXPECT_NE(got.find("HTTP/1.1 204"), std::string::npos) << got;
  }

  // Keep-alive: 500 requests over one client connection, all answered.
  auto j = c.load(1, "reviews", {"--connections", "1", "--requests", "500"});
  EXPECT_EQ(j["status"].value("200", 0), 500) << j.dump();
  EXPECT_TRUE(j["errors"].empty()) << j.dump();

  // An unknown service: 503 with a body that says so, counted.
  r = c.request(1, "ratings", "GET", "/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "no service 'ratings' in the mesh catalog\n");
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_errors_total", {"direction=\"outbound\"", "cause=\"no_route\""}, 1))
      << c.metric(1, "mesh_proxy_errors_total", {"direction=\"outbound\"", "cause=\"no_route\""});

  // Metrics on both sides: requests by service and class, handshakes, latency histograms.
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_requests_total",
                              {"direction=\"outbound\"", "service=\"reviews\"", "class=\"2xx\""}, 505))
      << c.metric(1, "mesh_proxy_requests_total", {"direction=\"outbound\"", "service=\"reviews\"", "class=\"2xx\""});
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_requests_total",
                              {"direction=\"inbound\"", "service=\"reviews\"", "class=\"2xx\""}, 505))
      << c.metric(2, "mesh_proxy_requests_total", {"direction=\"inbound\"", "service=\"reviews\"", "class=\"2xx\""});
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_tls_handshakes_total", {"side=\"server\"", "result=\"ok\""}, 1))
      << c.metric(2, "mesh_proxy_tls_handshakes_total", {"side=\"server\"", "result=\"ok\""});
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_request_duration_seconds_count", {"service=\"reviews\""}, 505))
      << c.metric(1, "mesh_proxy_request_duration_seconds_count", {"service=\"reviews\""});
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_upstream_duration_seconds_count", {"service=\"reviews\""}, 505))
      << c.metric(1, "mesh_proxy_upstream_duration_seconds_count", {"service=\"reviews\""});
  // Pooled: far fewer upstream connections than requests.
  EXPECT_LE(c.metric(1, "mesh_proxy_upstream_connects_total", {"direction=\"outbound\"", "result=\"ok\""}), 10);
}

TEST_F(ProxyTest, SameZoneFirstThenSpillOverWhenItHasNoHealthyEndpoint) {
  c.nodeArgs[1] = {"--zone", "zone-a"};
  c.nodeArgs[2] = {"--zone", "zone-a"};
  c.nodeArgs[3] = {"--zone", "zone-b"};
  c.start(3);
  c.upstream(2, 9086, "near");
  c.upstream(3, 9086, "far");
  c.service(2, "zoned-2", "zoned", 9086);  // an instance's zone is its node's
  c.service(3, "zoned-3", "zoned", 9086);
  ASSERT_TRUE(c.waitEndpoints(1, "zoned", 2));
  // Round robin, but node 1 is in zone-a: everything stays in zone-a while it has a healthy endpoint.
  auto j = c.load(1, "zoned", {"--connections", "2", "--requests", "200"});
  EXPECT_EQ(j["upstreams"].value("near", 0), 200) << j.dump();
  // The zone-a app stops: its health check fails, the instance goes critical and leaves the
  // pool; traffic spills over to zone-b, with no failed request once it has.
  c.upstreams[0].kill();
  ASSERT_TRUE(c.waitEndpoints(1, "zoned", 1, 30s));
  j = c.load(1, "zoned", {"--connections", "2", "--requests", "200"});
  EXPECT_EQ(j["upstreams"].value("far", 0), 200) << j.dump();
  EXPECT_TRUE(j["errors"].empty()) << j.dump();
  auto r = c.node(1).get("/v1/proxy");
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->body.find("\"zone\": \"zone-b\""), std::string::npos) << r->body;
}

TEST_F(ProxyTest, AnUpstreamClosingIdleConnectionsCostsNoRequest) {
  // The app closes keep-alive connections idle 500 ms (Node.js does after 5 s): a pooled
  // connection it closed is never used for the next request, even one with a body that could
  // not be sent again.
  c.twoNodesServing("idle", 9084, "http", {"--idle-close-ms", "500"});
  for (int i = 0; i < 3; ++i) {
    auto r = c.request(1, "idle", "POST", "/echo", "body " + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->status, 200) << i << ": " << r->body;
    EXPECT_EQ(r->body, "body " + std::to_string(i));
    std::this_thread::sleep_for(1200ms);
  }
}

TEST_F(ProxyTest, WebSocketUpgradeAndConnectPassThroughBothProxies) {
  c.twoNodesServing("chat", 9081);
  RawConn raw(c.outbound(1));
  ASSERT_TRUE(raw.ok());
  raw.send(
      "GET /socket HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  auto head = raw.readUntil("\r\n\r\n");
  EXPECT_EQ(statusOf(head), 101) << head;
  // RFC 6455 section 1.3's example key and accept value.
  EXPECT_NE(head.find("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos) << head;
  for (const std::string msg : {"hello", "through two proxies"}) {
    raw.send(wsFrame(1, msg));
    auto echo = raw.readUntil(msg);
    ASSERT_GE(echo.size(), 2 + msg.size());
    EXPECT_EQ(static_cast<unsigned char>(echo[0]), 0x81);
    EXPECT_EQ(echo.substr(2), msg);
  }
  raw.send(wsFrame(8, ""));
  auto closing = raw.readAll();
  EXPECT_EQ(static_cast<unsigned char>(closing[0]), 0x88);

  // CONNECT: a byte tunnel to an instance of the service, over mTLS to its node (ALPN
  // mesh-tcp/1), spliced there to the instance; what goes through is the app's business.
  RawConn tunnel(c.outbound(1));
  tunnel.send("CONNECT chat:9081 HTTP/1.1\r\nHost: chat:9081\r\n\r\n");
  auto established = tunnel.readUntil("\r\n\r\n");
  EXPECT_EQ(established, "HTTP/1.1 200 Connection established\r\n\r\n");
  tunnel.send("GET /inside HTTP/1.1\r\nHost: anything\r\n\r\n");
  auto inside = tunnel.readUntil("chat-b\n");
  EXPECT_EQ(statusOf(inside), 200) << inside;
  EXPECT_NE(inside.find("chat-b\n"), std::string::npos) << inside;
  // The request went through the tunnel untouched: no request id was added on the way.
  EXPECT_EQ(inside.find("x-seen-x-request-id"), std::string::npos) << inside;
  RawConn nowhere(c.outbound(1));
  nowhere.send("CONNECT nothing:1 HTTP/1.1\r\nHost: nothing:1\r\n\r\n");
  EXPECT_EQ(statusOf(nowhere.readUntil("\r\n\r\n")), 503);
}

TEST_F(ProxyTest, RequestsThatCouldSmuggleOrOverflowAreRefused) {
  c.twoNodesServing("strict", 9082);
  struct Case {
    const char* what;
    std::string request;
    int status;
  };
  const std::string big(40 * 1024, 'a');
  const std::vector<Case> cases = {
      {"both Content-Length and Transfer-Encoding",
       "POST / HTTP/1.1\r\nHost: strict\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"two different Content-Length values",
       "POST / HTTP/1.1\r\nHost: strict\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400},
      {"a Content-Length that is not a number", "POST / HTTP/1.1\r\nHost: strict\r\nContent-Length: +5\r\n\r\nhello",
       400},
      {"Transfer-Encoding twice",
       "POST / HTTP/1.1\r\nHost: strict\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       400},
      {"a coding other than chunked",
       "POST / HTTP/1.1\r\nHost: strict\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
      {"obsolete line folding", "GET / HTTP/1.1\r\nHost: strict\r\nX-A: one\r\n two\r\n\r\n", 400},
      {"a space before the colon", "GET / HTTP/1.1\r\nHost: strict\r\nContent-Length : 0\r\n\r\n", 400},
      {"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two Hosts", "GET / HTTP/1.1\r\nHost: strict\r\nHost: other\r\n\r\n", 400},
      {"a header block over 32 KiB", "GET / HTTP/1.1\r\nHost: strict\r\nX-Big: " + big + "\r\n\r\n", 431},
      {"more than 100 fields",
       [] {
         std::string r = "GET / HTTP/1.1\r\nHost: strict\r\n";
         for (int i = 0; i < 120; ++i) r += "X-F" + std::to_string(i) + ": v\r\n";
         return r + "\r\n";
       }(),
       431},
      {"bad chunk framing", "POST / HTTP/1.1\r\nHost: strict\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0},
  };
  for (const auto& k : cases) {
    RawConn raw(c.outbound(1));
    ASSERT_TRUE(raw.ok());
    raw.send(k.request);
    auto got = raw.readAll();  // the proxy closes after refusing
    if (k.status) {
      EXPECT_EQ(statusOf(got), k.status) << k.what << ": " << got;
    } else {
      // The head was fine and went on; the body's framing was not: the exchange is cut, and
      // never answered with a 200.
      EXPECT_NE(statusOf(got), 200) << k.what << ": " << got;
    }
  }
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_errors_total", {"cause=\"bad_request\""}, 8))
      << c.metric(1, "mesh_proxy_errors_total", {"cause=\"bad_request\""});
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_errors_total", {"cause=\"header_too_large\""}, 2))
      << c.metric(1, "mesh_proxy_errors_total", {"cause=\"header_too_large\""});
  // The upstream never saw any of them: its proxy counted no request.
  EXPECT_LE(c.metric(2, "mesh_proxy_requests_total", {"direction=\"inbound\"", "class=\"2xx\""}), 1);
}

// A TLS client of our own for the inbound listener: with or without a certificate.
struct TlsProbe {
  // Returns "" when the handshake and one request/response completed, else what failed.
  static std::string tryRequest(const HostPort& to, const std::string& certDir, const std::string& sni) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // we test the server's check, not ours
    if (!certDir.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx, (certDir + "/node.crt").c_str());
      SSL_CTX_use_PrivateKey_file(ctx, (certDir + "/node.key").c_str(), SSL_FILETYPE_PEM);
    }
    RawConn raw(to);
    std::string result;
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, raw.fd());
    SSL_set_tlsext_host_name(ssl, sni.c_str());
    if (SSL_connect(ssl) != 1) {
      result = "handshake failed";
    } else {
      std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
      SSL_write(ssl, req.data(), static_cast<int>(req.size()));
      char buf[4096];
      std::string got;
      int n;
      // TLS 1.3: a refused client certificate shows here, as an alert instead of data.
      while (got.find("\r\n\r\n") == std::string::npos && (n = SSL_read(ssl, buf, sizeof buf)) > 0) {
        got.append(buf, static_cast<std::size_t>(n));
      }
      if (got.empty())
        result = "no response";
      else if (!got.starts_with("HTTP/1.1 200"))
        result = "not 200: " + got;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return result;
  }
};

TEST_F(ProxyTest, PeersWithoutAValidCertificateGetNothing) {
  c.twoNodesServing("secret", 9083);
  // Our own node's certificate works (the check is not refusing everything).
  EXPECT_EQ(TlsProbe::tryRequest(c.inbound(2), c.tmp.sub("p1-ca-tls"), "secret-1"), "");
  // No certificate; a certificate of another trust domain; an expired one (from a CA whose clock
  // says two years ago, valid for one day).
  EXPECT_NE(TlsProbe::tryRequest(c.inbound(2), "", "secret-1"), "");
  auto otherDir = c.issue("intruder", "other-ca", "other.mesh");
  EXPECT_NE(TlsProbe::tryRequest(c.inbound(2), otherDir, "secret-1"), "");
  const auto twoYearsAgo = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch() - std::chrono::hours(24 * 730))
                               .count();
  auto expired = identity::issueNode(c.tmp.sub("ca"), "old", c.tmp.sub("old-tls"), 1, twoYearsAgo);
  ASSERT_TRUE(expired.ok()) << expired.error().message();
  EXPECT_NE(TlsProbe::tryRequest(c.inbound(2), c.tmp.sub("old-tls"), "secret-1"), "");
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_tls_handshakes_total", {"side=\"server\"", "result=\"refused\""}, 3))
      << c.metric(2, "mesh_proxy_tls_handshakes_total", {"side=\"server\"", "result=\"refused\""});
  // Plain HTTP to the inbound port gets no answer either.
  RawConn plain(c.inbound(2));
  plain.send("GET / HTTP/1.1\r\nHost: secret\r\n\r\n");
  EXPECT_EQ(plain.readAll().find("HTTP/1.1"), std::string::npos);
}

TEST_F(ProxyTest, LoadBalancingFollowsTheAlgorithmAcrossThreeNodes) {
  ASSERT_EQ(c.cli({"keygen", "--out", c.tmp.sub("op")}).status.code, 0);
  c.start(4, {"--policy-trusted-key", c.tmp.sub("op.pub")});
  for (int i = 2; i <= 4; ++i) {
    // Node 4's upstream is slow: least request must notice.
    std::vector<std::string> args;
    if (i == 4) args = {"--delay-ms", "100"};
    c.upstream(i, 9090, "lb-" + std::to_string(i), args);
    // Node 2's instance weighs 2: it gets twice the share.
    c.service(i, "lb-" + std::to_string(i), "lb", 9090, "http", i == 2 ? "  weight: 2\n" : "");
  }
  ASSERT_TRUE(c.waitEndpoints(1, "lb", 3));
  // Round robin (the default), weighted: 400 requests on one worker give exactly 200/100/100.
  auto j = c.load(1, "lb", {"--connections", "4", "--requests", "400"});
  EXPECT_EQ(j["upstreams"].value("lb-2", 0), 200) << j.dump();
  EXPECT_EQ(j["upstreams"].value("lb-3", 0), 100) << j.dump();
  EXPECT_EQ(j["upstreams"].value("lb-4", 0), 100) << j.dump();

  // Ring hash on a header: one user always lands on one upstream; users spread over all three.
  ASSERT_TRUE(c.publishLoadBalancer("lb", "{algorithm: RING_HASH, hashHeader: x-user}", "ring_hash"));
  std::map<std::string, int> usersPer;
  for (int u = 0; u < 30; ++u) {
    auto one =
        c.load(1, "lb", {"--connections", "2", "--requests", "10", "--header", "x-user: user-" + std::to_string(u)});
    ASSERT_EQ(one["upstreams"].size(), 1u) << "user " << u << ": " << one.dump();
    ++usersPer[one["upstreams"].begin().key()];
  }
  EXPECT_EQ(usersPer.size(), 3u);
  // Weighted: node 2's twice as many points on the ring show.
  EXPECT_GT(usersPer["lb-2"], usersPer["lb-3"]);

  // Random, weighted 2:1:1: 800 requests within five standard deviations of 400/200/200.
  ASSERT_TRUE(c.publishLoadBalancer("lb", "{algorithm: RANDOM}", "random"));
  j = c.load(1, "lb", {"--connections", "8", "--requests", "800"});
  EXPECT_NEAR(j["upstreams"].value("lb-2", 0), 400, 71) << j.dump();
  EXPECT_NEAR(j["upstreams"].value("lb-3", 0), 200, 61) << j.dump();
  EXPECT_NEAR(j["upstreams"].value("lb-4", 0), 200, 61) << j.dump();

  // Least request (power of two choices): the slow upstream, busy with what it has, gets far
  // less than the quarter round robin would give it.
  ASSERT_TRUE(c.publishLoadBalancer("lb", "{algorithm: LEAST_REQUEST}", "least_request"));
  j = c.load(1, "lb", {"--connections", "16", "--duration", "3"});
  const int total = j["requests"].get<int>();
  EXPECT_TRUE(j["errors"].empty()) << j.dump();
  EXPECT_LT(j["upstreams"].value("lb-4", 0), total / 10) << j.dump();
}

}  // namespace
}  // namespace mesh::testing

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class ProxyLifecycleTest : public ::testing::Test {
 protected:
  ProxyCluster c;

  // mesh_test_load in the background; its JSON when it ends.
  ChildProcess startLoad(int node, const std::string& host, const std::vector<std::string>& args) {
    std::vector<std::string> argv{loadPath(), "--target", c.outbound(node).toString(), "--host", host};
    argv.insert(argv.end(), args.begin(), args.end());
    return ChildProcess::start(argv, c.tmp.path(), "load");
  }
  static json result(ChildProcess& p) {
    p.wait(120s);
    auto j = json::parse(p.stdoutText(), nullptr, false);
    return j.is_discarded() ? json{{"unreadable", p.stdoutText() + p.stderrText()}} : j;
  }
};

TEST_F(ProxyLifecycleTest, AKilledNodeLeavesThePoolWithinDetectionTimeWithoutClientErrors) {
  c.nodesServing(4, "ha", 9095, "up");
  auto load = startLoad(1, "ha", {"--connections", "8", "--duration", "10"});
  std::this_thread::sleep_for(2s);
  c.node(4).process().kill();  // kill -9: no leave, SWIM has to find out
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.waitEndpoints(1, "ha", 2, 30s));
  const double detect = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::cout << "node 4 left node 1's pool " << detect << " s after kill -9\n";
  auto j = result(load);
  // Idempotent GETs: connects to the dead node failed and went elsewhere; requests caught on its
  // dead connections went again. The client saw no error, before detection or after.
  EXPECT_TRUE(j["errors"].empty()) << j.dump();
  EXPECT_EQ(j["status"].size(), 1u) << j.dump();
  EXPECT_GT(j["status"].value("200", 0), 1000) << j.dump();
  // After detection: none to the dead node.
  auto after = c.load(1, "ha", {"--connections", "4", "--requests", "300"});
  EXPECT_EQ(after["upstreams"].value("up-4", 0), 0) << after.dump();
  EXPECT_EQ(after["status"].value("200", 0), 300) << after.dump();
}

TEST_F(ProxyLifecycleTest, EndpointsAndPolicyChangeUnder200ConnectionsWithoutAFailedRequest) {
  ASSERT_EQ(c.cli({"keygen", "--out", c.tmp.sub("op")}).status.code, 0);
  c.start(4, {"--policy-trusted-key", c.tmp.sub("op.pub")});
  for (int i = 2; i <= 4; ++i) c.upstream(i, 9096, "live-" + std::to_string(i));
  c.service(2, "live-2", "live", 9096);
  c.service(3, "live-3", "live", 9096);
  ASSERT_TRUE(c.waitEndpoints(1, "live", 2));
  auto load = startLoad(1, "live", {"--connections", "200", "--duration", "12"});
  std::this_thread::sleep_for(2s);
  c.service(4, "live-4", "live", 9096);  // an endpoint joins
  EXPECT_TRUE(c.waitEndpoints(1, "live", 3));
  EXPECT_TRUE(c.publishLoadBalancer("live", "{algorithm: LEAST_REQUEST}", "least_request"));
  std::this_thread::sleep_for(1s);
  c.removeService(2, "live-2");  // an endpoint leaves while it has requests in flight
  EXPECT_TRUE(c.waitEndpoints(1, "live", 2));
  EXPECT_TRUE(c.publishLoadBalancer("live", "{algorithm: RANDOM}", "random"));
  auto j = result(load);
  EXPECT_TRUE(j["errors"].empty()) << j.dump();
  EXPECT_EQ(j["status"].size(), 1u) << j.dump();
  EXPECT_GT(j["status"].value("200", 0), 2000) << j.dump();
  EXPECT_GT(j["upstreams"].value("live-4", 0), 0) << j.dump();
  // Every snapshot was swapped in while the connections stayed up: a handful of snapshots,
  // and the 200 client connections were never cut (no reconnects means no connect errors).
  EXPECT_GE(c.metric(1, "mesh_proxy_snapshot_compiles_total"), 4);
}

TEST_F(ProxyLifecycleTest, GracefulDrainLetsRequestsInFlightFinish) {
  c.nodesServing(3, "drain", 9097, "dr");
  // Slow requests in flight on both nodes, then node 2 is told to stop (SIGTERM).
  std::vector<std::thread> clients;
  std::vector<int> statuses(6, 0);
  for (int k = 0; k < 6; ++k) {
    clients.emplace_back([&, k] {
      auto r = c.request(1, "drain", "GET", "/delay/1500");
      statuses[static_cast<std::size_t>(k)] = r.ok() ? r->status : -1;
    });
  }
  std::this_thread::sleep_for(300ms);
  c.node(2).process().signal(SIGTERM);
  for (auto& t : clients) t.join();
  for (int s : statuses) EXPECT_EQ(s, 200);
  auto exit = c.node(2).process().wait(10s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited && exit->code == 0);
  EXPECT_NE(c.node(2).process().stderrText().find("proxy draining"), std::string::npos);
  // Traffic carries on with the node that is left.
  ASSERT_TRUE(c.waitEndpoints(1, "drain", 1));
  auto j = c.load(1, "drain", {"--connections", "2", "--requests", "50"});
  EXPECT_EQ(j["status"].value("200", 0), 50) << j.dump();
}

TEST_F(ProxyLifecycleTest, RawTcpRedirectedByIptablesIsSplicedOverMutualTls) {
  if (auto why = enterPrivateNetwork()) {
    if (std::getenv("CI")) FAIL() << *why;
    GTEST_SKIP() << *why;
  }
  c.twoNodesServing("echo", 9100, "tcp", {"--tcp"});
  // The app (source address .100) dials the instance's own address; iptables sends it to node
  // 1's outbound listener, which finds the service by the original destination. (On a real
  // host the rule matches the app's traffic by owner; see deploy/iptables.)
  const std::string app = c.address(100);
  const std::string rule = "iptables -t nat -A OUTPUT -p tcp -s " + app + " -d " + c.address(2) +
                           " --dport 9100 -j DNAT --to-destination " + c.outbound(1).toString();
  ASSERT_EQ(std::system(rule.c_str()), 0);
  RawConn conn(HostPort{c.address(2), 9100, false, true}, app);
  ASSERT_TRUE(conn.ok());
  conn.send("ping over the mesh\n");
  EXPECT_EQ(conn.readUntil("\n"), "ping over the mesh\n");
  ::shutdown(conn.fd(), SHUT_WR);  // a half-close passes through both proxies
  EXPECT_EQ(conn.readAll(), "");
  EXPECT_TRUE(c.metricAtLeast(1, "mesh_proxy_requests_total", {"direction=\"outbound\"", "service=\"echo\""}, 1));
  EXPECT_TRUE(c.metricAtLeast(2, "mesh_proxy_requests_total", {"direction=\"inbound\"", "service=\"echo\""}, 1));
  (void)std::system("iptables -t nat -F OUTPUT");
}

}  // namespace
}  // namespace mesh::testing
