#pragma once
// How memberlist reaches peers (memberlist transport.go): unreliable packets (UDP) and reliable
// byte streams (TCP), both addressed by NodeAddress. Two implementations: AsioTransport (real
// sockets, asio_transport.h) and MemTransport (an in-memory network with loss, delay and
// partitions on virtual time, mem_transport.h).
//
// Thread rules: every method is called on the owning EventLoop's thread, and every callback and
// handler runs on it. Callbacks may outlive the caller's interest: owners capture weak pointers.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "gossip/address.h"

namespace mesh::gossip {

class Stream {
 public:
  virtual ~Stream() = default;
  // Queues data; cb(ok or error) once all of it is written. Writes complete in order.
  virtual void write(std::string data, std::function<void(Result<void>)> cb) = 0;
  // cb gets the next bytes received: a non-empty string, "" when the peer closed its side, or an
  // error (including after close()). One read outstanding at a time.
  virtual void read(std::function<void(Result<std::string>)> cb) = 0;
  // Closes both directions; an outstanding read completes with an error.
  virtual void close() = 0;
  virtual NodeAddress remote() const = 0;
};

class Transport {
 public:
  using PacketHandler = std::function<void(const NodeAddress& from, std::string data, TimePoint received)>;
  using StreamHandler = std::function<void(std::unique_ptr<Stream> stream)>;
  using DialCallback = std::function<void(Result<std::unique_ptr<Stream>>)>;

  virtual ~Transport() = default;
  // Where received packets and accepted streams go. Set once, before traffic flows.
  virtual void setHandlers(PacketHandler onPacket, StreamHandler onStream) = 0;
  // Sends one datagram. An error means it certainly was not sent (a full socket buffer is not
  // an error: UDP may drop it anyway).
  virtual Result<void> sendPacket(const NodeAddress& to, std::string_view data) = 0;
  // Opens a stream; cb within `timeout`.
  virtual void dial(const NodeAddress& to, Duration timeout, DialCallback cb) = 0;
  // The address actually bound (port 0 resolved).
  virtual NodeAddress localAddress() const = 0;
  // Stops receiving and closes the sockets. Idempotent.
  virtual void shutdown() = 0;
};

}  // namespace mesh::gossip
