#pragma once
// Incremental HTTP/1.1 request parsing for servers, over picohttpparser. Pure: it only looks at
// the bytes received so far, so it is tested and fuzzed without sockets.

#include <cstddef>
#include <string_view>

#include "common/http/message.h"

namespace mesh::http {

struct RequestLimits {
  std::size_t maxHeaderBytes = 16 * 1024;
  std::size_t maxBodyBytes = 1024 * 1024;
  std::size_t maxHeaders = 64;
};

struct ParsedRequest {
  enum class State { incomplete, complete, error };
  State state = State::incomplete;
  std::size_t consumed = 0;  // bytes of the input this request used (when complete)
  Request request;
  int errorStatus = 0;       // when error: 400, 413, 431, 501 or 505
  std::string_view errorReason;
};

// Request smuggling defences (RFC 9112 section 6.3): a request with both Content-Length and
// Transfer-Encoding, several differing Content-Length values, or a Transfer-Encoding other than
// "chunked" is refused, never guessed at.
ParsedRequest parseRequest(std::string_view input, const RequestLimits& limits);

// Whether the connection stays open after this request (HTTP/1.1 default yes, 1.0 default no).
bool keepAlive(const Request& request);

}  // namespace mesh::http
