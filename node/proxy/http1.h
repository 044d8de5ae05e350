#pragma once
// HTTP/1.1 for the data plane (issue 7): heads parsed in place by picohttpparser (views into the
// connection's buffer, nothing copied), message framing decided by RFC 9112 section 6, bodies
// relayed as they come (chunked bodies are scanned for their end, not re-encoded), and the head
// written for the next hop without hop-by-hop fields. Pure: tested and fuzzed without sockets.
//
// Smuggling defences (RFC 9112 sections 6.1 and 6.3, 11.2): a request with both Content-Length
// and Transfer-Encoding, Content-Length values that differ or are not plain digits, a
// Transfer-Encoding other than "chunked" or repeated, obsolete line folding, a missing or
// repeated Host in HTTP/1.1, or bytes that are not HTTP is refused (400/501), never guessed at.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mesh::proxy::h1 {

struct Limits {
  std::size_t maxHeadBytes = 32 * 1024;  // request or status line plus fields (else 431 / 502)
  std::size_t maxHeaders = 100;          // fields in one head (else 431 / 502)
};

enum class Framing {
  none,        // no body (GET without length, HEAD responses, 1xx/204/304)
  length,      // Content-Length bytes
  chunked,     // Transfer-Encoding: chunked, up to the last chunk and trailers
  untilClose,  // responses only: everything until the upstream closes
  tunnel,      // after 101 Switching Protocols or a 2xx to CONNECT: bytes both ways
};

struct Header {
  std::string_view name, value;
};

struct Head {
  // Requests.
  std::string_view method, target;
  // Responses.
  int status = 0;
  std::string_view reason;
  int minorVersion = 1;
  std::vector<Header> headers;
  std::size_t headBytes = 0;  // bytes of the buffer the head took
  Framing framing = Framing::none;
  std::uint64_t contentLength = 0;
  bool keepAlive = true;
  bool upgrade = false;        // Connection: upgrade with an Upgrade field (WebSocket)
  std::string_view host;       // requests: Host (or the authority of an absolute target)
  std::string_view path;       // requests: target as sent on (origin form)
  bool absoluteForm = false;   // requests: "GET http://host/path": Host comes from the target
  std::string_view requestId;  // x-request-id, if present

  const std::string_view* find(std::string_view name) const;
};

enum class Parse { complete, incomplete, error };

struct ParseResult {
  Parse state = Parse::incomplete;
  int status = 0;           // error: the status to answer (400, 431, 501, 505)
  const char* reason = "";  // error: why, for the body and the log
};

// Parses a request head from the start of buf. On complete, `head` views into buf.
ParseResult parseRequest(std::string_view buf, const Limits& limits, Head& head);

// Parses a response head; `requestMethod` decides framing (HEAD, CONNECT). Errors are the
// upstream's fault: the proxy answers 502.
ParseResult parseResponse(std::string_view buf, const Limits& limits, std::string_view requestMethod, Head& head);

// Finds where a chunked body ends, without changing it. Bounded: chunk sizes of at most 16 hex
// digits, extensions and trailers of at most 32 KiB in all.
class ChunkedScanner {
 public:
  struct Step {
    std::size_t used = 0;  // bytes of the input that belong to the body
    bool done = false;     // the body's last byte was among them
    bool error = false;    // not chunked encoding
  };
  // With `data` and `trailers`, also decodes: the chunks' bytes are appended to data, and each
  // trailer field to trailers as a "name: value\n" line (for HTTP/2, which frames them itself).
  Step feed(std::string_view bytes, std::string* data = nullptr, std::string* trailers = nullptr);

 private:
  enum class State { size, extension, sizeLf, data, dataCr, dataLf, trailerStart, trailer, trailerLf, lastLf, done };
  State state_ = State::size;
  std::uint64_t remaining_ = 0;
  int digits_ = 0;
  std::size_t overhead_ = 0;  // extension and trailer bytes so far
};

// The fields of trailer lines as ChunkedScanner decodes them; lines that are not fields are skipped.
std::vector<std::pair<std::string_view, std::string_view>> trailerFields(std::string_view lines);

// Field edits beyond replacing (a route's header operations): names whose fields are left out,
// and fields appended beside any of the same name.
struct FieldEdits {
  std::vector<std::string_view> remove;  // matched ASCII case-insensitively
  std::vector<Header> add;
  bool empty() const { return remove.empty() && add.empty(); }
  bool removes(std::string_view name) const;
};

// Appends the head to send on: request line (always HTTP/1.1) or status line, Host from the
// target when it came in absolute form (RFC 9112 section 3.2.2), the fields less the hop-by-hop ones (Connection,
// Keep-Alive, Proxy-Connection, TE, Upgrade unless upgrading, and those Connection names) and less those `edits`
// removes or `extra` gives again, then `extra` fields and `edits`' added ones, then Connection: close when
// !keepAlive (or "upgrade" when upgrading).
void writeRequest(const Head& head, std::string_view target, const std::vector<Header>& extra, bool keepAlive,
                  std::string& out, const FieldEdits* edits = nullptr);
void writeResponse(const Head& head, const std::vector<Header>& extra, bool keepAlive, std::string& out,
                   const FieldEdits* edits = nullptr);

// A complete response the proxy makes itself (errors): text body, Content-Length, and
// Connection: close unless keepAlive.
std::string simpleResponse(int status, std::string_view body, bool keepAlive, const std::vector<Header>& extra = {});

}  // namespace mesh::proxy::h1
