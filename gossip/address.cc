#include "gossip/address.h"

#include <arpa/inet.h>

#include "gossip/errc.h"

namespace mesh::gossip {

std::string NodeAddress::ipString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ip.size() == 4) {
    inet_ntop(AF_INET, ip.data(), buf, sizeof buf);
  } else if (ip.size() == 16) {
    inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
  } else {
    return "<invalid>";
  }
  return buf;
}

std::string NodeAddress::toString() const {
  return isV6() ? "[" + ipString() + "]:" + std::to_string(port) : ipString() + ":" + std::to_string(port);
}

Result<NodeAddress> NodeAddress::fromBytes(std::string_view ip, std::uint16_t port) {
  if (ip.size() != 4 && ip.size() != 16) {
    return Error(errc::malformed, "IP address of " + std::to_string(ip.size()) + " bytes");
  }
  return NodeAddress{std::string(ip), port};
}

Result<NodeAddress> NodeAddress::fromHostPort(const HostPort& hp) {
  unsigned char buf[16];
  if (hp.isIpv6) {
    if (inet_pton(AF_INET6, hp.host.c_str(), buf) != 1) return Error(errc::malformed, "bad IPv6 address " + hp.host);
    return NodeAddress{std::string(reinterpret_cast<char*>(buf), 16), hp.port};
  }
  if (inet_pton(AF_INET, hp.host.c_str(), buf) != 1) return Error(errc::malformed, "not an IP address: " + hp.host);
  return NodeAddress{std::string(reinterpret_cast<char*>(buf), 4), hp.port};
}

Result<NodeAddress> NodeAddress::parse(std::string_view text) {
  auto hp = parseHostPort(text);
  if (!hp) return hp.error();
  return fromHostPort(*hp);
}

}  // namespace mesh::gossip
