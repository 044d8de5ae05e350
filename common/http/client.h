#pragma once
// A small blocking HTTP/1.1 client for meshcli and tests: one request per connection, with a
// deadline covering connect, send and receive. Not for the data plane.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/http/message.h"
#include "common/net_address.h"
#include "common/result.h"

namespace mesh::http {

struct ClientOptions {
  std::chrono::milliseconds timeout{5000};  // whole exchange, connect to last byte
  std::size_t maxResponseBytes = 64u << 20;  // larger responses fail with errc::too_large
  Headers headers;                           // extra request headers (a Host here replaces the default)
};

// Sends one request and reads the whole response. Errors: errc::unavailable (cannot connect),
// errc::timeout, errc::malformed (not HTTP), errc::too_large, errc::io_error.
Result<Response> request(const HostPort& to, std::string_view method, std::string_view target,
                         std::string_view body = {}, const ClientOptions& options = {});

inline Result<Response> get(const HostPort& to, std::string_view target,
                            const ClientOptions& options = {}) {
  return request(to, "GET", target, {}, options);
}

// Incremental response parsing, exposed for tests and the fuzz target. Given everything
// received so far and whether the peer has closed, returns the response once complete,
// std::nullopt while more bytes are needed, or an error (errc::malformed, errc::too_large).
struct ParsedResponse {
  bool complete = false;
  Response response;
};
Result<ParsedResponse> parseResponse(std::string_view received, bool peerClosed,
                                     std::size_t maxBytes, bool headRequest = false);

}  // namespace mesh::http
