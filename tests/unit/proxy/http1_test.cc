#include "node/proxy/http1.h"

#include <gtest/gtest.h>

namespace mesh::proxy::h1 {
namespace {

// Heads view into the parsed bytes: they are kept here until the next call.
ParseResult req(const std::string& s, Head& h, Limits l = {}) {
  static std::string kept;
  kept = s;
  return parseRequest(kept, l, h);
}

TEST(Http1Test, ParsesARequestHeadInPlaceWithItsFraming) {
  Head h;
  std::string s =
      "POST /a?b=1 HTTP/1.1\r\nHost: reviews.mesh:80\r\nContent-Length: 5\r\nX-Request-Id: abc\r\n\r\nhelloGET";
  auto r = req(s, h);
  ASSERT_EQ(r.state, Parse::complete);
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.path, "/a?b=1");
  EXPECT_EQ(h.host, "reviews.mesh:80");
  EXPECT_EQ(h.requestId, "abc");
  EXPECT_EQ(h.framing, Framing::length);
  EXPECT_EQ(h.contentLength, 5u);
  EXPECT_TRUE(h.keepAlive);
  EXPECT_EQ(s.substr(h.headBytes, 5), "hello");
  // Incomplete until the blank line.
  EXPECT_EQ(req("GET / HTTP/1.1\r\nHost: a\r\n", h).state, Parse::incomplete);
  // Absolute form names the service; HTTP/1.0 closes unless asked to keep alive.
  ASSERT_EQ(req("GET http://ratings:9080/x HTTP/1.1\r\nHost: ignored\r\n\r\n", h).state, Parse::complete);
  EXPECT_EQ(h.host, "ratings:9080");
  EXPECT_EQ(h.path, "/x");
  std::string abs;
  writeRequest(h, h.path, {}, true, abs);
  EXPECT_EQ(abs, "GET /x HTTP/1.1\r\nHost: ratings:9080\r\n\r\n");  // the authority wins over Host
  ASSERT_EQ(req("GET / HTTP/1.0\r\n\r\n", h).state, Parse::complete);
  EXPECT_FALSE(h.keepAlive);
  ASSERT_EQ(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", h).state, Parse::complete);
  EXPECT_TRUE(h.keepAlive);
  ASSERT_EQ(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", h).state, Parse::complete);
  EXPECT_FALSE(h.keepAlive);
  ASSERT_EQ(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", h).state,
            Parse::complete);
  EXPECT_TRUE(h.upgrade);
  ASSERT_EQ(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", h).state, Parse::complete);
  EXPECT_EQ(h.framing, Framing::chunked);
  // The same length twice is one length.
  ASSERT_EQ(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", h).state, Parse::complete);
  EXPECT_EQ(h.contentLength, 3u);
}

TEST(Http1Test, RefusesWhatCouldBeFramedTwoWays) {
  struct Case {
    std::string in;
    int status;
  };
  const Case cases[] = {
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
      {"GET relative HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},  // picohttpparser reads HTTP/1.x only
      {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400},  // TLS to the plain listener
  };
  for (const auto& c : cases) {
    Head h;
    auto r = req(c.in, h);
    EXPECT_EQ(r.state, Parse::error) << c.in;
    EXPECT_EQ(r.status, c.status) << c.in << " (" << r.reason << ")";
  }
}

TEST(Http1Test, HeadSizeAndFieldCountAreBounded) {
  Head h;
  Limits l;
  l.maxHeadBytes = 1024;
  l.maxHeaders = 10;
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'b');
  auto r = req(big, h, l);  // not even complete: refused once past the limit
  EXPECT_EQ(r.state, Parse::error);
  EXPECT_EQ(r.status, 431);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 11; ++i) many += "X" + std::to_string(i) + ": v\r\n";
  r = req(many + "\r\n", h, l);
  EXPECT_EQ(r.status, 431);
  std::string ten = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 9; ++i) ten += "X" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(req(ten + "\r\n", h, l).state, Parse::complete);
}

TEST(Http1Test, ResponseFramingFollowsRfc9112) {
  Head h;
  Limits l;
  ASSERT_EQ(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", l, "HEAD", h).state, Parse::complete);
  EXPECT_EQ(h.framing, Framing::none);
  ASSERT_EQ(parseResponse("HTTP/1.1 204 No Content\r\n\r\n", l, "GET", h).state, Parse::complete);
  EXPECT_EQ(h.framing, Framing::none);
  ASSERT_EQ(parseResponse("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", l, "GET", h).state,
            Parse::complete);
  EXPECT_EQ(h.framing, Framing::none);
  ASSERT_EQ(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", l, "GET", h).state, Parse::complete);
  EXPECT_EQ(h.framing, Framing::chunked);
  ASSERT_EQ(parseResponse("HTTP/1.1 200 OK\r\n\r\n", l, "GET", h).state, Parse::complete);
  EXPECT_EQ(h.framing, Framing::untilClose);
  EXPECT_FALSE(h.keepAlive);
  ASSERT_EQ(parseResponse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", l,
                          "GET", h)
                .state,
            Parse::complete);
  EXPECT_EQ(h.framing, Framing::tunnel);
  ASSERT_EQ(parseResponse("HTTP/1.1 200 Connection established\r\n\r\n", l, "CONNECT", h).state, Parse::complete);
  EXPECT_EQ(h.framing, Framing::tunnel);
  EXPECT_EQ(
      parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", l, "GET", h).status,
      502);
  EXPECT_EQ(parseResponse("garbage\r\n\r\n", l, "GET", h).status, 502);
}

TEST(Http1Test, ChunkedScannerFindsTheEndWithoutChangingAByte) {
  const std::string body = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
  // Fed whole, and fed one byte at a time, the end is the same.
  ChunkedScanner whole;
  auto s = whole.feed(body + "NEXT");
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.used, body.size());
  ChunkedScanner bytes;
  std::size_t used = 0;
  bool done = false;
  for (std::size_t i = 0; i < body.size() && !done; ++i) {
    auto st = bytes.feed(std::string_view(body).substr(i, 1));
    ASSERT_FALSE(st.error) << i;
    used += st.used;
    done = st.done;
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(used, body.size());
  for (const std::string bad : {"zz\r\n", "4\r\nabcdXY", "4\nabcd\r\n", "11111111111111111\r\n", "0\r\nX\n"}) {
    ChunkedScanner sc;
    EXPECT_TRUE(sc.feed(bad).error) << bad;
  }
}

TEST(Http1Test, TheNextHopGetsNoHopByHopFields) {
  Head h;
  std::string s =
      "GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\nX-Secret: s\r\n"
      "TE: trailers\r\nProxy-Connection: x\r\nX-Request-Id: old\r\nAccept: */*\r\n\r\n";
  ASSERT_EQ(req(s, h).state, Parse::complete);
  std::string out;
  writeRequest(h, h.path, {{"x-request-id", "new"}}, true, out);
  EXPECT_EQ(out, "GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nx-request-id: new\r\n\r\n");
  out.clear();
  writeRequest(h, h.path, {}, false, out);
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  // An upgrade keeps its Upgrade field and says so in Connection.
  ASSERT_EQ(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", h).state,
            Parse::complete);
  out.clear();
  writeRequest(h, h.path, {}, true, out);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  // Upgrade: h2c (curl --http2) is ignored, as a server may: served as HTTP/1.1, and the next hop
  // sees neither the upgrade nor its HTTP2-Settings.
  ASSERT_EQ(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
                h)
                .state,
            Parse::complete);
  EXPECT_FALSE(h.upgrade);
  out.clear();
  writeRequest(h, h.path, {}, true, out);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  // Framing fields pass unchanged (the body is relayed as it came).
  ASSERT_EQ(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", h).state, Parse::complete);
  out.clear();
  writeRequest(h, h.path, {}, true, out);
  EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(simpleResponse(503, "no\n", false),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 3\r\nConnection: close\r\n\r\nno\n");
}

}  // namespace
}  // namespace mesh::proxy::h1
