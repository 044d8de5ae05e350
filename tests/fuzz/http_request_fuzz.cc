// libFuzzer target: the admin server's HTTP/1.1 request parser, fed arbitrary bytes as they
// might arrive in pieces. Checks invariants, not just "no crash": a complete request never
// claims more bytes than it was given, and an error always carries a 4xx/5xx status.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/http/client.h"
#include "common/http/request_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mesh::http;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  RequestLimits limits{.maxHeaderBytes = 4096, .maxBodyBytes = 8192, .maxHeaders = 32};
  // Walk the input as a pipelined stream, as the server does.
  std::string_view rest = in;
  for (int i = 0; i < 64 && !rest.empty(); ++i) {
    ParsedRequest p = parseRequest(rest, limits);
    if (p.state == ParsedRequest::State::error) {
      if (p.errorStatus < 400 || p.errorStatus > 599) std::abort();
      break;
    }
    if (p.state == ParsedRequest::State::incomplete) break;
    if (p.consumed == 0 || p.consumed > rest.size()) std::abort();
    if (p.request.body.size() > limits.maxBodyBytes) std::abort();
    (void)keepAlive(p.request);
    (void)p.request.queryParam("a");
    rest.remove_prefix(p.consumed);
  }
  // The client's response parser sees hostile bytes too (a node may be impersonated).
  for (bool closed : {false, true}) {
    auto r = parseResponse(in, closed, 16384);
    if (r.ok() && r->complete && r->response.body.size() > 16384) std::abort();
  }
  return 0;
}
