#pragma once
// Socket addresses as users write them: "10.0.0.1:7946", "[fd00::1]:7946", and for --join also
// "host.example:7946". Parsing is strict so that a typo fails at start with the flag named.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mesh {

struct HostPort {
  std::string host;  // an IP literal (no brackets) or, where names are allowed, a DNS name
  std::uint16_t port = 0;
  bool isIpv6 = false;
  bool isIpLiteral = false;

  // "1.2.3.4:80" or "[::1]:80".
  std::string toString() const;
  bool isUnspecified() const;  // 0.0.0.0 or ::
  friend bool operator==(const HostPort&, const HostPort&) = default;
};

struct AddressRules {
  bool allowHostname = false;  // DNS names (for --join)
  bool allowPortZero = false;  // port 0: "any free port" (binds only)
  bool requirePort = true;     // else defaultPort applies when no port is written
  std::uint16_t defaultPort = 0;
};

Result<HostPort> parseHostPort(std::string_view text, const AddressRules& rules = {});

// True for RFC 1123 host names (letters, digits, hyphens, dots; labels of 1-63 chars).
bool validHostname(std::string_view name);

}  // namespace mesh
