#include "node/admin/server.h"

#include <chrono>
#include <exception>
#include <optional>
#include <set>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/asio.h"
#include "common/http/request_parser.h"
#include "common/log.h"
#include "common/metrics.h"

namespace mesh::admin {

namespace asio = boost::asio;
using asio::ip::tcp;

http::Response errorResponse(int status, const std::string& message) {
  return http::Response::json(status, nlohmann::json{{"error", message}}.dump() + "\n");
}

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  struct Route {
    std::string method;
    std::string path;
    bool prefix;
    Handler handler;
    AsyncHandler async;
  };
  // An answer an async handler has not given yet; the timer wakes the connection when it comes
  // (or when the server stops).
  struct Waiting {
    explicit Waiting(asio::io_context& io) : wake(io, asio::steady_timer::time_point::max()) {}
    std::optional<http::Response> response;
    asio::steady_timer wake;
  };
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io), timer(io) {}
    tcp::socket socket;
    asio::steady_timer timer;
    std::shared_ptr<Waiting> waiting;
  };

  Impl(asio::io_context& io, metrics::Registry& reg, ServerOptions opts)
      : io(io),
        registry(reg),
        options(opts),
        acceptor(io),
        log(log::get("admin")),
        connections(reg.gauge("mesh_admin_connections", "Open admin API connections.")),
        rejected(reg.counter("mesh_admin_connections_rejected_total",
                             "Admin API connections closed at once: over the connection cap.")),
        duration(reg.histogram("mesh_admin_request_duration_seconds",
                               "Time to handle an admin API request.", metrics::latencyBuckets())) {}

  asio::io_context& io;
  metrics::Registry& registry;
  ServerOptions options;
  tcp::acceptor acceptor;
  std::shared_ptr<spdlog::logger> log;
  log::Throttle acceptWarn;  // EMFILE repeats every 100 ms while it lasts
  metrics::Gauge& connections;
  metrics::Counter& rejected;
  metrics::Histogram& duration;
  std::vector<Route> routes;
  std::set<std::shared_ptr<Conn>> open;
  bool stopped = false;

  // The route name that labels metrics: the registered pattern, never the raw path, so that
  // a scanner probing random URLs cannot create unbounded series.
  // Sync routes answer at once; an async route answers through `waiting` (nullptr: only the
  // test entry point, which needs the answer before it returns).
  http::Response dispatch(const http::Request& req, std::string& routeName,
                          const std::shared_ptr<Waiting>& waiting = nullptr) {
    const std::string_view path = req.path();
    const std::string_view method = req.method == "HEAD" ? std::string_view("GET") : req.method;
    std::string allowed;
    for (const Route& r : routes) {
      bool match = r.prefix ? path.starts_with(r.path) : path == r.path;
      if (!match) continue;
      if (r.method == method) {
        routeName = r.prefix ? r.path + "*" : r.path;
        try {
          if (r.async) {
            auto slot = waiting ? waiting : std::make_shared<Waiting>(io);
            r.async(req, [slot](http::Response resp) {
              if (slot->response) return;
              slot->response = std::move(resp);
              slot->wake.cancel();
            });
            if (slot->response) return std::move(*slot->response);
            if (!waiting) return errorResponse(500, "asynchronous handler did not answer");
            return http::Response{0, {}, {}};  // pending: the connection waits for it
          }
          return r.handler(req);
        } catch (const std::exception& e) {
          // A handler bug must not take the node down: report it and answer 500.
          log->error("admin handler failed route={} error={}", routeName, e.what());
          return errorResponse(500, "internal error");
        }
      }
      if (!allowed.empty()) allowed += ", ";
      allowed += r.method;
    }
    if (!allowed.empty()) {
      routeName = "method_not_allowed";
      auto resp = errorResponse(405, "method " + req.method + " not allowed on " + std::string(path));
      resp.headers.emplace_back("Allow", allowed);
      return resp;
    }
    routeName = "not_found";
    return errorResponse(404, "no such endpoint: " + std::string(path));
  }

  void count(const std::string& route, int status) {
    registry
        .counter("mesh_admin_requests_total", "Admin API requests by route and status code.",
                 {{"route", route}, {"code", std::to_string(status)}})
        .inc();
  }

  void armTimer(const std::shared_ptr<Conn>& c) {
    c->timer.expires_after(options.idleTimeout);
    c->timer.async_wait([weak = std::weak_ptr<Conn>(c)](boost::system::error_code ec) {
      if (ec) return;  // cancelled: the connection did something in time
      if (auto conn = weak.lock()) {
        boost::system::error_code ignored;
        conn->socket.close(ignored);
      }
    });
  }

  asio::awaitable<void> serve(std::shared_ptr<Conn> c) {
    auto self = shared_from_this();
    std::string buf;
    std::vector<char> chunk(16 * 1024);
    http::RequestLimits limits{options.maxHeaderBytes, options.maxBodyBytes};
    boost::system::error_code ec;
    for (;;) {
      http::ParsedRequest parsed = http::parseRequest(buf, limits);
      while (parsed.state == http::ParsedRequest::State::incomplete) {
        armTimer(c);
        std::size_t n = co_await c->socket.async_read_some(
            asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
        c->timer.cancel();
        if (ec || stopped) co_return;
        buf.append(chunk.data(), n);
        parsed = http::parseRequest(buf, limits);
      }
      http::Response resp;
      bool keep = false;
      bool head = false;
      std::string route;
      auto started = std::chrono::steady_clock::now();
      if (parsed.state == http::ParsedRequest::State::error) {
        resp = errorResponse(parsed.errorStatus, std::string(parsed.errorReason));
        route = "bad_request";
      } else {
        head = parsed.request.method == "HEAD";
        keep = http::keepAlive(parsed.request);
        c->waiting = std::make_shared<Waiting>(io);
        resp = dispatch(parsed.request, route, c->waiting);
        if (resp.status == 0) {
          while (!c->waiting->response && !stopped) {
            co_await c->waiting->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          }
          if (!c->waiting->response) co_return;  // stopping
          resp = std::move(*c->waiting->response);
        }
        c->waiting.reset();
        buf.erase(0, parsed.consumed);
      }
      duration.observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      count(route, resp.status);
      std::string wire = serialize(resp, head, keep);
      armTimer(c);
      co_await asio::async_write(c->socket, asio::buffer(wire),
                                 asio::redirect_error(asio::use_awaitable, ec));
      c->timer.cancel();
      if (ec || !keep || stopped) {
        boost::system::error_code ignored;
        c->socket.shutdown(tcp::socket::shutdown_both, ignored);
        co_return;
      }
    }
  }

  asio::awaitable<void> acceptLoop() {
    auto self = shared_from_this();
    for (;;) {
      auto c = std::make_shared<Conn>(io);
      boost::system::error_code ec;
      co_await acceptor.async_accept(c->socket, asio::redirect_error(asio::use_awaitable, ec));
      if (stopped || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // EMFILE and friends: log, back off briefly, keep serving the connections we have.
        std::uint64_t skipped = 0;
        if (acceptWarn.allow(std::chrono::steady_clock::now(), skipped))
          log->warn("admin accept failed error={} repeats_not_logged={}", ec.message(), skipped);
        asio::steady_timer t(io, std::chrono::milliseconds(100));
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (open.size() >= options.maxConnections) {
        rejected.inc();
        boost::system::error_code ignored;
        c->socket.close(ignored);
        continue;
      }
      open.insert(c);
      connections.set(static_cast<double>(open.size()));
      asio::co_spawn(
          io,
          [self, c]() -> asio::awaitable<void> {
            co_await self->serve(c);
            self->open.erase(c);
            self->connections.set(static_cast<double>(self->open.size()));
          },
          asio::detached);
    }
  }
};

Server::Server(asio::io_context& io, metrics::Registry& registry, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, registry, options)) {}

Server::~Server() { stop(); }

void Server::route(const std::string& method, const std::string& path, Handler handler) {
  impl_->routes.push_back({method, path, false, std::move(handler), nullptr});
}

void Server::routePrefix(const std::string& method, const std::string& prefix, Handler handler) {
  impl_->routes.push_back({method, prefix, true, std::move(handler), nullptr});
}

void Server::routeAsync(const std::string& method, const std::string& path, AsyncHandler handler) {
  impl_->routes.push_back({method, path, false, nullptr, std::move(handler)});
}

void Server::routePrefixAsync(const std::string& method, const std::string& prefix, AsyncHandler handler) {
  impl_->routes.push_back({method, prefix, true, nullptr, std::move(handler)});
}

Result<HostPort> Server::listen(const HostPort& address) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address.host, ec);
  if (ec) return Error(errc::invalid_argument, "admin address " + address.toString() + ": " + ec.message());
  tcp::endpoint ep(ip, address.port);
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acc.close();
    return Error(errc::unavailable, "admin address " + address.toString() + ": cannot listen: " + ec.message());
  }
  auto bound = acc.local_endpoint(ec);
  asio::co_spawn(impl_->io, impl_->acceptLoop(), asio::detached);
  HostPort out = address;
  out.port = bound.port();
  return out;
}

void Server::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  for (const auto& c : impl_->open) {
    c->timer.cancel();
    if (c->waiting) c->waiting->wake.cancel();
    c->socket.close(ignored);
  }
}

std::size_t Server::openConnections() const { return impl_->open.size(); }

http::Response Server::dispatch(const http::Request& request) {
  std::string route;
  return impl_->dispatch(request, route);
}

std::string Server::serialize(const http::Response& resp, bool headRequest, bool keepAlive) {
  std::string out;
  out.reserve(128 + resp.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(resp.status);
  out += ' ';
  out += http::reasonPhrase(resp.status);
  out += "\r\n";
  for (const auto& [k, v] : resp.headers) {
    out += k;
    out += ": ";
    out += v;
    out += "\r\n";
  }
  out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
  out += keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  if (!headRequest) out += resp.body;
  return out;
}

}  // namespace mesh::admin
