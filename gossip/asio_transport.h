#pragma once
// The real transport: one UDP socket and one TCP listener on the same address and port
// (memberlist net_transport.go), on the control thread's io_context.

#include <memory>

#include "common/net_address.h"
#include "gossip/transport.h"

namespace boost::asio {
class io_context;
}

namespace mesh::gossip {

class AsioTransport final : public Transport {
 public:
  // Binds UDP and TCP to `bind` (port 0: a free port, the same for both). Errors name the
  // address and the reason.
  static Result<std::unique_ptr<AsioTransport>> create(boost::asio::io_context& io, const HostPort& bind);
  ~AsioTransport() override;

  void setHandlers(PacketHandler onPacket, StreamHandler onStream) override;
  Result<void> sendPacket(const NodeAddress& to, std::string_view data) override;
  void dial(const NodeAddress& to, Duration timeout, DialCallback cb) override;
  NodeAddress localAddress() const override;
  void shutdown() override;

  struct Impl;

 private:
  explicit AsioTransport(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh::gossip
