#pragma once
// A gossip peer's address as memberlist carries it: the IP as raw bytes (4 for IPv4, 16 for
// IPv6: exactly what alive and push-pull messages hold) and a port.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/net_address.h"
#include "common/result.h"

namespace mesh::gossip {

struct NodeAddress {
  std::string ip;  // 4 or 16 raw bytes
  std::uint16_t port = 0;

  bool valid() const { return (ip.size() == 4 || ip.size() == 16) && port != 0; }
  bool isV6() const { return ip.size() == 16; }
  std::string ipString() const;  // "10.0.0.1" or "fd00::1"
  std::string toString() const;  // "10.0.0.1:7946" or "[fd00::1]:7946"
  friend bool operator==(const NodeAddress&, const NodeAddress&) = default;

  // From raw bytes off the wire; an error unless 4 or 16 bytes.
  static Result<NodeAddress> fromBytes(std::string_view ip, std::uint16_t port);
  // From an IP literal HostPort (names are resolved before they get here).
  static Result<NodeAddress> fromHostPort(const HostPort& hp);
  static Result<NodeAddress> parse(std::string_view text);  // "1.2.3.4:5", "[::1]:5"
};

struct NodeAddressHash {
  std::size_t operator()(const NodeAddress& a) const {
    return std::hash<std::string>()(a.ip) ^ (std::size_t(a.port) * 0x9e3779b97f4a7c15ull);
  }
};

}  // namespace mesh::gossip
