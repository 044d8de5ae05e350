// mesh_test_upstream: a real upstream server for the proxy's integration tests and benchmarks.
// HTTP/1.1 with keep-alive, or a TCP echo server (--tcp).
//
//   GET  /...            200, body "<name>\n" (or --body-bytes bytes), header x-upstream: <name>;
//                        the request's x-request-id, x-forwarded-client-cert, traceparent,
//                        x-b3-traceid and x-route-* fields come back as x-seen-<field>, its
//                        path as x-seen-path and its Host as x-seen-host
//   POST/PUT /...        200, the request body echoed (chunked requests answered chunked)
//   /status/NNN          that status
//   /flaky/N...          503 for the first N requests of that target, then 200; every response
//                        says how many requests of its target came so far (x-upstream-seen)
//   /delay/MS            answers after MS milliseconds (--delay-ms: every request)
//   /chunked             a chunked response with a trailer (grpc-status: 0)
//   Upgrade: websocket   101 with the RFC 6455 accept key, then every frame echoed
// --idle-close-ms N closes keep-alive connections idle N ms (as Node.js does after 5 s).
// Prints "ready <address>" once listening; SIGTERM stops it.

#include <openssl/sha.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "common/asio.h"
#include "common/base64.h"
#include "common/http/message.h"
#include "common/net_address.h"
#include "node/proxy/http1.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
namespace h1 = mesh::proxy::h1;

namespace {

struct Options {
  std::string name = "upstream";
  std::size_t bodyBytes = 0;
  int delayMs = 0;
  int idleCloseMs = 0;  // close a keep-alive connection idle this long (as Node.js does after 5 s)
  bool tcpEcho = false;
};
Options opt;
std::map<std::string, int> seenCount;  // requests by target (one thread: no lock)
// Set by GET /__fail/N (0: off): every other request is answered with status N, as an instance
// gone bad would (its health check, on the port, still passes).
int failStatus = 0;
// Set by GET /__failevery/N (0: off): every Nth other request is answered with 500.
int failEvery = 0, failCount = 0;

auto tok(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

std::string wsAccept(std::string_view key) {
  std::string s(key);
  s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return mesh::base64Encode(std::string_view(reinterpret_cast<const char*>(d), sizeof d));
}

// WebSocket echo: unmasks each client frame and sends it back unmasked (RFC 6455 section 5).
awaitable<void> websocket(tcp::socket& s, std::string pending) {
  error_code ec;
  std::string in = std::move(pending);
  char tmp[16384];
  for (;;) {
    while (in.size() >= 2) {
      auto b1 = static_cast<unsigned char>(in[1]);
      std::size_t len = b1 & 0x7F, off = 2;
      if (len == 126) {
        if (in.size() < 4) break;
        len = (static_cast<unsigned char>(in[2]) << 8) | static_cast<unsigned char>(in[3]);
        off = 4;
      } else if (len == 127) {
        co_return;  // not needed by the tests
      }
      const bool masked = b1 & 0x80;
      if (in.size() < off + (masked ? 4 : 0) + len) break;
      std::string payload = in.substr(off + (masked ? 4 : 0), len);
      if (masked) {
        for (std::size_t i = 0; i < len; ++i) payload[i] ^= in[off + i % 4];
      }
      const auto opcode = static_cast<unsigned char>(in[0]) & 0x0F;
      in.erase(0, off + (masked ? 4 : 0) + len);
      std::string out;
      out.push_back(static_cast<char>(0x80 | opcode));
      if (len < 126) {
        out.push_back(static_cast<char>(len));
      } else {
        out.push_back(126);
        out.push_back(static_cast<char>(len >> 8));
        out.push_back(static_cast<char>(len & 0xFF));
      }
      out += payload;
      co_await asio::async_write(s, asio::buffer(out), tok(ec));
      if (ec || opcode == 8) co_return;  // close frame echoed: done
    }
    auto n = co_await s.async_read_some(asio::buffer(tmp), tok(ec));
    if (ec) co_return;
    in.append(tmp, n);
  }
}

awaitable<void> tcpEcho(tcp::socket s) {
  char tmp[16384];
  for (;;) {
    error_code ec;
    auto n = co_await s.async_read_some(asio::buffer(tmp), tok(ec));
    if (n > 0) co_await asio::async_write(s, asio::buffer(tmp, n), tok(ec));
    if (ec) {
      s.shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
  }
}

awaitable<void> serve(tcp::socket s) {
  std::string buf;
  char tmp[16384];
  const std::string fixedBody = opt.bodyBytes ? std::string(opt.bodyBytes, 'x') : opt.name + "\n";
  h1::Limits limits;
  for (;;) {
    h1::Head req;
    h1::ParseResult pr;
    error_code ec;
    while ((pr = h1::parseRequest(buf, limits, req)).state == h1::Parse::incomplete) {
      std::optional<asio::steady_timer> idle;
      if (opt.idleCloseMs > 0 && buf.empty()) {
        idle.emplace(s.get_executor(), std::chrono::milliseconds(opt.idleCloseMs));
        idle->async_wait([&s](error_code e) {
          if (!e) s.close();
        });
      }
      auto n = co_await s.async_read_some(asio::buffer(tmp), tok(ec));
      if (idle) idle->cancel();
      if (ec) co_return;
      buf.append(tmp, n);
    }
    if (pr.state == h1::Parse::error) {
      auto r = h1::simpleResponse(pr.status, pr.reason, false);
      co_await asio::async_write(s, asio::buffer(r), tok(ec));
      co_return;
    }
    // Copy what we need out of the head before the buffer moves.
    const std::string method(req.method), path(req.path);
    std::string seen;
    for (const char* f : {"x-request-id", "x-forwarded-client-cert", "traceparent", "x-b3-traceid"}) {
      if (auto v = req.find(f)) seen += "x-seen-" + std::string(f) + ": " + std::string(*v) + "\r\n";
    }
    // What routing changed on the way (rewrites, header edits).
    seen += "x-seen-path: " + path + "\r\nx-seen-host: " + std::string(req.host) + "\r\n";
    for (const auto& h : req.headers) {
      if (mesh::http::iequals(h.name.substr(0, std::min<std::size_t>(h.name.size(), 8)), "x-route-"))
        seen += "x-seen-" + std::string(h.name) + ": " + std::string(h.value) + "\r\n";
    }
    int delayHeader = -1;  // x-delay-ms: a delay for any path (a slow /status/503, say)
    if (auto v = req.find("x-delay-ms")) delayHeader = std::atoi(std::string(*v).c_str());
    std::string wsKey;
    if (req.upgrade) {
      if (auto v = req.find("sec-websocket-key")) wsKey = *v;
    }
    const bool keep = req.keepAlive;
    const auto framing = req.framing;
    const auto length = req.contentLength;
    buf.erase(0, req.headBytes);
    // Body.
    std::string body;
    if (framing == h1::Framing::length) {
      while (buf.size() < length) {
        auto n = co_await s.async_read_some(asio::buffer(tmp), tok(ec));
        if (ec) co_return;
        buf.append(tmp, n);
      }
      body = buf.substr(0, length);
      buf.erase(0, length);
    } else if (framing == h1::Framing::chunked) {
      h1::ChunkedScanner sc;
      for (;;) {
        auto st = sc.feed(buf);
        if (st.error) co_return;
        body += buf.substr(0, st.used);
        buf.erase(0, st.used);
        if (st.done) break;
        auto n = co_await s.async_read_some(asio::buffer(tmp), tok(ec));
        if (ec) co_return;
        buf.append(tmp, n);
      }
    }
    if (!wsKey.empty()) {
      std::string r =
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
          wsAccept(wsKey) + "\r\nx-upstream: " + opt.name + "\r\n\r\n";
      co_await asio::async_write(s, asio::buffer(r), tok(ec));
      if (!ec) co_await websocket(s, std::move(buf));
      co_return;
    }
    int status = 200;
    if (path.starts_with("/status/")) status = std::atoi(path.c_str() + 8);
    if (path.starts_with("/__fail/")) {
      failStatus = std::atoi(path.c_str() + 8);
    } else if (path.starts_with("/__failevery/")) {
      failEvery = std::atoi(path.c_str() + 13);
      failCount = 0;
    } else if (failStatus) {
      status = failStatus;
    } else if (failEvery > 0 && ++failCount % failEvery == 0) {
      status = 500;
    }
    // Requests for each target so far (retries show here); /flaky/N fails its first N with 503.
    const int seenBefore = seenCount[path]++;
    if (path.starts_with("/flaky/") && seenBefore < std::atoi(path.c_str() + 7)) status = 503;
    seen += "x-upstream-seen: " + std::to_string(seenBefore + 1) + "\r\n";
    int delay = opt.delayMs;
    if (path.starts_with("/delay/")) delay = std::atoi(path.c_str() + 7);
    if (delayHeader >= 0) delay = delayHeader;
    if (delay > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(delay));
      co_await t.async_wait(tok(ec));
    }
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + std::string(mesh::http::reasonPhrase(status)) +
                       "\r\nx-upstream: " + opt.name + "\r\ncontent-type: text/plain\r\n" + seen;
    if (!keep) head += "Connection: close\r\n";
    std::string out;
    if (path == "/chunked") {
      out = head + "Transfer-Encoding: chunked\r\n\r\n" + "5\r\nhello\r\n7\r\n, world\r\n0\r\ngrpc-status: 0\r\n\r\n";
    } else if (method == "POST" || method == "PUT") {
      if (framing == h1::Framing::chunked)
        out = head + "Transfer-Encoding: chunked\r\n\r\n" + body;
      else
        out = head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    } else if (status == 204 || status == 304 || status < 200) {
      out = head + "\r\n";
    } else if (method == "HEAD") {
      out = head + "Content-Length: " + std::to_string(fixedBody.size()) + "\r\n\r\n";
    } else {
      out = head + "Content-Length: " + std::to_string(fixedBody.size()) + "\r\n\r\n" + fixedBody;
    }
    co_await asio::async_write(s, asio::buffer(out), tok(ec));
    if (ec || !keep) co_return;
  }
}

awaitable<void> acceptLoop(tcp::acceptor& acc) {
  for (;;) {
    error_code ec;
    auto s = co_await acc.async_accept(tok(ec));
    if (ec) co_return;
    s.set_option(tcp::no_delay(true), ec);
    auto ex = s.get_executor();
    if (opt.tcpEcho)
      asio::co_spawn(ex, tcpEcho(std::move(s)), asio::detached);
    else
      asio::co_spawn(ex, serve(std::move(s)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mesh_test_upstream: an HTTP/1.1 (or TCP echo) upstream for proxy tests"};
  std::string listen = "127.0.0.1:0";
  app.add_option("--listen", listen, "ADDR:PORT");
  app.add_option("--name", opt.name, "Name answered in bodies and x-upstream");
  app.add_option("--body-bytes", opt.bodyBytes, "GET bodies of this many bytes instead of the name");
  app.add_option("--delay-ms", opt.delayMs, "Answer every request after this many milliseconds");
  app.add_option("--idle-close-ms", opt.idleCloseMs, "Close keep-alive connections idle this long");
  app.add_flag("--tcp", opt.tcpEcho, "TCP echo instead of HTTP");
  CLI11_PARSE(app, argc, argv);
  auto at = mesh::parseHostPort(listen, {.allowPortZero = true});
  if (!at) {
    std::cerr << "mesh_test_upstream: --listen: " << at.error().message() << "\n";
    return 2;
  }
  asio::io_context io(1);
  error_code ec;
  tcp::endpoint ep(asio::ip::make_address(at->host), at->port);
  tcp::acceptor acc(io);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(4096, ec);
  if (ec) {
    std::cerr << "mesh_test_upstream: cannot listen on " << listen << ": " << ec.message() << "\n";
    return 1;
  }
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](error_code, int) { io.stop(); });
  asio::co_spawn(io, acceptLoop(acc), asio::detached);
  std::printf("ready %s:%u\n", at->host.c_str(), acc.local_endpoint().port());
  std::fflush(stdout);
  io.run();
  return 0;
}
