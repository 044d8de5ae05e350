#include "common/net_address.h"

#include <arpa/inet.h>

#include <charconv>

namespace mesh {
namespace {

Error bad(std::string_view text, const std::string& why) {
  return Error(errc::invalid_argument, "'" + std::string(text) + "' is not a valid address: " + why);
}

}  // namespace

std::string HostPort::toString() const {
  if (isIpv6) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool HostPort::isUnspecified() const { return host == "0.0.0.0" || host == "::"; }

bool validHostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c == '-' && label > 0);
    if (!ok || ++label > 63) return false;
  }
  return name.back() != '-';
}

Result<HostPort> parseHostPort(std::string_view text, const AddressRules& rules) {
  HostPort hp;
  std::string_view host, port;
  bool havePort = false;
  if (text.empty()) return bad(text, "empty");
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad(text, "missing ']'");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad(text, "expected ':' after ']'");
      port = rest.substr(1);
      havePort = true;
    }
    hp.isIpv6 = true;
  } else {
    auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) {
      return bad(text, "IPv6 addresses need brackets, as in [::1]:7946");
    }
    if (colon == std::string_view::npos) {
      host = text;
    } else {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      havePort = true;
    }
  }
  if (host.empty()) return bad(text, "missing host");

  if (havePort) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
      return bad(text, "port must be a number from 0 to 65535");
    }
    hp.port = static_cast<std::uint16_t>(value);
    if (hp.port == 0 && !rules.allowPortZero) return bad(text, "port 0 is not allowed here");
  } else if (rules.requirePort) {
    return bad(text, "missing ':PORT'");
  } else {
    hp.port = rules.defaultPort;
  }

  std::string h(host);
  unsigned char buf[16];
  if (hp.isIpv6) {
    if (inet_pton(AF_INET6, h.c_str(), buf) != 1) return bad(text, "bad IPv6 address");
    hp.isIpLiteral = true;
  } else if (inet_pton(AF_INET, h.c_str(), buf) == 1) {
    hp.isIpLiteral = true;
  } else {
    bool looksNumeric = h.find_first_not_of("0123456789.") == std::string::npos;
    if (looksNumeric) return bad(text, "bad IPv4 address");
    if (!rules.allowHostname) return bad(text, "an IP address is required here");
    if (!validHostname(h)) return bad(text, "bad host name");
  }
  hp.host = std::move(h);
  return hp;
}

}  // namespace mesh
