#include <gtest/gtest.h>

#include "common/http/client.h"
#include "common/http/message.h"
#include "common/http/request_parser.h"

namespace mesh::http {
namespace {

using State = ParsedRequest::State;
const RequestLimits kLimits{};

TEST(RequestParser, CompleteGetWithQuery) {
  auto p = parseRequest("GET /v1/self?x=a%20b&y HTTP/1.1\r\nHost: n\r\n\r\n", kLimits);
  ASSERT_EQ(p.state, State::complete);
  EXPECT_EQ(p.request.method, "GET");
  EXPECT_EQ(p.request.path(), "/v1/self");
  EXPECT_EQ(p.request.query(), "x=a%20b&y");
  EXPECT_EQ(p.request.queryParam("x"), "a b");
  EXPECT_EQ(p.request.queryParam("y"), "");
  EXPECT_EQ(p.request.queryParam("z"), std::nullopt);
  EXPECT_TRUE(keepAlive(p.request));
}

TEST(RequestParser, IncompleteUntilHeadersAndBodyArrive) {
  std::string req = "PUT /x HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\r\nhello";
  for (std::size_t cut = 0; cut < req.size(); ++cut) {
    EXPECT_EQ(parseRequest(req.substr(0, cut), kLimits).state, State::incomplete) << cut;
  }
  auto p = parseRequest(req, kLimits);
  ASSERT_EQ(p.state, State::complete);
  EXPECT_EQ(p.request.body, "hello");
  EXPECT_EQ(p.consumed, req.size());
}

TEST(RequestParser, PipelinedRequestsConsumeOneAtATime) {
  std::string two = "GET /a HTTP/1.1\r\nHost: n\r\n\r\nGET /b HTTP/1.1\r\nHost: n\r\n\r\n";
  auto p = parseRequest(two, kLimits);
  ASSERT_EQ(p.state, State::complete);
  EXPECT_EQ(p.request.target, "/a");
  auto q = parseRequest(std::string_view(two).substr(p.consumed), kLimits);
  ASSERT_EQ(q.state, State::complete);
  EXPECT_EQ(q.request.target, "/b");
}

TEST(RequestParser, ChunkedBody) {
  std::string req =
      "POST /c HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next HTTP/1.1\r\n";
  auto p = parseRequest(req, kLimits);
  ASSERT_EQ(p.state, State::complete);
  EXPECT_EQ(p.request.body, "hello world");
  EXPECT_EQ(req.substr(p.consumed), "GET /next HTTP/1.1\r\n");
}

TEST(RequestParser, SmugglingDefences) {
  auto both = parseRequest(
      "POST / HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      kLimits);
  EXPECT_EQ(both.state, State::error);
  EXPECT_EQ(both.errorStatus, 400);
  auto twoLengths = parseRequest(
      "POST / HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", kLimits);
  EXPECT_EQ(twoLengths.state, State::error);
  EXPECT_EQ(twoLengths.errorStatus, 400);
  auto oddTe = parseRequest("POST / HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: gzip\r\n\r\n", kLimits);
  EXPECT_EQ(oddTe.errorStatus, 501);
  auto badLen = parseRequest("POST / HTTP/1.1\r\nHost: n\r\nContent-Length: +3\r\n\r\nabc", kLimits);
  EXPECT_EQ(badLen.errorStatus, 400);
  auto folded = parseRequest("GET / HTTP/1.1\r\nHost: n\r\nX-A: 1\r\n  2\r\n\r\n", kLimits);
  EXPECT_EQ(folded.state, State::error);
  auto noHost = parseRequest("GET / HTTP/1.1\r\n\r\n", kLimits);
  EXPECT_EQ(noHost.errorStatus, 400);
}

TEST(RequestParser, SizeLimits) {
  RequestLimits small{.maxHeaderBytes = 64, .maxBodyBytes = 4, .maxHeaders = 3};
  auto big = parseRequest("GET / HTTP/1.1\r\nHost: n\r\nX: " + std::string(100, 'a'), small);
  EXPECT_EQ(big.errorStatus, 431);
  auto many = parseRequest("GET / HTTP/1.1\r\nHost: n\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small);
  EXPECT_EQ(many.errorStatus, 431);
  auto body = parseRequest("PUT / HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n\r\n", small);
  EXPECT_EQ(body.errorStatus, 413);
  auto chunked = parseRequest(
      "PUT / HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n",
      small);
  EXPECT_EQ(chunked.errorStatus, 413);
}

TEST(RequestParser, VersionsAndKeepAlive) {
  auto h10 = parseRequest("GET / HTTP/1.0\r\n\r\n", kLimits);
  ASSERT_EQ(h10.state, State::complete);
  EXPECT_FALSE(keepAlive(h10.request));
  auto h10ka = parseRequest("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", kLimits);
  EXPECT_TRUE(keepAlive(h10ka.request));
  auto close = parseRequest("GET / HTTP/1.1\r\nHost: n\r\nConnection: foo, close\r\n\r\n", kLimits);
  EXPECT_FALSE(keepAlive(close.request));
  EXPECT_EQ(parseRequest("garbage\r\n\r\n", kLimits).state, State::error);
}

TEST(ResponseParser, ContentLengthChunkedAndClose) {
  auto a = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 1024);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->complete);
  EXPECT_EQ(a->response.status, 200);
  EXPECT_EQ(a->response.body, "ok");

  auto partial = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", false, 1024);
  ASSERT_TRUE(partial.ok());
  EXPECT_FALSE(partial->complete);
  EXPECT_FALSE(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", true, 1024).ok());

  auto chunked = parseResponse(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, 1024);
  ASSERT_TRUE(chunked.ok());
  EXPECT_EQ(chunked->response.body, "ok");

  auto toClose = parseResponse("HTTP/1.0 200 OK\r\n\r\nall of it", true, 1024);
  ASSERT_TRUE(toClose.ok());
  EXPECT_EQ(toClose->response.body, "all of it");

  auto head = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false, 1024, true);
  ASSERT_TRUE(head.ok());
  EXPECT_TRUE(head->complete);
}

TEST(ResponseParser, ErrorsAndCaps) {
  EXPECT_EQ(parseResponse("SSH-2.0-OpenSSH\r\n\r\n", false, 1024).error().code, errc::malformed);
  EXPECT_EQ(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n", false, 1024).error().code,
            errc::too_large);
  EXPECT_EQ(parseResponse(std::string(2000, 'x'), false, 1024).error().code, errc::too_large);
}

TEST(Message, HeadersAreCaseInsensitive) {
  Headers h{{"Content-Type", "text/plain"}};
  EXPECT_EQ(findHeader(h, "content-type"), "text/plain");
  EXPECT_EQ(findHeader(h, "Accept"), std::nullopt);
  EXPECT_EQ(reasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(percentDecode("a+b%2Fc%zz"), "a b/c%zz");
  EXPECT_EQ(percentEncode("deploy v2/é"), "deploy%20v2%2F%C3%A9");
  EXPECT_EQ(percentDecode(percentEncode("a&b=c d")), "a&b=c d");
}

}  // namespace
}  // namespace mesh::http
