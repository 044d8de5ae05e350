#pragma once
// Plain HTTP/1.1 messages for the admin API and its clients (meshcli, tests). The proxy's data
// plane has its own zero-copy types; these favour simplicity.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mesh::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive lookup (RFC 9110 section 5.1: field names are case-insensitive).
std::optional<std::string_view> findHeader(const Headers& headers, std::string_view name);
// Field and host names are ASCII tokens: an ASCII fold is enough, and does not go through the
// locale as std::tolower does (measurable on the proxy's request path).
inline char asciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
std::string asciiLower(std::string_view s);
// Inline: the proxy compares every field name of every head against a few names, and most
// comparisons end at the sizes.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (asciiLower(a[i]) != asciiLower(b[i])) return false;
  }
  return true;
}

struct Request {
  std::string method;
  std::string target;  // as received: path plus optional "?query"
  int minorVersion = 1;
  Headers headers;
  std::string body;

  std::string_view path() const;   // target up to '?'
  std::string_view query() const;  // after '?', or empty
  // Value of one query parameter (percent-decoded), if present.
  std::optional<std::string> queryParam(std::string_view name) const;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;

  static Response text(int status, std::string body);
  static Response json(int status, std::string body);
};

// "OK", "Not Found", ... ("Unknown" for codes we never send); the admin API's and the proxy's.
std::string_view reasonPhrase(int status);

// Decodes %XX and '+' (as space) of a query component; invalid escapes are kept as written.
std::string percentDecode(std::string_view s);
// Encodes a query component: everything but unreserved characters (RFC 3986 section 2.3) as %XX.
std::string percentEncode(std::string_view s);

}  // namespace mesh::http
