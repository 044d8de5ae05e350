// mesh_test_load: keep-alive HTTP/1.1 load for the proxy's integration tests. C connections
// each send requests one after another (a new connection when the server closes one) until
// --requests are done or --duration is over, then one JSON line:
//   {"requests": N, "status": {"200": n, ...}, "errors": {"connect": n, "reset": n, ...},
//    "upstreams": {"<x-upstream>": n, ...}, "latency_us": {"p50": .., "p99": .., "max": ..}}
// An error is any request that got no complete response.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/asio.h"
#include "common/net_address.h"
#include "node/proxy/http1.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
namespace h1 = mesh::proxy::h1;

namespace {

struct Shared {
  tcp::endpoint target;
  std::string request;
  std::uint64_t limit = 0, started = 0;
  Clock::time_point until;
  std::map<int, std::uint64_t> status;
  std::map<std::string, std::uint64_t> errors, upstreams;
  std::vector<std::uint32_t> latencies;
  bool more() {
    if (limit && started >= limit) return false;
    return Clock::now() < until;
  }
};

auto tok(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

awaitable<void> client(Shared& sh) {
  auto ex = co_await asio::this_coro::executor;
  std::string buf;
  char tmp[16384];
  std::optional<tcp::socket> s;
  while (sh.more()) {
    error_code ec;
    if (!s) {
      s.emplace(ex);
      co_await s->async_connect(sh.target, tok(ec));
      if (ec) {
        ++sh.errors["connect"];
        s.reset();
        asio::steady_timer t(ex, std::chrono::milliseconds(10));
        co_await t.async_wait(tok(ec));
        continue;
      }
      s->set_option(tcp::no_delay(true), ec);
      buf.clear();
    }
    ++sh.started;
    auto t0 = Clock::now();
    co_await asio::async_write(*s, asio::buffer(sh.request), tok(ec));
    if (ec) {
      ++sh.errors["write"];
      s.reset();
      continue;
    }
    h1::Head resp;
    h1::ParseResult pr;
    bool failed = false;
    while ((pr = h1::parseResponse(buf, {}, "GET", resp)).state == h1::Parse::incomplete) {
      auto n = co_await s->async_read_some(asio::buffer(tmp), tok(ec));
      if (ec) {
        ++sh.errors[buf.empty() ? "reset_before_response" : "reset_in_head"];
        failed = true;
        break;
      }
      buf.append(tmp, n);
    }
    if (failed) {
      s.reset();
      continue;
    }
    if (pr.state == h1::Parse::error) {
      ++sh.errors["bad_response"];
      s.reset();
      continue;
    }
    const int status = resp.status;
    std::string upstream;
    if (auto v = resp.find("x-upstream")) upstream = *v;
    const bool keep = resp.keepAlive;
    const auto framing = resp.framing;
    const auto length = resp.contentLength;
    buf.erase(0, resp.headBytes);
    if (framing == h1::Framing::length) {
      while (buf.size() < length && !failed) {
        auto n = co_await s->async_read_some(asio::buffer(tmp), tok(ec));
        if (ec)
          failed = true;
        else
          buf.append(tmp, n);
      }
      if (!failed) buf.erase(0, length);
    } else if (framing == h1::Framing::chunked) {
      h1::ChunkedScanner sc;
      for (;;) {
        auto st = sc.feed(buf);
        buf.erase(0, st.used);
        if (st.error) failed = true;
        if (st.done || failed) break;
        auto n = co_await s->async_read_some(asio::buffer(tmp), tok(ec));
        if (ec) {
          failed = true;
          break;
        }
        buf.append(tmp, n);
      }
    } else if (framing == h1::Framing::untilClose) {
      for (;;) {
        co_await s->async_read_some(asio::buffer(tmp), tok(ec));
        if (ec) break;
      }
    }
    if (failed) {
      ++sh.errors["reset_in_body"];
      s.reset();
      continue;
    }
    ++sh.status[status];
    if (!upstream.empty()) ++sh.upstreams[upstream];
    sh.latencies.push_back(
        static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
    if (!keep) s.reset();
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mesh_test_load: keep-alive HTTP/1.1 load, results as JSON"};
  std::string target, host = "localhost", path = "/";
  int connections = 1;
  double seconds = 0;
  std::uint64_t requests = 0;
  std::vector<std::string> headers;
  app.add_option("--target", target, "ADDR:PORT")->required();
  app.add_option("--host", host, "Host header");
  app.add_option("--path", path, "Request target");
  app.add_option("--connections", connections, "Concurrent connections");
  app.add_option("--duration", seconds, "Seconds to run (with --requests: whichever ends first)");
  app.add_option("--requests", requests, "Requests in all");
  app.add_option("--header", headers, "NAME: VALUE (repeatable)");
  CLI11_PARSE(app, argc, argv);
  auto at = mesh::parseHostPort(target);
  if (!at) {
    std::cerr << "mesh_test_load: --target: " << at.error().message() << "\n";
    return 2;
  }
  Shared sh;
  sh.target = tcp::endpoint(asio::ip::make_address(at->host), at->port);
  sh.request = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  for (const auto& h : headers) sh.request += h + "\r\n";
  sh.request += "\r\n";
  sh.limit = requests;
  sh.until =
      Clock::now() + (seconds > 0 ? std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))
                                  : std::chrono::hours(1));
  asio::io_context io(1);
  for (int i = 0; i < connections; ++i) asio::co_spawn(io, client(sh), asio::detached);
  io.run();
  std::sort(sh.latencies.begin(), sh.latencies.end());
  auto pct = [&](double p) -> std::uint32_t {
    if (sh.latencies.empty()) return 0;
    return sh.latencies[std::min(sh.latencies.size() - 1, static_cast<std::size_t>(p * sh.latencies.size()))];
  };
  nlohmann::json out;
  std::uint64_t done = 0;
  out["status"] = nlohmann::json::object();
  for (auto [k, v] : sh.status) {
    out["status"][std::to_string(k)] = v;
    done += v;
  }
  std::uint64_t errs = 0;
  out["errors"] = nlohmann::json::object();
  for (auto& [k, v] : sh.errors) {
    out["errors"][k] = v;
    if (k != "connect") errs += v;
  }
  out["requests"] = done + errs;
  out["upstreams"] = sh.upstreams;
  out["latency_us"] = {{"p50", pct(0.5)}, {"p99", pct(0.99)}, {"max", sh.latencies.empty() ? 0 : sh.latencies.back()}};
  std::cout << out.dump() << std::endl;
  return 0;
}
