#include "common/http/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/http/picohttpparser.h"

namespace mesh::http {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr std::size_t kMaxHeaders = 100;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int remainingMs(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits until fd is ready for `events`; errc::timeout when the deadline passes first.
Result<void> waitFor(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int ms = remainingMs(deadline);
    if (ms == 0) return Error(errc::timeout, "timed out");
    int r = ::poll(&p, 1, ms);
    if (r > 0) return {};
    if (r == 0) return Error(errc::timeout, "timed out");
    if (errno != EINTR) return Error(errc::io_error, std::strerror(errno));
  }
}

Result<int> connectTo(const HostPort& to, SteadyClock::time_point deadline) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = to.isIpLiteral ? AI_NUMERICHOST : 0;
  addrinfo* res = nullptr;
  std::string port = std::to_string(to.port);
  int gai = ::getaddrinfo(to.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    return Error(errc::unavailable, "cannot resolve " + to.host + ": " + gai_strerror(gai));
  }
  std::string lastError = "no address";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      lastError = std::strerror(errno);
      continue;
    }
    int r = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      auto w = waitFor(fd, POLLOUT, deadline);
      if (!w) {
        ::close(fd);
        ::freeaddrinfo(res);
        return Error(w.error().code, "connect to " + to.toString() + ": " + w.error().message());
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      r = err == 0 ? 0 : -1;
      errno = err;
    }
    if (r == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    lastError = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return Error(errc::unavailable, "connect to " + to.toString() + ": " + lastError);
}

Result<std::size_t> parseContentLength(std::string_view v) {
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) {
    return Error(errc::malformed, "bad Content-Length");
  }
  return n;
}

}  // namespace

Result<ParsedResponse> parseResponse(std::string_view received, bool peerClosed,
                                     std::size_t maxBytes, bool headRequest) {
  if (received.size() > maxBytes) return Error(errc::too_large, "response too large");
  int minor = 0, status = 0;
  const char* msg = nullptr;
  std::size_t msgLen = 0;
  phr_header hdrs[kMaxHeaders];
  std::size_t numHeaders = kMaxHeaders;
  int n = phr_parse_response(received.data(), received.size(), &minor, &status, &msg, &msgLen,
                             hdrs, &numHeaders, 0);
  if (n == -1) return Error(errc::malformed, "malformed HTTP response");
  if (n == -2) {
    if (peerClosed) return Error(errc::malformed, "connection closed before the response headers");
    return ParsedResponse{};
  }
  ParsedResponse out;
  out.response.status = status;
  for (std::size_t i = 0; i < numHeaders; ++i) {
    out.response.headers.emplace_back(std::string(hdrs[i].name, hdrs[i].name_len),
                                      std::string(hdrs[i].value, hdrs[i].value_len));
  }
  std::string_view body = received.substr(static_cast<std::size_t>(n));
  const Headers& h = out.response.headers;
  bool noBody = headRequest || status == 204 || status == 304 || (status >= 100 && status < 200);
  auto te = findHeader(h, "Transfer-Encoding");
  auto cl = findHeader(h, "Content-Length");
  if (noBody) {
    out.complete = true;
  } else if (te && iequals(*te, "chunked")) {
    // phr_decode_chunked decodes in place; work on a copy so that a partial decode can be
    // retried from the start with more data.
    std::string copy(body);
    phr_chunked_decoder dec{};
    dec.consume_trailer = 1;
    std::size_t size = copy.size();
    ssize_t r = phr_decode_chunked(&dec, copy.data(), &size);
    if (r == -1) return Error(errc::malformed, "malformed chunked body");
    if (r == -2) {
      if (peerClosed) return Error(errc::malformed, "connection closed inside a chunked body");
      return ParsedResponse{};
    }
    copy.resize(size);
    out.response.body = std::move(copy);
    out.complete = true;
  } else if (te) {
    return Error(errc::malformed, "unsupported Transfer-Encoding");
  } else if (cl) {
    auto len = parseContentLength(*cl);
    if (!len) return len.error();
    if (*len > maxBytes) return Error(errc::too_large, "response too large");
    if (body.size() < *len) {
      if (peerClosed) return Error(errc::malformed, "connection closed inside the body");
      return ParsedResponse{};
    }
    out.response.body = std::string(body.substr(0, *len));
    out.complete = true;
  } else {
    // No length: the body runs to the end of the connection (RFC 9112 section 6.3).
    if (!peerClosed) return ParsedResponse{};
    out.response.body = std::string(body);
    out.complete = true;
  }
  return out;
}

Result<Response> request(const HostPort& to, std::string_view method, std::string_view target,
                         std::string_view body, const ClientOptions& options) {
  const auto deadline = SteadyClock::now() + options.timeout;
  auto fdr = connectTo(to, deadline);
  if (!fdr) return fdr.error();
  Fd fd(*fdr);

  std::string req;
  req.reserve(128 + body.size());
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  // A Host among the extra headers (a proxy's clients name the service there) replaces ours.
  if (!findHeader(options.headers, "host")) req.append("Host: ").append(to.toString()).append("\r\n");
  req.append("Connection: close\r\n");
  for (const auto& [k, v] : options.headers) req.append(k).append(": ").append(v).append("\r\n");
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  req.append("\r\n").append(body);

  std::size_t sent = 0;
  while (sent < req.size()) {
    ssize_t w = ::send(fd.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<std::size_t>(w);
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      auto ok = waitFor(fd.get(), POLLOUT, deadline);
      if (!ok) return ok.error();
    } else {
      return Error(errc::io_error, std::string("send: ") + std::strerror(errno));
    }
  }

  std::string buf;
  char chunk[16384];
  bool closed = false;
  for (;;) {
    auto parsed = parseResponse(buf, closed, options.maxResponseBytes, method == "HEAD");
    if (!parsed) return parsed.error();
    if (parsed->complete) return std::move(parsed->response);
    auto ok = waitFor(fd.get(), POLLIN, deadline);
    if (!ok) return Error(ok.error().code, "waiting for the response from " + to.toString() +
                                               ": " + ok.error().message());
    ssize_t r = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (r > 0) {
      buf.append(chunk, static_cast<std::size_t>(r));
    } else if (r == 0) {
      closed = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      return Error(errc::io_error, std::string("recv: ") + std::strerror(errno));
    }
  }
}

}  // namespace mesh::http
