#pragma once
// HTTP/2 for the data plane (issue 7): one nghttp2 session per connection, without I/O. The
// proxy feeds it the bytes it reads and writes what it drains; the session tells its owner what
// arrived (heads, data, trailers, ends, resets) through a Handler. Pure: tested and fuzzed
// without sockets.
//
// Flow control is end to end: received DATA is acknowledged (WINDOW_UPDATE) only when the owner
// says it was consumed, that is when the next hop took it, so a slow reader holds back a fast
// writer instead of filling the proxy's memory. Bytes queued for sending are counted per stream
// and reported back (onSent) as they leave in frames.
//
// nghttp2 refuses malformed messages by itself (RFC 9113 section 8.1.1: connection-specific
// fields such as transfer-encoding, content-length that disagrees with the DATA, bad pseudo
// fields, field values with CR, LF or NUL): such a stream is reset, never relayed, which is the
// HTTP/2 side of the smuggling defences. Heads beyond the field limits are reported as too large
// so that the proxy can answer 431.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::proxy::h2 {

struct Field {
  std::string name, value;  // names in lower case (HTTP/2 requires it)
};

// A request or a response head: pseudo fields apart, then the regular fields in order.
struct Head {
  std::string method, scheme, authority, path;  // requests
  std::string protocol;                         // extended CONNECT's :protocol (RFC 8441), e.g. websocket
  int status = 0;                               // responses
  std::vector<Field> fields;
  bool tooLarge = false;  // received: over the field limits (the fields are incomplete)
  std::size_t bytes = 0;  // received: names and values, as counted for the limit
  const std::string* find(std::string_view name) const;
};

// The standard error codes this proxy uses (RFC 9113 section 7).
enum ErrorCode : std::uint32_t {
  kNoError = 0x0,
  kInternalError = 0x2,
  kRefusedStream = 0x7,
  kCancel = 0x8,
  kEnhanceYourCalm = 0xb,
};

class Handler {
 public:
  virtual ~Handler() = default;
  // A request (server) or a response (client) head, interim 1xx responses included.
  // endStream: no body follows.
  virtual void onHead(std::int32_t stream, Head&& head, bool endStream) = 0;
  // Body bytes; valid during the call. Call Session::consumed() once they are handed on.
  virtual void onData(std::int32_t stream, std::string_view data) = 0;
  // Trailers end the stream.
  virtual void onTrailers(std::int32_t stream, std::vector<Field>&& trailers) = 0;
  // END_STREAM received (after the head, the data or the trailers).
  virtual void onEnd(std::int32_t stream) = 0;
  // The stream is gone: closed both ways (error 0) or reset (the code).
  virtual void onClose(std::int32_t stream, std::uint32_t error) = 0;
  // `bytes` of what send() queued on the stream left in DATA frames.
  virtual void onSent(std::int32_t /*stream*/, std::size_t /*bytes*/) {}
};

struct Settings {
  std::uint32_t maxConcurrentStreams = 256;  // what we accept (a server's limit to clients)
  std::uint32_t initialWindow = 1 << 20;     // per stream, what a peer may send us unacknowledged
  std::uint32_t connectionWindow = 4 << 20;  // for the whole connection
  std::size_t maxHeadBytes = 32 * 1024;      // names and values of one head (else tooLarge)
  std::size_t maxFields = 100;
  // Server: SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): clients may open WebSockets over HTTP/2.
  bool enableConnectProtocol = false;
};

class Session {
 public:
  enum class Role { server, client };
  // The client's connection preface and SETTINGS, or the server's SETTINGS, are queued at once.
  static Result<std::unique_ptr<Session>> make(Role role, Handler& handler, const Settings& settings = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Bytes read from the peer. An error is fatal to the connection: drain the output (a GOAWAY
  // may be queued), write it and close.
  Result<void> feed(std::string_view bytes);
  // Appends what is ready to be written (frames, up to about `max` bytes) to out.
  void drain(std::string& out, std::size_t max = 256 * 1024);
  // False once both sides are done with the connection (after GOAWAY and no streams left, or a
  // fatal error).
  bool alive() const;

  // Client: opens a stream; its id, or an error (no stream ids left, the peer sent GOAWAY).
  // The head's connection-specific fields are left out, and so are those `extra` names (names
  // in lower case), which are sent after them instead: a relayed head goes on without a copy.
  using Extra = std::vector<std::pair<std::string_view, std::string_view>>;
  Result<std::int32_t> request(const Head& head, bool endStream, const Extra& extra = {});
  // Server: a response head (1xx interim ones too, with endStream false). Here and in
  // trailers() the fields are sent less the connection-specific ones.
  Result<void> respond(std::int32_t stream, const Head& head, bool endStream);
  // Queues body bytes (copied); sent as the peer's windows allow. end: END_STREAM after them.
  void send(std::int32_t stream, std::string_view data, bool end);
  // Queues trailers after what send() queued; they end the stream.
  void trailers(std::int32_t stream, const std::vector<Field>& fields);
  void reset(std::int32_t stream, std::uint32_t error);
  // `bytes` of onData() were handed on: the peer may send that much more.
  void consumed(std::int32_t stream, std::size_t bytes);
  // Queued for the stream and not yet framed.
  std::size_t queued(std::int32_t stream) const;
  // Graceful: no new streams (the peer may retry those above the last id elsewhere); open ones
  // finish.
  void goAway(std::uint32_t error = kNoError);
  std::size_t openStreams() const;
  // Client: whether the peer still accepts new streams (no GOAWAY received).
  bool acceptsStreams() const;

 private:
  Session() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The client connection preface (RFC 9113 section 3.4): what an h2c client sends first.
inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Fields of HTTP/1.1 that have no place in HTTP/2 (RFC 9113 section 8.2.2) and are dropped
// when converting: connection, keep-alive, proxy-connection, transfer-encoding, upgrade, and TE
// unless "trailers".
bool connectionSpecific(std::string_view lowerName, std::string_view value);

}  // namespace mesh::proxy::h2
