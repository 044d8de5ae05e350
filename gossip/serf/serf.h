#pragma once
// The serf layer (HashiCorp serf 0.9.4) on top of the memberlist port: member status with
// Lamport-clocked join and leave intents (so that "left" and "failed" are told apart, as serf
// reports them), node tags in serf's encoding, user events with de-duplication, push-pull of
// serf's own state, and reaping of failed and left members. It is memberlist's delegate, so a
// real serf agent accepts our nodes and the other way round.
//
// Not yet here (issue 4 continues): queries and their responses, key rotation, the snapshot,
// event coalescing.
//
// Thread rules: single-threaded on the memberlist's EventLoop; the event callback runs there.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "gossip/memberlist.h"
#include "gossip/serf/lamport.h"

namespace mesh::gossip::serf {

enum class MemberStatus { none, alive, leaving, left, failed };
const char* memberStatusName(MemberStatus s);

struct Member {
  std::string name;
  NodeAddress addr;
  std::map<std::string, std::string> tags;
  MemberStatus status = MemberStatus::none;
  std::uint8_t pmin = 0, pmax = 0, pcur = 0, dmin = 0, dmax = 0, dcur = 0;
};

struct MemberEvent {
  enum class Type { join, leave, failed, update, reap } type;
  Member member;
};

struct UserEventDelivery {
  LamportTime ltime = 0;
  std::string name;
  std::string payload;
  bool coalesce = false;
};

struct SerfConfig {
  std::string nodeName;
  std::map<std::string, std::string> tags;
  // Serf protocol spoken (serf 0.9.4: 2 to 5, 4 by default); memberlist carries it as the
  // delegate protocol version, and serf refuses peers outside its range.
  std::uint8_t protocolVersion = 4;
  // How often failed and left members are checked for reaping, and how long they are kept.
  Duration reapInterval = std::chrono::seconds(15);
  Duration reconnectTimeout = std::chrono::hours(24);  // failed members
  // How often we try to rejoin one random failed member (with probability failed/alive, as
  // serf does): what heals a partition longer than memberlist remembers the dead.
  Duration reconnectInterval = std::chrono::seconds(30);
  Duration tombstoneTimeout = std::chrono::hours(24);  // left members
  // Intents about members we do not know yet are kept this long (a join may arrive late).
  Duration recentIntentTimeout = std::chrono::minutes(5);
  // User events remembered for de-duplication and push-pull (serf's EventBuffer).
  std::size_t eventBuffer = 512;
  // Largest user event (name plus payload), as serf's UserEventSizeLimit.
  std::size_t userEventSizeLimit = 512;
  // How long leave() waits for its intent to be broadcast before memberlist leaves, and then
  // before going quiet (serf's BroadcastTimeout and LeavePropagateDelay).
  Duration broadcastTimeout = std::chrono::seconds(5);
  Duration leavePropagateDelay = std::chrono::seconds(1);
  int retransmitMult = 4;
};

class Serf {
 public:
  using MemberCallback = std::function<void(const MemberEvent&)>;
  using UserEventCallback = std::function<void(const UserEventDelivery&)>;

  // Creates the memberlist too (serf owns it): `mlConfig` is memberlist's config; serf sets its
  // delegate protocol versions.
  static Result<std::unique_ptr<Serf>> create(SerfConfig config, Config mlConfig, EventLoop& loop,
                                              Transport& transport, metrics::Registry& registry,
                                              MemberCallback onMember = nullptr, UserEventCallback onEvent = nullptr);
  ~Serf();

  // Joins through any of `seeds` (memberlist push-pull), then announces a join intent.
  void join(const std::vector<NodeAddress>& seeds, bool ignoreOldEvents,
            std::function<void(int contacted, Result<void>)> done);
  // Broadcasts a leave intent, then leaves memberlist; done once both have gone out.
  void leave(std::function<void(Result<void>)> done);
  // A user event to every member; refused when name plus payload exceed the size limit.
  Result<void> userEvent(const std::string& name, const std::string& payload, bool coalesce);
  // Replaces our tags and re-announces them.
  Result<void> setTags(std::map<std::string, std::string> tags);

  std::vector<Member> members() const;
  Member localMember() const;
  LamportTime clock() const;
  LamportTime eventClock() const;
  Memberlist& memberlist();

  struct Impl;

 private:
  explicit Serf(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh::gossip::serf
