#include "node/proxy/http1.h"

#include <algorithm>
#include <cstring>

#include "common/http/message.h"
#include "common/http/picohttpparser.h"

namespace mesh::proxy::h1 {

namespace {

using http::iequals;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn for each comma-separated element of a field value (RFC 9110 section 5.6.1).
template <typename Fn>
void forEachElement(std::string_view v, Fn fn) {
  while (!v.empty()) {
    auto comma = v.find(',');
    auto e = trim(v.substr(0, comma));
    if (!e.empty()) fn(e);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

// Content-Length: 1*DIGIT; a list of the same value ("5, 5") is allowed, different ones are
// not (RFC 9112 section 6.3 item 5).
bool parseLength(std::string_view v, std::uint64_t& out, bool& seen) {
  bool ok = true;
  forEachElement(v, [&](std::string_view e) {
    if (e.size() > 18 || !std::all_of(e.begin(), e.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      ok = false;
      return;
    }
    std::uint64_t n = 0;
    for (char c : e) n = n * 10 + static_cast<std::uint64_t>(c - '0');
    if (seen && n != out) ok = false;
    out = n;
    seen = true;
  });
  return ok && seen;
}

// RFC 9110 section 7.6.1's hop-by-hop fields. Expect is end to end there, but the proxy answers
// 100-continue itself (the body then comes at once), so the next hop must not wait for it.
// Framing fields (Content-Length, Transfer-Encoding) pass unchanged: bodies are relayed as they came.
bool isHopByHop(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "keep-alive") || iequals(name, "proxy-connection") || iequals(name, "te") ||
         iequals(name, "expect") || iequals(name, "upgrade");
}

struct Fields {
  bool contentLength = false, transferEncoding = false, chunked = false, close = false, keepAlive = false,
       upgradeToken = false, upgradeField = false, otherUpgrade = false, badLength = false, badCoding = false,
       twoCodings = false;
  int hosts = 0;
  std::uint64_t length = 0;
};

Fields scan(Head& head) {
  Fields f;
  for (const auto& h : head.headers) {
    if (iequals(h.name, "content-length")) {
      if (!parseLength(h.value, f.length, f.contentLength)) f.badLength = true;
    } else if (iequals(h.name, "transfer-encoding")) {
      if (f.transferEncoding) f.twoCodings = true;
      f.transferEncoding = true;
      int n = 0;
      forEachElement(h.value, [&](std::string_view e) {
        ++n;
        if (iequals(e, "chunked"))
          f.chunked = true;
        else
          f.badCoding = true;
      });
      if (n != 1) f.badCoding = true;
    } else if (iequals(h.name, "connection")) {
      forEachElement(h.value, [&](std::string_view e) {
        if (iequals(e, "close"))
          f.close = true;
        else if (iequals(e, "keep-alive"))
          f.keepAlive = true;
        else if (iequals(e, "upgrade"))
          f.upgradeToken = true;
      });
    } else if (iequals(h.name, "upgrade")) {
      f.upgradeField = true;
      // Upgrade: h2c (what curl --http2 sends for http:// URLs) asks to switch the connection to
      // HTTP/2; a server may ignore it (RFC 9113 section 3.1 leaves it out altogether), and the
      // proxy does: the request is served as HTTP/1.1 (clients wanting HTTP/2 use prior knowledge).
      forEachElement(h.value, [&](std::string_view e) {
        if (!iequals(e, "h2c")) f.otherUpgrade = true;
      });
    } else if (iequals(h.name, "host")) {
      ++f.hosts;
      head.host = h.value;
    } else if (iequals(h.name, "x-request-id")) {
      head.requestId = h.value;
    }
  }
  return f;
}

ParseResult fail(int status, const char* reason) { return ParseResult{Parse::error, status, reason}; }

}  // namespace

const std::string_view* Head::find(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

ParseResult parseRequest(std::string_view buf, const Limits& limits, Head& head) {
  const char *method, *path;
  std::size_t methodLen, pathLen, n = limits.maxHeaders;
  phr_header fields[256];
  n = std::min<std::size_t>(n, std::size(fields));
  const std::size_t window = std::min(buf.size(), limits.maxHeadBytes);
  int r =
      phr_parse_request(buf.data(), window, &method, &methodLen, &path, &pathLen, &head.minorVersion, fields, &n, 0);
  if (r == -2) {
    if (buf.size() >= limits.maxHeadBytes) return fail(431, "request head larger than the limit");
    return {};
  }
  if (r < 0) {
    if (n == std::min<std::size_t>(limits.maxHeaders, std::size(fields))) return fail(431, "too many header fields");
    return fail(400, "malformed request head");
  }
  head.headBytes = static_cast<std::size_t>(r);
  head.method = {method, methodLen};
  head.target = {path, pathLen};
  head.status = 0;
  head.headers.clear();
  head.host = {};
  head.requestId = {};
  for (std::size_t i = 0; i < n; ++i) {
    // A field with no name is a continuation of the previous one (obsolete line folding).
    if (fields[i].name == nullptr) return fail(400, "obsolete line folding");
    head.headers.push_back({{fields[i].name, fields[i].name_len}, {fields[i].value, fields[i].value_len}});
  }
  if (head.minorVersion > 1) return fail(505, "HTTP version not supported");
  auto f = scan(head);
  if (f.badLength) return fail(400, "invalid or conflicting Content-Length");
  if (f.transferEncoding && f.contentLength) return fail(400, "both Content-Length and Transfer-Encoding");
  if (f.twoCodings) return fail(400, "Transfer-Encoding repeated");
  if (f.transferEncoding && head.minorVersion == 0) return fail(400, "Transfer-Encoding in HTTP/1.0");
  if (f.badCoding) return fail(501, "Transfer-Encoding other than chunked");
  // Absolute form (a client configured with the proxy as its HTTP proxy): the authority names
  // the service and wins over Host (RFC 9112 section 3.2.2).
  head.path = head.target;
  head.absoluteForm = false;
  if (head.target.size() > 7 && iequals(head.target.substr(0, 7), "http://")) {
    head.absoluteForm = true;
    auto rest = head.target.substr(7);
    auto slash = rest.find('/');
    head.host = rest.substr(0, slash);
    head.path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (head.host.empty()) return fail(400, "empty authority");
  } else if (head.method == "CONNECT") {
    head.host = head.target;
  } else {
    // Two Hosts are two answers to "which service": refused in HTTP/1.0 as well.
    if (f.hosts > 1) return fail(400, "Host repeated");
    if (head.minorVersion == 1 && f.hosts == 0) return fail(400, "Host missing");
    if (head.target.empty() || (head.target[0] != '/' && head.target != "*"))
      return fail(400, "invalid request target");
  }
  if (head.host.empty() && head.minorVersion == 1) return fail(400, "empty Host");
  head.keepAlive = head.minorVersion == 1 ? !f.close : f.keepAlive && !f.close;
  head.upgrade = f.upgradeToken && f.upgradeField && f.otherUpgrade;
  head.contentLength = f.length;
  if (f.chunked)
    head.framing = Framing::chunked;
  else if (f.contentLength && f.length > 0)
    head.framing = Framing::length;
  else
    head.framing = Framing::none;
  return ParseResult{Parse::complete, 0, ""};
}

ParseResult parseResponse(std::string_view buf, const Limits& limits, std::string_view requestMethod, Head& head) {
  const char* msg;
  std::size_t msgLen, n = std::min<std::size_t>(limits.maxHeaders, 256);
  phr_header fields[256];
  const std::size_t window = std::min(buf.size(), limits.maxHeadBytes);
  int r = phr_parse_response(buf.data(), window, &head.minorVersion, &head.status, &msg, &msgLen, fields, &n, 0);
  if (r == -2) {
    if (buf.size() >= limits.maxHeadBytes) return fail(502, "upstream response head larger than the limit");
    return {};
  }
  if (r < 0) return fail(502, "malformed upstream response head");
  head.headBytes = static_cast<std::size_t>(r);
  head.reason = {msg, msgLen};
  head.method = {};
  head.target = {};
  head.headers.clear();
  head.host = {};
  head.requestId = {};
  for (std::size_t i = 0; i < n; ++i) {
    if (fields[i].name == nullptr) return fail(502, "obsolete line folding in the upstream response");
    head.headers.push_back({{fields[i].name, fields[i].name_len}, {fields[i].value, fields[i].value_len}});
  }
  auto f = scan(head);
  // A response that could be framed two ways is how response splitting starts: refused.
  if (f.badLength || (f.transferEncoding && f.contentLength) || f.twoCodings || f.badCoding) {
    return fail(502, "upstream response with ambiguous framing");
  }
  head.keepAlive = head.minorVersion == 1 ? !f.close : f.keepAlive && !f.close;
  head.upgrade = head.status == 101;
  head.contentLength = f.length;
  if (head.status == 101 || (requestMethod == "CONNECT" && head.status >= 200 && head.status < 300)) {
    head.framing = Framing::tunnel;
  } else if (requestMethod == "HEAD" || (head.status >= 100 && head.status < 200) || head.status == 204 ||
             head.status == 304) {
    head.framing = Framing::none;
  } else if (f.chunked) {
    head.framing = Framing::chunked;
  } else if (f.contentLength) {
    head.framing = f.length ? Framing::length : Framing::none;
  } else {
    head.framing = Framing::untilClose;
    head.keepAlive = false;
  }
  return ParseResult{Parse::complete, 0, ""};
}

ChunkedScanner::Step ChunkedScanner::feed(std::string_view bytes, std::string* data, std::string* trailers) {
  constexpr std::size_t kMaxOverhead = 32 * 1024;
  Step s;
  std::size_t i = 0;
  auto bad = [&] {
    s.error = true;
    s.used = i;
    return s;
  };
  while (i < bytes.size() && state_ != State::done) {
    const char c = bytes[i];
    switch (state_) {
      case State::size: {
        int v = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (v >= 0) {
          if (++digits_ > 15) return bad();
          remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(v);
        } else if (digits_ == 0) {
          return bad();
        } else if (c == '\r') {
          state_ = State::sizeLf;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::extension;
        } else {
          return bad();
        }
        ++i;
        break;
      }
      case State::extension:
        if (++overhead_ > kMaxOverhead) return bad();
        if (c == '\r')
          state_ = State::sizeLf;
        else if (c == '\n')
          return bad();
        ++i;
        break;
      case State::sizeLf:
        if (c != '\n') return bad();
        ++i;
        digits_ = 0;
        state_ = remaining_ == 0 ? State::trailerStart : State::data;
        break;
      case State::data: {
        auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size() - i));
        if (data) data->append(bytes.substr(i, take));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::dataCr;
        break;
      }
      case State::dataCr:
        if (c != '\r') return bad();
        ++i;
        state_ = State::dataLf;
        break;
      case State::dataLf:
        if (c != '\n') return bad();
        ++i;
        state_ = State::size;
        break;
      case State::trailerStart:
        ++i;
        if (c == '\r') {
          state_ = State::lastLf;
        } else if (c == '\n') {
          return bad();
        } else {
          state_ = State::trailer;
          if (trailers) trailers->push_back(c);
        }
        break;
      case State::trailer:
        if (++overhead_ > kMaxOverhead) return bad();
        if (c == '\r')
          state_ = State::trailerLf;
        else if (c == '\n')
          return bad();
        else if (trailers)
          trailers->push_back(c);
        ++i;
        break;
      case State::trailerLf:
        if (c != '\n') return bad();
        ++i;
        if (trailers) trailers->push_back('\n');
        state_ = State::trailerStart;
        break;
      case State::lastLf:
        if (c != '\n') return bad();
        ++i;
        state_ = State::done;
        break;
      case State::done:
        break;
    }
  }
  s.used = i;
  s.done = state_ == State::done;
  return s;
}

namespace {

void writeFields(const Head& head, const std::vector<Header>& extra, bool keepAlive, std::string& out,
                 const FieldEdits* edits) {
  bool extraHost = false;  // a Host the phases give (a route's authority rewrite) replaces any
  for (const auto& x : extra) extraHost = extraHost || iequals(x.name, "host");
  if (head.absoluteForm && !extraHost) out.append("Host: ").append(head.host).append("\r\n");
  // Fields named in Connection are hop-by-hop too (RFC 9110 section 7.6.1).
  std::string_view named[8];
  std::size_t nNamed = 0;
  for (const auto& h : head.headers) {
    if (!iequals(h.name, "connection")) continue;
    forEachElement(h.value, [&](std::string_view e) {
      if (!iequals(e, "close") && !iequals(e, "keep-alive") && !iequals(e, "upgrade") &&
          // Connection cannot strip framing: the body is relayed as framed.
          !iequals(e, "content-length") && !iequals(e, "transfer-encoding") && nNamed < std::size(named))
        named[nNamed++] = e;
    });
  }
  auto isNamed = [&](std::string_view name) {
    for (std::size_t i = 0; i < nNamed; ++i) {
      if (iequals(named[i], name)) return true;
    }
    return false;
  };
  for (const auto& h : head.headers) {
    if (isHopByHop(h.name)) {
      if (!(head.upgrade && iequals(h.name, "upgrade"))) continue;  // an upgrade keeps its Upgrade field
    } else if (nNamed && isNamed(h.name)) {
      continue;
    }
    bool replaced = head.absoluteForm && iequals(h.name, "host");
    for (const auto& x : extra) replaced = replaced || iequals(x.name, h.name);
    if (replaced || (edits && edits->removes(h.name))) continue;
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  for (const auto& x : extra) out.append(x.name).append(": ").append(x.value).append("\r\n");
  if (edits) {
    for (const auto& x : edits->add) out.append(x.name).append(": ").append(x.value).append("\r\n");
  }
  if (head.upgrade)
    out.append("Connection: upgrade\r\n");
  else if (!keepAlive)
    out.append("Connection: close\r\n");
  out.append("\r\n");
}

}  // namespace

bool FieldEdits::removes(std::string_view name) const {
  for (auto r : remove) {
    if (iequals(r, name)) return true;
  }
  return false;
}

void writeRequest(const Head& head, std::string_view target, const std::vector<Header>& extra, bool keepAlive,
                  std::string& out, const FieldEdits* edits) {
  out.append(head.method).append(" ").append(target).append(" HTTP/1.1\r\n");
  writeFields(head, extra, keepAlive, out, edits);
}

void writeResponse(const Head& head, const std::vector<Header>& extra, bool keepAlive, std::string& out,
                   const FieldEdits* edits) {
  out.append("HTTP/1.1 ").append(std::to_string(head.status)).append(" ");
  out.append(head.reason.empty() ? http::reasonPhrase(head.status) : head.reason).append("\r\n");
  writeFields(head, extra, keepAlive, out, edits);
}

std::vector<std::pair<std::string_view, std::string_view>> trailerFields(std::string_view lines) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  while (!lines.empty()) {
    auto eol = lines.find('\n');
    auto line = lines.substr(0, eol);
    lines = eol == std::string_view::npos ? std::string_view{} : lines.substr(eol + 1);
    auto colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) continue;
    auto name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) continue;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    out.emplace_back(name, value);
  }
  return out;
}

std::string simpleResponse(int status, std::string_view body, bool keepAlive, const std::vector<Header>& extra) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(http::reasonPhrase(status)) + "\r\n";
  out += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  for (const auto& x : extra) out.append(x.name).append(": ").append(x.value).append("\r\n");
  if (!keepAlive) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace mesh::proxy::h1
