#pragma once
// An in-memory network for tests and the simulator, on an EventLoop (normally a VirtualClock):
// every node attaches a MemTransport at its own address. Packets can be lost (a probability) and
// delayed (a uniform range); links can be cut (partitions), which drops packets and makes dials
// time out; streams are reliable and ordered with the same delay. Counts packets and bytes per
// sender, which the simulator reports.

#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/event_loop.h"
#include "gossip/transport.h"

namespace mesh::gossip {

class MemTransport;

class MemNetwork {
 public:
  MemNetwork(EventLoop& loop, std::uint64_t seed);
  ~MemNetwork();
  MemNetwork(const MemNetwork&) = delete;
  MemNetwork& operator=(const MemNetwork&) = delete;

  // A transport at `addr`, detached again when it is shut down or destroyed.
  std::unique_ptr<MemTransport> attach(const NodeAddress& addr);

  void setPacketLoss(double probability) { loss_ = probability; }
  void setDelay(Duration min, Duration max) { minDelay_ = min, maxDelay_ = max; }
  // Cuts (or restores) both directions between a and b.
  void block(const NodeAddress& a, const NodeAddress& b);
  void unblock(const NodeAddress& a, const NodeAddress& b);
  // Cuts every link between a member of `side` and a non-member.
  void partition(const std::vector<NodeAddress>& side);
  void heal();  // restores every link
  bool linked(const NodeAddress& a, const NodeAddress& b) const;

  struct Stats {
    std::uint64_t packetsSent = 0, packetBytesSent = 0, packetsDropped = 0;
    std::uint64_t streamBytesSent = 0, streamsOpened = 0;
  };
  const Stats& totals() const { return totals_; }
  Stats statsFor(const NodeAddress& a) const;

 private:
  friend class MemTransport;
  friend class MemStream;
  Duration delay();
  bool lose();
  void deliverPacket(const NodeAddress& from, const NodeAddress& to, std::string data);
  void detach(const NodeAddress& addr, MemTransport* t);

  EventLoop& loop_;
  std::mt19937_64 rng_;
  double loss_ = 0;
  Duration minDelay_{0};
  Duration maxDelay_{0};
  std::unordered_map<NodeAddress, MemTransport*, NodeAddressHash> nodes_;
  std::set<std::pair<std::string, std::string>> blocked_;  // (a,b) by toString, both orders
  std::unordered_set<std::string> partitionSide_;           // non-empty while partitioned
  Stats totals_;
  std::unordered_map<NodeAddress, Stats, NodeAddressHash> perNode_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class MemTransport final : public Transport {
 public:
  ~MemTransport() override;
  void setHandlers(PacketHandler onPacket, StreamHandler onStream) override;
  Result<void> sendPacket(const NodeAddress& to, std::string_view data) override;
  void dial(const NodeAddress& to, Duration timeout, DialCallback cb) override;
  NodeAddress localAddress() const override { return addr_; }
  void shutdown() override;

 private:
  friend class MemNetwork;
  MemTransport(MemNetwork& net, NodeAddress addr) : net_(&net), addr_(std::move(addr)) {}
  MemNetwork* net_;
  NodeAddress addr_;
  PacketHandler onPacket_;
  StreamHandler onStream_;
  bool down_ = false;
};

}  // namespace mesh::gossip
