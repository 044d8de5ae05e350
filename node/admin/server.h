#pragma once
// The admin HTTP/1.1 server (GET /healthz, /metrics, /v1/...): routes registered by the modules
// that own the data, served on the control thread's event loop. Small and strict: header and
// body size caps, idle timeout, connection cap, keep-alive and pipelining, no TLS (it listens on
// loopback by default; expose it with care).
//
// Thread rules: construct, route(), listen() and stop() on the thread that runs the io_context.
// Handlers run on that thread too, one at a time: they may read the owning module's state
// directly but must not block.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/http/message.h"
#include "common/net_address.h"
#include "common/result.h"

namespace boost::asio {
class io_context;
}

namespace mesh::metrics {
class Registry;
}

namespace mesh::admin {

using Handler = std::function<http::Response(const http::Request&)>;
// For answers that take a while (a cluster query): the handler returns at once and calls
// reply exactly once, later, on the same thread (or at once). The connection waits for it.
using Reply = std::function<void(http::Response)>;
using AsyncHandler = std::function<void(const http::Request&, Reply reply)>;

struct ServerOptions {
  std::size_t maxHeaderBytes = 16 * 1024;           // request line plus headers
  std::size_t maxBodyBytes = 1024 * 1024;           // request body
  std::chrono::milliseconds idleTimeout{30'000};    // a connection idle this long is closed
  std::size_t maxConnections = 256;                 // more are accepted and closed at once
};

class Server {
 public:
  Server(boost::asio::io_context& io, metrics::Registry& registry, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Exact path match. HEAD is answered by the GET handler, without the body.
  void route(const std::string& method, const std::string& path, Handler handler);
  // Matches every path that starts with `prefix` (e.g. "/v1/catalog/service/").
  void routePrefix(const std::string& method, const std::string& prefix, Handler handler);
  // An exact path whose handler answers later (see AsyncHandler).
  void routeAsync(const std::string& method, const std::string& path, AsyncHandler handler);
  // A prefix whose handler answers later.
  void routePrefixAsync(const std::string& method, const std::string& prefix, AsyncHandler handler);

  // Binds and starts accepting. Returns the bound address (useful with port 0).
  Result<HostPort> listen(const HostPort& address);
  // Closes the listener and every open connection. Idempotent.
  void stop();
  // Connections still open (they close shortly after stop()).
  std::size_t openConnections() const;

  // Dispatches a request to its route, as a connection would (exposed for tests; an async
  // route must have replied by the time its handler returns).
  http::Response dispatch(const http::Request& request);
  // The serialized response, as written on the wire (exposed for tests).
  static std::string serialize(const http::Response& response, bool headRequest, bool keepAlive);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// JSON error body used by every admin endpoint: {"error": "..."}.
http::Response errorResponse(int status, const std::string& message);

}  // namespace mesh::admin
