#include "common/http/request_parser.h"

#include <charconv>
#include <string>
#include <vector>

#include "common/http/picohttpparser.h"

namespace mesh::http {
namespace {

ParsedRequest failed(int status, std::string_view reason) {
  ParsedRequest p;
  p.state = ParsedRequest::State::error;
  p.errorStatus = status;
  p.errorReason = reason;
  return p;
}

bool headerHasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

ParsedRequest parseRequest(std::string_view input, const RequestLimits& limits) {
  const char* method = nullptr;
  const char* path = nullptr;
  std::size_t methodLen = 0, pathLen = 0, numHeaders = limits.maxHeaders;
  int minor = 0;
  std::vector<phr_header> hdrs(limits.maxHeaders);
  std::size_t headerWindow = std::min(input.size(), limits.maxHeaderBytes);
  int n = phr_parse_request(input.data(), headerWindow, &method, &methodLen, &path, &pathLen,
                            &minor, hdrs.data(), &numHeaders, 0);
  if (n == -1) {
    // picohttpparser also fails when there are more headers than slots.
    return failed(numHeaders >= limits.maxHeaders ? 431 : 400,
                  numHeaders >= limits.maxHeaders ? "too many headers" : "malformed request");
  }
  if (n == -2) {
    if (input.size() >= limits.maxHeaderBytes) return failed(431, "request headers too large");
    return {};
  }
  if (minor != 0 && minor != 1) return failed(505, "HTTP version not supported");

  ParsedRequest out;
  Request& req = out.request;
  req.method.assign(method, methodLen);
  req.target.assign(path, pathLen);
  req.minorVersion = minor;
  req.headers.reserve(numHeaders);
  std::optional<std::size_t> contentLength;
  bool chunked = false, sawTransferEncoding = false;
  for (std::size_t i = 0; i < numHeaders; ++i) {
    // A NULL name marks a folded continuation line (obsolete, RFC 9112 section 5.2): refuse it.
    if (hdrs[i].name == nullptr) return failed(400, "obsolete header line folding");
    std::string_view name(hdrs[i].name, hdrs[i].name_len);
    std::string_view value(hdrs[i].value, hdrs[i].value_len);
    if (iequals(name, "Content-Length")) {
      std::size_t v = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (value.empty() || ec != std::errc() || p != value.data() + value.size()) {
        return failed(400, "bad Content-Length");
      }
      if (contentLength && *contentLength != v) return failed(400, "conflicting Content-Length");
      contentLength = v;
    } else if (iequals(name, "Transfer-Encoding")) {
      sawTransferEncoding = true;
      if (!iequals(value, "chunked")) return failed(501, "unsupported Transfer-Encoding");
      chunked = true;
    }
    req.headers.emplace_back(std::string(name), std::string(value));
  }
  if (sawTransferEncoding && contentLength) {
    return failed(400, "both Content-Length and Transfer-Encoding");
  }
  if (minor == 1 && !findHeader(req.headers, "Host")) return failed(400, "missing Host header");

  std::string_view rest = input.substr(static_cast<std::size_t>(n));
  if (chunked) {
    // Chunk framing adds a few bytes per chunk; 4 KiB of slack over the body cap covers it.
    std::string copy(rest.substr(0, std::min(rest.size(), limits.maxBodyBytes + 4096)));
    const std::size_t window = copy.size();
    phr_chunked_decoder dec{};
    dec.consume_trailer = 1;
    std::size_t size = copy.size();
    ssize_t r = phr_decode_chunked(&dec, copy.data(), &size);
    if (r == -1) return failed(400, "malformed chunked body");
    if (size > limits.maxBodyBytes) return failed(413, "request body too large");
    if (r == -2) {
      if (rest.size() > limits.maxBodyBytes + 4096) return failed(413, "request body too large");
      return {};
    }
    copy.resize(size);
    req.body = std::move(copy);
    // r counts the bytes of the window left after the body: the next request's start.
    out.consumed = static_cast<std::size_t>(n) + window - static_cast<std::size_t>(r);
  } else {
    std::size_t len = contentLength.value_or(0);
    if (len > limits.maxBodyBytes) return failed(413, "request body too large");
    if (rest.size() < len) return {};
    req.body.assign(rest.substr(0, len));
    out.consumed = static_cast<std::size_t>(n) + len;
  }
  out.state = ParsedRequest::State::complete;
  return out;
}

bool keepAlive(const Request& request) {
  auto conn = findHeader(request.headers, "Connection");
  if (request.minorVersion == 0) return conn && headerHasToken(*conn, "keep-alive");
  return !(conn && headerHasToken(*conn, "close"));
}

}  // namespace mesh::http
