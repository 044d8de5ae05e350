#pragma once
// The serf layer (HashiCorp serf 0.9.4) on top of the memberlist port: member status with
// Lamport-clocked join and leave intents (so that "left" and "failed" are told apart, as serf
// reports them), node tags in serf's encoding, user events with de-duplication, push-pull of
// serf's own state, and reaping of failed and left members. It is memberlist's delegate, so a
// real serf agent accepts our nodes and the other way round.
//
// Also queries (filters, acks, responses sent straight to the asker and relayed through k other
// members), serf's internal queries (ping, conflict, and the key-rotation queries install-key,
// use-key, remove-key, list-keys), and coalescing of user events marked as coalescable.
//
// Left out: serf's automatic name-conflict resolution (we answer other nodes' "_serf_conflict"
// queries but do not start one; a conflict is logged as an error).
//
// Thread rules: single-threaded on the memberlist's EventLoop; the event callback runs there.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "gossip/keyring.h"
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

struct QueryParams {
  std::vector<std::string> filterNodes;              // only these nodes answer (empty: any)
  std::map<std::string, std::string> filterTags;     // tag -> regular expression (searched)
  bool requestAck = false;
  std::uint8_t relayFactor = 0;  // each answer is also sent through this many other members
  Duration timeout{0};           // zero: serf's default, which grows with the cluster size
};

struct QueryCallbacks {
  std::function<void(const std::string& from)> onAck;
  std::function<void(const std::string& from, const std::string& payload)> onResponse;
  // Once: at the deadline, or sooner when every member that could answer has (acked and)
  // answered; at once when the filters match no member we know.
  std::function<void()> onDone;
};

struct QueryStarted {
  LamportTime ltime = 0;
  std::uint32_t id = 0;
  Duration timeout{0};
  // Members the filters matched when the query went out (from our view of their tags).
  std::vector<std::string> expected;
};

// A query that reached us (and passed its filters); answer it with Serf::respond.
struct IncomingQuery {
  LamportTime ltime = 0;
  std::uint32_t id = 0;
  std::string name;
  std::string payload;
  std::string sourceNode;
  NodeAddress source;
  TimePoint deadline{};
  std::uint8_t relayFactor = 0;
  std::shared_ptr<bool> responded = std::make_shared<bool>(false);
};

// The outcome of a key operation across the cluster, as serf's KeyResponse.
struct KeyOpResult {
  std::map<std::string, std::string> messages;  // node -> its error (or warning) message
  int numNodes = 0;  // members alive when the query went out (ours included)
  int numResp = 0;
  int numErr = 0;
  std::map<std::string, int> keys;         // base64 key -> nodes holding it (list)
  std::map<std::string, int> primaryKeys;  // base64 key -> nodes using it as primary (list)
  // Empty when every node answered and succeeded; else serf's summary ("1/3 nodes reported failure").
  std::string error;
};

enum class KeyOp { install, use, remove, list };
const char* keyOpName(KeyOp op);

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
  // Queries (serf's QueryBuffer, QueryTimeoutMult, QuerySizeLimit, QueryResponseSizeLimit).
  std::size_t queryBuffer = 512;
  int queryTimeoutMult = 16;
  std::size_t querySizeLimit = 1024;
  std::size_t queryResponseSizeLimit = 1024;
  // User events sent with coalesce=true are held and only the latest of each name is delivered,
  // once no such event came for userQuiescentPeriod or at the latest after userCoalescePeriod
  // (serf's agent: 3 s and 1 s). Zero turns coalescing off.
  Duration userCoalescePeriod{0};
  Duration userQuiescentPeriod{0};
  // Where a restart starts from (serf's snapshot): clocks never go back, and user events and
  // queries at or before the saved clocks are not delivered again.
  struct Restored {
    LamportTime clock = 0, eventClock = 0, queryClock = 0;
  };
  std::optional<Restored> restored;
  // Called when any of the three clocks moved: after each handled message, event, query, join
  // or leave (so that a snapshot is never behind what this node has acted on).
  std::function<void(LamportTime clock, LamportTime eventClock, LamportTime queryClock)> onClocksChanged;
  // Called after a key-rotation query changed our keyring (to persist it); an error is
  // reported back to the asker as this node's failure.
  std::function<Result<void>(const Keyring&)> onKeyringChange;
};

class Serf {
 public:
  using MemberCallback = std::function<void(const MemberEvent&)>;
  using UserEventCallback = std::function<void(const UserEventDelivery&)>;
  using QueryCallback = std::function<void(const IncomingQuery&)>;

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

  // Asks the cluster (ourselves included). Refused when the encoded query is over the size limit.
  Result<QueryStarted> query(const std::string& name, const std::string& payload, const QueryParams& params,
                             QueryCallbacks callbacks);
  // Messages of types from kExtensionTypeMin up are not serf's: they go to this handler (the
  // mesh's own gossip between meshd nodes; serf never sends them, and we never send them to a
  // node without the `mesh` tag).
  static constexpr std::uint8_t kExtensionTypeMin = 64;
  void setExtensionHandler(std::function<void(std::string_view message)> handler);
  // User queries (names not starting with "_serf_") that passed their filters here.
  void setQueryHandler(QueryCallback handler);
  // Answers a query once, before its deadline; the answer goes to the asker and through
  // relayFactor other members.
  Result<void> respond(const IncomingQuery& q, std::string_view payload);
  Duration defaultQueryTimeout() const;

  // Key rotation across the cluster through serf's internal queries; `keyBase64` is ignored for
  // list. done runs once every member answered or at the query's deadline.
  void keyOperation(KeyOp op, const std::string& keyBase64, std::uint8_t relayFactor,
                    std::function<void(Result<KeyOpResult>)> done);

  std::vector<Member> members() const;
  // One member by name (a map lookup: for per-message paths, where copying members() is not).
  std::optional<Member> member(const std::string& name) const;
  Member localMember() const;
  LamportTime clock() const;
  LamportTime eventClock() const;
  LamportTime queryClock() const;
  Memberlist& memberlist();

  struct Impl;

 private:
  explicit Serf(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh::gossip::serf
