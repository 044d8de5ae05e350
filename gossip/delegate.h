#pragma once
// The hooks through which a layer above (serf, the mesh's catalog and policy dissemination)
// rides on memberlist (memberlist delegate.go, event_delegate.go, conflict_delegate.go,
// merge_delegate.go, ping_delegate.go).
//
// Thread rules: every hook is called on the memberlist's EventLoop thread, after the
// memberlist's own state is consistent. A hook must not block. It may call the memberlist's read
// methods (members(), localNode(), ...) and may queue broadcasts or send messages; it must not
// call shutdown() (post it instead).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "gossip/address.h"

namespace mesh::gossip {

struct Node {
  std::string name;
  NodeAddress addr;
  std::string meta;
  std::uint8_t pmin = 0, pmax = 0, pcur = 0, dmin = 0, dmax = 0, dcur = 0;
};

class Delegate {
 public:
  virtual ~Delegate() = default;
  // Our node's metadata, at most `limit` bytes (longer is refused at start and on update).
  virtual std::string nodeMeta(std::size_t limit) = 0;
  // A user message arrived (by gossip, a best-effort packet, or a reliable stream).
  virtual void notifyMsg(std::string_view msg) = 0;
  // User broadcasts to piggyback: each costs `overhead` bytes plus its size, within `limit`.
  virtual std::vector<std::string> getBroadcasts(std::size_t overhead, std::size_t limit) = 0;
  // Our user state for a push-pull (join: the exchange is a join).
  virtual std::string localState(bool join) = 0;
  // A peer's user state from a push-pull.
  virtual void mergeRemoteState(std::string_view state, bool join) = 0;
};

class EventDelegate {
 public:
  virtual ~EventDelegate() = default;
  virtual void notifyJoin(const Node& node) = 0;
  virtual void notifyLeave(const Node& node) = 0;  // dead or left
  virtual void notifyUpdate(const Node& node) = 0;  // meta changed
};

class ConflictDelegate {
 public:
  virtual ~ConflictDelegate() = default;
  // Another address claims a name we know (and it is not ours to give away).
  virtual void notifyConflict(const Node& existing, const Node& other) = 0;
};

class MergeDelegate {
 public:
  virtual ~MergeDelegate() = default;
  // A join's push-pull brought these peers; an error refuses the whole merge (and the join).
  virtual std::optional<std::string> notifyMerge(const std::vector<Node>& peers) = 0;
};

class PingDelegate {
 public:
  virtual ~PingDelegate() = default;
  // The payload we put in our acks (serf: network coordinates).
  virtual std::string ackPayload() = 0;
  // A probe of `node` got its ack after `rtt`, with the peer's payload.
  virtual void notifyPingComplete(const Node& node, Duration rtt, std::string_view payload) = 0;
};

struct Delegates {
  Delegate* delegate = nullptr;
  EventDelegate* events = nullptr;
  ConflictDelegate* conflict = nullptr;
  MergeDelegate* merge = nullptr;
  PingDelegate* ping = nullptr;
};

}  // namespace mesh::gossip
