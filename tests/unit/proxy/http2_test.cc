#include "node/proxy/http2.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <map>

#include "node/proxy/http1.h"

namespace mesh::proxy::h2 {
namespace {

// Records what a session reported, per stream.
struct Recorder : Handler {
  struct Stream {
    std::vector<Head> heads;
    std::string data;
    std::vector<Field> trailers;
    bool ended = false, closed = false;
    std::uint32_t error = 0;
    std::size_t sent = 0;
  };
  std::map<std::int32_t, Stream> streams;
  Session* session = nullptr;
  bool autoConsume = true;
  void onHead(std::int32_t id, Head&& h, bool end) override {
    streams[id].heads.push_back(std::move(h));
    if (end) streams[id].ended = true;
  }
  void onData(std::int32_t id, std::string_view d) override {
    streams[id].data.append(d);
    if (autoConsume) session->consumed(id, d.size());
  }
  void onTrailers(std::int32_t id, std::vector<Field>&& t) override { streams[id].trailers = std::move(t); }
  void onEnd(std::int32_t id) override { streams[id].ended = true; }
  void onClose(std::int32_t id, std::uint32_t e) override {
    streams[id].closed = true;
    streams[id].error = e;
  }
  void onSent(std::int32_t id, std::size_t n) override { streams[id].sent += n; }
};

// A client and a server session wired back to back in memory.
struct Pair {
  Recorder c, s;
  std::unique_ptr<Session> client, server;
  explicit Pair(Settings settings = {}) {
    client = Session::make(Session::Role::client, c, settings).value();
    server = Session::make(Session::Role::server, s, settings).value();
    c.session = client.get();
    s.session = server.get();
  }
  // Moves bytes both ways until neither side has anything to say.
  void pump() {
    for (int i = 0; i < 100; ++i) {
      std::string a, b;
      client->drain(a);
      server->drain(b);
      if (a.empty() && b.empty()) return;
      if (!a.empty()) {
        ASSERT_TRUE(server->feed(a));
      }
      if (!b.empty()) {
        ASSERT_TRUE(client->feed(b));
      }
    }
  }
};

Head request(std::string method, std::string path, std::vector<Field> fields = {}) {
  Head h;
  h.method = std::move(method);
  h.scheme = "http";
  h.authority = "reviews";
  h.path = std::move(path);
  h.fields = std::move(fields);
  return h;
}

TEST(Http2Test, RequestWithBodyAndResponseWithTrailersRoundTrip) {
  Pair p;
  auto id = p.client->request(request("POST", "/greet.Greeter/Hello", {{"te", "trailers"}, {"x-a", "1"}}), false);
  ASSERT_TRUE(id);
  p.client->send(*id, "hello ", false);
  p.client->send(*id, "world", true);
  p.pump();
  auto& in = p.s.streams[*id];
  ASSERT_EQ(in.heads.size(), 1u);
  EXPECT_EQ(in.heads[0].method, "POST");
  EXPECT_EQ(in.heads[0].authority, "reviews");
  EXPECT_EQ(in.heads[0].path, "/greet.Greeter/Hello");
  ASSERT_NE(in.heads[0].find("x-a"), nullptr);
  EXPECT_EQ(*in.heads[0].find("te"), "trailers");
  EXPECT_EQ(in.data, "hello world");
  EXPECT_TRUE(in.ended);
  EXPECT_EQ(p.c.streams[*id].sent, 11u);  // reported as framed

  Head resp;
  resp.status = 200;
  resp.fields = {{"content-type", "application/grpc"}};
  ASSERT_TRUE(p.server->respond(*id, resp, false));
  p.server->send(*id, std::string(100'000, 'x'), false);
  p.server->trailers(*id, {{"grpc-status", "0"}, {"grpc-message", "ok"}});
  p.pump();
  auto& out = p.c.streams[*id];
  ASSERT_EQ(out.heads.size(), 1u);
  EXPECT_EQ(out.heads[0].status, 200);
  EXPECT_EQ(out.data.size(), 100'000u);
  ASSERT_EQ(out.trailers.size(), 2u);
  EXPECT_EQ(out.trailers[0].name, "grpc-status");
  EXPECT_EQ(out.trailers[0].value, "0");
  EXPECT_TRUE(out.ended);
  EXPECT_TRUE(out.closed);
  EXPECT_EQ(out.error, 0u);
  EXPECT_TRUE(p.s.streams[*id].closed);
  EXPECT_EQ(p.server->openStreams(), 0u);
}

// Request ids and trace context are new on every request: sent never-indexed, they stay out of
// the HPACK table (and out of any intermediary's), which keeps room for the fields that repeat.
TEST(Http2Test, FieldsNewOnEveryRequestAreNeverIndexed) {
  Recorder r;
  auto client = Session::make(Session::Role::client, r, {}).value();
  for (int i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i);
    ASSERT_TRUE(client->request(request("GET", "/", {{"user-agent", "app/1"}, {"x-request-id", "id-" + n}}), true,
                                {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333" + n + "-01"}}));
  }
  std::string wire;
  client->drain(wire);
  // The bytes after the preface are frames; inflate each HEADERS block in order, with the
  // decoder's own record of how each field was represented.
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  ASSERT_TRUE(wire.starts_with(kPreface));
  nghttp2_hd_inflater* inflater = nullptr;
  ASSERT_EQ(nghttp2_hd_inflate_new(&inflater), 0);
  std::map<std::string, std::vector<bool>> neverIndexed;  // by name, one entry per request
  std::size_t at = kPreface.size();
  while (at + 9 <= wire.size()) {
    const auto* b = reinterpret_cast<const std::uint8_t*>(wire.data() + at);
    const std::size_t len = (std::size_t{b[0]} << 16) | (std::size_t{b[1]} << 8) | b[2];
    ASSERT_LE(at + 9 + len, wire.size());
    if (b[3] == NGHTTP2_HEADERS) {
      ASSERT_EQ(b[4] & (NGHTTP2_FLAG_PADDED | NGHTTP2_FLAG_PRIORITY), 0);
      const std::uint8_t* in = b + 9;
      std::size_t left = len;
      for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        const auto used = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, in, left, 1);
        ASSERT_GE(used, 0);
        in += used;
        left -= static_cast<std::size_t>(used);
        if (flags & NGHTTP2_HD_INFLATE_EMIT) {
          neverIndexed[std::string(reinterpret_cast<char*>(nv.name), nv.namelen)].push_back(nv.flags &
                                                                                            NGHTTP2_NV_FLAG_NO_INDEX);
        }
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
          nghttp2_hd_inflate_end_headers(inflater);
          break;
        }
        if (used == 0 && left == 0) break;
      }
    }
    at += 9 + len;
  }
  nghttp2_hd_inflate_del(inflater);
  EXPECT_EQ(neverIndexed["x-request-id"], (std::vector<bool>{true, true, true}));
  EXPECT_EQ(neverIndexed["traceparent"], (std::vector<bool>{true, true, true}));
  EXPECT_EQ(neverIndexed["user-agent"], (std::vector<bool>{false, false, false}));
  EXPECT_EQ(neverIndexed[":authority"], (std::vector<bool>{false, false, false}));
}

TEST(Http2Test, InterimResponsesComeBeforeTheFinalHead) {
  Pair p;
  auto id = p.client->request(request("GET", "/"), true);
  ASSERT_TRUE(id);
  p.pump();
  Head early;
  early.status = 103;
  early.fields = {{"link", "</a.css>; rel=preload"}};
  ASSERT_TRUE(p.server->respond(*id, early, false));
  Head resp;
  resp.status = 204;
  ASSERT_TRUE(p.server->respond(*id, resp, true));
  p.pump();
  auto& out = p.c.streams[*id];
  ASSERT_EQ(out.heads.size(), 2u);
  EXPECT_EQ(out.heads[0].status, 103);
  EXPECT_EQ(out.heads[1].status, 204);
  EXPECT_TRUE(out.trailers.empty());  // the final head after a 1xx is a head, not trailers
  EXPECT_TRUE(out.ended);
}

TEST(Http2Test, DataIsAcknowledgedOnlyWhenConsumedSoASlowReaderHoldsTheWriterBack) {
  Settings small;
  small.initialWindow = 65535;
  small.connectionWindow = 65535;
  Pair p(small);
  p.s.autoConsume = false;
  auto id = p.client->request(request("POST", "/upload"), false);
  ASSERT_TRUE(id);
  p.client->send(*id, std::string(200'000, 'u'), true);
  p.pump();
  // Only one window's worth crossed; the rest waits in the client.
  EXPECT_EQ(p.s.streams[*id].data.size(), 65535u);
  EXPECT_EQ(p.client->queued(*id), 200'000u - 65535u);
  EXPECT_FALSE(p.s.streams[*id].ended);
  // The next hop took it: the windows reopen and the rest follows.
  std::size_t acknowledged = 0;
  for (int i = 0; i < 10 && !p.s.streams[*id].ended; ++i) {
    p.server->consumed(*id, p.s.streams[*id].data.size() - acknowledged);
    acknowledged = p.s.streams[*id].data.size();
    p.pump();
  }
  EXPECT_EQ(p.s.streams[*id].data.size(), 200'000u);
  EXPECT_TRUE(p.s.streams[*id].ended);
}

TEST(Http2Test, MalformedRequestsAreResetNeverDelivered) {
  // A field value with a line break, a content-length the DATA contradicts: the stream is reset.
  Pair p;
  auto crlf = p.client->request(request("GET", "/", {{"x-a", "b\r\nx-injected: 1"}}), true);
  auto cl = p.client->request(request("POST", "/", {{"content-length", "3"}}), false);
  ASSERT_TRUE(crlf && cl);
  p.client->send(*cl, "too long", true);
  p.pump();
  EXPECT_TRUE(p.s.streams[*crlf].heads.empty());
  EXPECT_TRUE(p.c.streams[*crlf].closed);
  EXPECT_NE(p.c.streams[*crlf].error, 0u);
  EXPECT_NE(p.s.streams[*cl].data, "too long");
  EXPECT_TRUE(p.c.streams[*cl].closed);
  EXPECT_NE(p.c.streams[*cl].error, 0u);
}

TEST(Http2Test, ConnectionSpecificFieldsAreNeitherSentNorAccepted) {
  // Sent: a relayed head loses them (and fields an extra replaces).
  Pair p;
  Head h = request("POST", "/", {{"transfer-encoding", "chunked"}, {"connection", "close"}, {"x-request-id", "old"},
                                 {"te", "trailers"}});
  auto id = p.client->request(h, true, {{"x-request-id", "new"}});
  ASSERT_TRUE(id);
  p.pump();
  ASSERT_EQ(p.s.streams[*id].heads.size(), 1u);
  const auto& got = p.s.streams[*id].heads[0];
  EXPECT_EQ(got.find("transfer-encoding"), nullptr);
  EXPECT_EQ(got.find("connection"), nullptr);
  ASSERT_NE(got.find("x-request-id"), nullptr);
  EXPECT_EQ(*got.find("x-request-id"), "new");
  EXPECT_EQ(*got.find("te"), "trailers");
  Head resp;
  resp.status = 200;
  resp.fields = {{"transfer-encoding", "chunked"}, {"keep-alive", "5"}, {"x-ok", "1"}};
  ASSERT_TRUE(p.server->respond(*id, resp, true));
  p.pump();
  ASSERT_EQ(p.c.streams[*id].heads.size(), 1u);
  EXPECT_EQ(p.c.streams[*id].heads[0].find("transfer-encoding"), nullptr);
  EXPECT_EQ(p.c.streams[*id].heads[0].find("keep-alive"), nullptr);
  EXPECT_NE(p.c.streams[*id].heads[0].find("x-ok"), nullptr);
  EXPECT_EQ(p.c.streams[*id].error, 0u);  // accepted: nothing malformed went out
  // Received (a smuggling vector when downgraded to HTTP/1.1): the stream is reset. Raw frames,
  // since our own client never sends them: SETTINGS, then HEADERS (END_STREAM, END_HEADERS) on
  // stream 1 with :method GET, :scheme http, :path /, :authority reviews and a literal
  // transfer-encoding: chunked.
  Recorder r;
  auto server = Session::make(Session::Role::server, r).value();
  r.session = server.get();
  std::string block = "\x82\x86\x84\x41\x07reviews";
  block += '\x00';
  block += static_cast<char>(17);
  block += "transfer-encoding";
  block += static_cast<char>(7);
  block += "chunked";
  auto frame = [](std::uint8_t type, std::uint8_t flags, std::uint32_t stream, const std::string& payload) {
    std::string f;
    f += static_cast<char>((payload.size() >> 16) & 0xff);
    f += static_cast<char>((payload.size() >> 8) & 0xff);
    f += static_cast<char>(payload.size() & 0xff);
    f += static_cast<char>(type);
    f += static_cast<char>(flags);
    for (int i = 3; i >= 0; --i) f += static_cast<char>((stream >> (8 * i)) & 0xff);
    return f + payload;
  };
  std::string bytes(kPreface);
  bytes += frame(4, 0, 0, "") + frame(1, 5, 1, block);
  (void)server->feed(bytes);
  std::string out;
  server->drain(out);
  EXPECT_TRUE(r.streams[1].heads.empty());
  EXPECT_NE(out.find(std::string("\x00\x00\x04\x03\x00\x00\x00\x00\x01", 9)), std::string::npos)
      << "an RST_STREAM for stream 1";
}

TEST(Http2Test, HeadsOverTheLimitsAreFlaggedTooLarge) {
  Settings s;
  s.maxFields = 10;
  s.maxHeadBytes = 1024;
  Pair p(s);
  std::vector<Field> many;
  for (int i = 0; i < 20; ++i) many.push_back({"x-f" + std::to_string(i), "v"});
  auto a = p.client->request(request("GET", "/", many), true);
  auto b = p.client->request(request("GET", "/", {{"x-big", std::string(900, 'b')}, {"x-big2", std::string(900, 'b')}}), true);
  auto ok = p.client->request(request("GET", "/", {{"x-small", "s"}}), true);
  ASSERT_TRUE(a && b && ok);
  p.pump();
  ASSERT_EQ(p.s.streams[*a].heads.size(), 1u);
  EXPECT_TRUE(p.s.streams[*a].heads[0].tooLarge);
  EXPECT_LE(p.s.streams[*a].heads[0].fields.size(), 10u);
  ASSERT_EQ(p.s.streams[*b].heads.size(), 1u);
  EXPECT_TRUE(p.s.streams[*b].heads[0].tooLarge);
  ASSERT_EQ(p.s.streams[*ok].heads.size(), 1u);
  EXPECT_FALSE(p.s.streams[*ok].heads[0].tooLarge);
}

TEST(Http2Test, GarbageAndHttp1AreConnectionErrors) {
  Recorder r;
  auto s = Session::make(Session::Role::server, r).value();
  r.session = s.get();
  EXPECT_FALSE(s->feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  std::string out;
  s->drain(out);  // a GOAWAY may be queued; nothing crashes
  EXPECT_FALSE(s->alive());
  // After the preface, a frame of an unknown layout with a huge length.
  Recorder r2;
  auto s2 = Session::make(Session::Role::server, r2).value();
  r2.session = s2.get();
  std::string bad(kPreface);
  bad += std::string("\xff\xff\xff\x00\x00\x00\x00\x00\x01", 9);
  // Refused either at once or by a GOAWAY that ends the session.
  const bool refused = !s2->feed(bad);
  out.clear();
  s2->drain(out);
  EXPECT_TRUE(refused || !s2->alive());
  EXPECT_TRUE(r2.streams.empty());
}

TEST(Http2Test, ResetAndGoAwayEndStreams) {
  Pair p;
  auto a = p.client->request(request("GET", "/a"), true);
  auto b = p.client->request(request("GET", "/b"), true);
  ASSERT_TRUE(a && b);
  p.pump();
  p.server->reset(*a, kCancel);
  p.pump();
  EXPECT_TRUE(p.c.streams[*a].closed);
  EXPECT_EQ(p.c.streams[*a].error, kCancel);
  p.server->goAway();
  p.pump();
  EXPECT_FALSE(p.client->acceptsStreams());
  Head resp;
  resp.status = 200;
  ASSERT_TRUE(p.server->respond(*b, resp, true));  // an open stream still finishes
  p.pump();
  EXPECT_EQ(p.c.streams[*b].heads.size(), 1u);
  EXPECT_FALSE(p.server->alive());
}

TEST(Http2Test, ConnectionSpecificFieldsAreNamed) {
  EXPECT_TRUE(connectionSpecific("connection", "close"));
  EXPECT_TRUE(connectionSpecific("transfer-encoding", "chunked"));
  EXPECT_TRUE(connectionSpecific("keep-alive", "5"));
  EXPECT_TRUE(connectionSpecific("upgrade", "websocket"));
  EXPECT_TRUE(connectionSpecific("te", "gzip"));
  EXPECT_FALSE(connectionSpecific("te", "trailers"));
  EXPECT_FALSE(connectionSpecific("content-length", "3"));
  EXPECT_FALSE(connectionSpecific("grpc-status", "0"));
}

TEST(Http2Test, ChunkedBodiesDecodeIntoDataAndTrailerFields) {
  h1::ChunkedScanner sc;
  std::string data, trailers;
  std::string body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\ngrpc-status: 0\r\nx-t:  v \r\n\r\n";
  // Byte by byte: the same result.
  h1::ChunkedScanner::Step st;
  for (char ch : body) st = sc.feed(std::string_view(&ch, 1), &data, &trailers);
  EXPECT_TRUE(st.done);
  EXPECT_EQ(data, "hello world");
  auto f = h1::trailerFields(trailers);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].first, "grpc-status");
  EXPECT_EQ(f[0].second, "0");
  EXPECT_EQ(f[1].first, "x-t");
  EXPECT_EQ(f[1].second, "v");
}

}  // namespace
}  // namespace mesh::proxy::h2
