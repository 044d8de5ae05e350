#pragma once
// A SWIM member list with Lifeguard, wire-compatible with HashiCorp memberlist 0.2.2 (protocol
// versions 1-5): a Go memberlist or serf node cannot tell it from one of its own. It probes one
// member per interval (direct UDP ping, then indirect pings through k peers with nacks, and a
// TCP ping fallback), suspects members that fail, declares them dead when the Lifeguard
// suspicion timeout runs out unless they refute, spreads every change by piggybacked broadcasts
// with a retransmit limit, and repairs what gossip missed with periodic push-pull exchanges.
//
// Thread rules: single-threaded on its EventLoop. create(), and every public method, on that
// loop's thread; callbacks and delegate hooks run there too. Pending network callbacks hold the
// state weakly, so destroying a Memberlist (which shuts it down) is always safe.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "common/result.h"
#include "gossip/config.h"
#include "gossip/delegate.h"
#include "gossip/transport.h"
#include "gossip/wire.h"

namespace mesh::metrics {
class Registry;
}

namespace mesh::gossip {

struct MemberInfo {
  Node node;
  std::uint32_t incarnation = 0;
  NodeState state = NodeState::alive;
  TimePoint stateChange;
};

class Memberlist {
 public:
  // Starts probing, gossip and push-pull at once. Errors: a bad config (name, advertise
  // address, meta over 512 bytes, a protocol version outside 1-5).
  static Result<std::unique_ptr<Memberlist>> create(Config config, EventLoop& loop,
                                                    Transport& transport, Delegates delegates,
                                                    metrics::Registry& registry);
  ~Memberlist();
  Memberlist(const Memberlist&) = delete;
  Memberlist& operator=(const Memberlist&) = delete;

  // Push-pull joins with each seed, in parallel; done(number contacted, error when none was).
  void join(const std::vector<NodeAddress>& seeds,
            std::function<void(int contacted, Result<void> result)> done);

  // Broadcasts our own death as a voluntary leave and calls done once it has been sent out
  // (or at the timeout, with an error). Probing and gossip go on until shutdown().
  void leave(Duration timeout, std::function<void(Result<void>)> done);
  // Stops every timer and the transport. Idempotent.
  void shutdown();

  // Re-reads meta from the delegate and announces it with a new incarnation.
  Result<void> updateNode();

  // A user message as a best-effort packet, or over a reliable stream.
  Result<void> sendBestEffort(const std::string& node, std::string_view msg);
  void sendReliable(const std::string& node, std::string msg, std::function<void(Result<void>)> done);
  // A user message as a best-effort packet to an address that need not be a member (serf sends
  // query responses to the address the query names, as memberlist's SendToAddress does). `name`
  // is the node expected there: when we know it, its protocol version decides the CRC.
  void sendToAddress(const NodeAddress& to, const std::string& name, std::string_view msg);
  // A request/response exchange with another meshd node over one of memberlist's streams
  // (sealed like push-pull: encryption, label). For the layers above that need an answer (the
  // mesh's pulls of catalog and policy records). Never used with Go nodes (they do not know it).
  using RequestHandler = std::function<void(std::string request, std::function<void(Result<std::string>)> reply)>;
  void setRequestHandler(RequestHandler handler);
  void request(const NodeAddress& to, std::string body, Duration timeout,
               std::function<void(Result<std::string>)> done);
  // Queues a user-level broadcast message directly (delegates usually offer their own).
  void queueBroadcast(std::string name, std::string msg, std::function<void()> onFinished = nullptr);

  // Seeds the table with members known from elsewhere (a snapshot, or the simulator's steady
  // cluster): they enter as given, without events or broadcasts, and are verified by probing
  // like any other member. Names already held are left alone.
  void preload(const std::vector<MemberInfo>& members);

  // Every member we hold, any state (ours included).
  std::vector<MemberInfo> members() const;
  // Alive and suspect members (ours included), as memberlist's Members() gives them.
  std::vector<Node> liveMembers() const;
  std::size_t numLive() const;
  // Members held in any state (the n of the SWIM formulas).
  std::size_t estimatedSize() const;
  Node localNode() const;
  std::uint32_t incarnation() const;
  int healthScore() const;
  bool hasLeft() const;
  const Config& config() const;
  // The keyring in use (null when encryption is off); key rotation changes it in place.
  Keyring* keyring();

  struct Impl;

 private:
  explicit Memberlist(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh::gossip
