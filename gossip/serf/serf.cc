#include "gossip/serf/serf.h"

#include <algorithm>
#include <array>
#include <optional>

#include <cmath>
#include <random>
#include <regex>
#include <set>

#include "common/log.h"
#include "common/metrics.h"
#include "gossip/broadcast_queue.h"
#include "gossip/errc.h"
#include "gossip/serf/messages.h"

namespace mesh::gossip::serf {
namespace {

// serf's protocol range (serf 0.9.4: ProtocolVersionMin 2, ProtocolVersionMax 5).
constexpr std::uint8_t kSerfProtocolMin = 2;
constexpr std::uint8_t kSerfProtocolMax = 5;
// Queries need serf protocol 4.
constexpr std::uint8_t kQueryMinProtocol = 4;
constexpr std::string_view kInternalPrefix = "_serf_";
// serf: a key is at least 25 bytes base64-encoded with its list framing (16-byte key).
constexpr std::size_t kMinEncodedKeyLength = 25;
// Tag filter expressions arrive from the network: bounded before they reach the regex engine.
constexpr std::size_t kMaxFilterExprLength = 256;

// Query addresses are Go net.IP bytes: IPv4 may come as 16 bytes (IPv4-mapped IPv6).
Result<NodeAddress> addressFromWire(std::string_view ip, int port) {
  static constexpr char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\xff', '\xff'};
  if (ip.size() == 16 && std::equal(ip.begin(), ip.begin() + 12, kMapped)) ip = ip.substr(12);
  if (port <= 0 || port > 65535) return Error(errc::malformed, "port out of range");
  return NodeAddress::fromBytes(ip, static_cast<std::uint16_t>(port));
}

// Go's regexp.MatchString: an unanchored search. A bad expression matches nothing.
bool tagMatches(const std::string& expr, const std::string& value) {
  if (expr.size() > kMaxFilterExprLength) return false;
  try {
    return std::regex_search(value, std::regex(expr, std::regex::ECMAScript));
  } catch (const std::exception&) {
    return false;
  }
}

bool filtersMatch(const std::vector<std::string>& filters, const std::string& name,
                  const std::map<std::string, std::string>& tags, spdlog::logger* log) {
  for (const auto& raw : filters) {
    auto f = decodeFilter(raw);
    if (!f) {
      if (log) log->warn("query filter refused: {}", f.error().message());
      return false;
    }
    if (f->kind == Filter::Kind::nodes) {
      if (std::find(f->nodes.begin(), f->nodes.end(), name) == f->nodes.end()) return false;
    } else {
      auto it = tags.find(f->tag);
      if (!tagMatches(f->expr, it == tags.end() ? std::string() : it->second)) return false;
    }
  }
  return true;
}

}  // namespace

const char* keyOpName(KeyOp op) {
  switch (op) {
    case KeyOp::install: return "install-key";
    case KeyOp::use: return "use-key";
    case KeyOp::remove: return "remove-key";
    case KeyOp::list: return "list-keys";
  }
  return "unknown";
}

const char* memberStatusName(MemberStatus s) {
  switch (s) {
    case MemberStatus::none: return "none";
    case MemberStatus::alive: return "alive";
    case MemberStatus::leaving: return "leaving";
    case MemberStatus::left: return "left";
    case MemberStatus::failed: return "failed";
  }
  return "unknown";
}

struct Serf::Impl : Delegate, EventDelegate, ConflictDelegate, std::enable_shared_from_this<Serf::Impl> {
  Impl(SerfConfig c, EventLoop& l, metrics::Registry& r, MemberCallback m, UserEventCallback e)
      : config(std::move(c)),
        loop(l),
        registry(r),
        reconnects(r.counter("mesh_serf_reconnects_total", "Attempts to rejoin a failed member.")),
        queriesStarted(r.counter("mesh_serf_queries_started_total", "Queries this node asked.")),
        queriesHandled(r.counter("mesh_serf_queries_handled_total",
                                 "Queries received that passed their filters here (first copy only).")),
        queryAcks(r.counter("mesh_serf_query_responses_received_total",
                            "Acks and answers received for our queries (duplicates not counted).", {{"kind", "ack"}})),
        queryAnswers(r.counter("mesh_serf_query_responses_received_total",
                               "Acks and answers received for our queries (duplicates not counted).",
                               {{"kind", "response"}})),
        relaysForwarded(r.counter("mesh_serf_relays_forwarded_total",
                                  "Query responses this node relayed for another member.")),
        eventsCoalesced(r.counter("mesh_serf_events_coalesced_total",
                                  "User events dropped by coalescing (a later event of the same name won).")),
        rng(std::random_device{}()),
        log(log::get("serf")),
        onMember(std::move(m)),
        onEvent(std::move(e)),
        intents(config.retransmitMult, [this] { return ml ? ml->numLive() : 1; }),
        events(config.retransmitMult, [this] { return ml ? ml->numLive() : 1; }),
        queryQueue(config.retransmitMult, [this] { return ml ? ml->numLive() : 1; }),
        eventBuffer(config.eventBuffer),
        queryBuffer(config.queryBuffer) {
    // serf starts every clock at 1.
    clock.increment();
    eventClock.increment();
    queryClock.increment();
  }

  struct State {
    Member member;
    LamportTime statusLTime = 0;
    TimePoint leaveTime{};
  };
  struct Intent {
    MessageType type;
    LamportTime ltime;
    TimePoint when;
  };

  struct SeenQueries {
    LamportTime ltime = 0;
    std::vector<std::uint32_t> ids;
  };
  // A query we asked, waiting for its acks and answers.
  struct Pending {
    QueryCallbacks callbacks;
    bool wantAcks = false;
    std::set<std::string> expected, acks, responses;
    EventLoop::TimerId timer = 0;
  };
  struct Coalesced {
    LamportTime ltime = 0;
    std::vector<UserEventDelivery> events;
  };

  SerfConfig config;
  EventLoop& loop;
  metrics::Registry& registry;
  metrics::Counter& reconnects;
  metrics::Counter& queriesStarted;
  metrics::Counter& queriesHandled;
  metrics::Counter& queryAcks;
  metrics::Counter& queryAnswers;
  metrics::Counter& relaysForwarded;
  metrics::Counter& eventsCoalesced;
  std::mt19937_64 rng;
  EventLoop::TimerId reconnectTimer = 0;
  std::shared_ptr<spdlog::logger> log;
  MemberCallback onMember;
  UserEventCallback onEvent;
  LamportClock clock, eventClock, queryClock;
  std::map<std::string, State> members;
  std::vector<std::string> failed, left;  // in the order they failed or left
  std::map<std::string, Intent> recentIntents;
  BroadcastQueue intents;
  BroadcastQueue events;
  BroadcastQueue queryQueue;
  std::vector<std::optional<UserEvents>> eventBuffer;
  std::vector<std::optional<SeenQueries>> queryBuffer;
  LamportTime eventMinTime = 0;
  LamportTime queryMinTime = 0;
  std::map<std::pair<LamportTime, std::uint32_t>, Pending> pending;
  QueryCallback queryHandler;
  std::function<void(std::string_view)> extensionHandler;
  std::map<std::string, Coalesced> coalescing;
  EventLoop::TimerId coalesceTimer = 0, quiescentTimer = 0;
  std::array<LamportTime, 3> reportedClocks{};
  bool eventJoinIgnore = false;
  bool leaving = false;
  EventLoop::TimerId reapTimer = 0;
  std::unique_ptr<Memberlist> ml;  // last: destroyed first, while the delegate is still whole

  std::weak_ptr<Impl> weak() { return weak_from_this(); }

  void reportClocks() {
    const std::array<LamportTime, 3> now{clock.time(), eventClock.time(), queryClock.time()};
    if (now == reportedClocks) return;
    reportedClocks = now;
    if (config.onClocksChanged) config.onClocksChanged(now[0], now[1], now[2]);
  }

  void emit(MemberEvent::Type t, const Member& m) {
    if (onMember) onMember(MemberEvent{t, m});
  }

  std::map<std::string, std::string> tagsOf(std::string_view meta) {
    auto t = decodeTags(meta);
    if (!t) {
      log->warn("undecodable tags: {}", t.error().message());
      return {};
    }
    return *t;
  }

  static void removeName(std::vector<std::string>& v, const std::string& name) {
    v.erase(std::remove(v.begin(), v.end(), name), v.end());
  }

  void queue(BroadcastQueue& q, std::string msg, std::function<void()> done = nullptr) {
    q.queue("", std::move(msg), std::move(done));
  }

  // ---- memberlist Delegate ----------------------------------------------------------------

  std::string nodeMeta(std::size_t) override { return encodeTags(config.tags); }

  void notifyMsg(std::string_view buf) override {
    if (buf.empty()) return;
    if (static_cast<std::uint8_t>(buf[0]) >= kExtensionTypeMin && extensionHandler) {
      extensionHandler(buf);
      return;
    }
    const auto type = static_cast<MessageType>(static_cast<std::uint8_t>(buf[0]));
    const std::string_view body = buf.substr(1);
    // Counted by type; a type from a newer serf (or garbage) counts as "unknown" and is ignored.
    registry
        .counter("mesh_serf_messages_received_total", "serf messages received, by type.",
                 {{"type", messageTypeName(static_cast<std::uint8_t>(type))}})
        .inc();
    bool rebroadcast = false;
    BroadcastQueue* q = &intents;
    switch (type) {
      case MessageType::leave:
        if (auto m = decodeLeave(body)) rebroadcast = handleLeaveIntent(*m);
        break;
      case MessageType::join:
        if (auto m = decodeJoin(body)) rebroadcast = handleJoinIntent(*m);
        break;
      case MessageType::userEvent:
        if (auto m = decodeUserEvent(body)) rebroadcast = handleUserEvent(*m);
        q = &events;
        break;
      case MessageType::query:
        if (auto m = decodeQuery(body)) {
          rebroadcast = handleQuery(*m);
        } else {
          log->warn("undecodable query: {}", m.error().message());
        }
        q = &queryQueue;
        break;
      case MessageType::queryResponse:
        if (auto m = decodeQueryResponse(body)) {
          handleQueryResponse(*m);
        } else {
          log->warn("undecodable query response: {}", m.error().message());
        }
        break;
      case MessageType::relay:
        handleRelay(body);
        break;
      default:
        // Types from a newer serf, or types that only travel inside query payloads (key
        // requests and responses, conflict responses): counted above, otherwise ignored.
        log->debug("serf message ignored type={}", messageTypeName(static_cast<std::uint8_t>(type)));
        break;
    }
    if (rebroadcast) queue(*q, std::string(buf));
    reportClocks();
  }

  std::vector<std::string> getBroadcasts(std::size_t overhead, std::size_t limit) override {
    std::vector<std::string> out = intents.get(overhead, limit);
    std::size_t used = 0;
    for (const auto& m : out) used += m.size() + overhead;
    if (limit > used) {
      for (auto& m : events.get(overhead, limit - used)) {
        used += m.size() + overhead;
        out.push_back(std::move(m));
      }
    }
    if (limit > used) {
      for (auto& m : queryQueue.get(overhead, limit - used)) out.push_back(std::move(m));
    }
    return out;
  }

  std::string localState(bool) override {
    PushPull pp;
    pp.ltime = clock.time();
    for (const auto& [name, st] : members) pp.statusLTimes[name] = st.statusLTime;
    pp.leftMembers = left;
    pp.eventLTime = eventClock.time();
    for (const auto& e : eventBuffer) {
      if (e) pp.events.push_back(*e);
    }
    pp.queryLTime = queryClock.time();
    std::string out;
    encode(out, pp);
    return out;
  }

  void mergeRemoteState(std::string_view buf, bool isJoin) override {
    if (buf.empty() || static_cast<MessageType>(static_cast<std::uint8_t>(buf[0])) != MessageType::pushPull) return;
    auto pp = decodePushPull(buf.substr(1));
    if (!pp) {
      log->warn("undecodable serf push-pull state: {}", pp.error().message());
      return;
    }
    if (pp->ltime > 0) clock.witness(pp->ltime - 1);
    if (pp->eventLTime > 0) eventClock.witness(pp->eventLTime - 1);
    if (pp->queryLTime > 0) queryClock.witness(pp->queryLTime - 1);
    for (const auto& name : pp->leftMembers) {
      auto it = pp->statusLTimes.find(name);
      handleLeaveIntent(Leave{(it == pp->statusLTimes.end() ? 0 : it->second) + 1, name, false});
    }
    for (const auto& [name, t] : pp->statusLTimes) {
      if (std::find(pp->leftMembers.begin(), pp->leftMembers.end(), name) != pp->leftMembers.end()) continue;
      handleJoinIntent(Join{t, name});
    }
    if (isJoin && eventJoinIgnore && pp->eventLTime > eventMinTime) eventMinTime = pp->eventLTime;
    for (const auto& batch : pp->events) {
      for (const auto& e : batch.events) handleUserEvent(UserEventMessage{batch.ltime, e.name, e.payload, false});
    }
    reportClocks();
  }

  // ---- memberlist EventDelegate --------------------------------------------------------------

  void notifyJoin(const Node& n) override {
    auto [it, fresh] = members.try_emplace(n.name);
    State& st = it->second;
    const MemberStatus old = fresh ? MemberStatus::none : st.member.status;
    st.member.name = n.name;
    st.member.addr = n.addr;
    st.member.tags = tagsOf(n.meta);
    st.member.status = MemberStatus::alive;
    st.leaveTime = {};
    if (fresh) {
      // Intents that arrived before the member did.
      if (auto j = recentIntents.find(n.name); j != recentIntents.end()) {
        if (j->second.type == MessageType::join) st.statusLTime = j->second.ltime;
        if (j->second.type == MessageType::leave) {
          st.member.status = MemberStatus::leaving;
          st.statusLTime = j->second.ltime;
        }
      }
    }
    copyVersions(st.member, n);
    if (old == MemberStatus::failed || old == MemberStatus::left) {
      removeName(failed, n.name);
      removeName(left, n.name);
    }
    emit(MemberEvent::Type::join, st.member);
  }

  void notifyLeave(const Node& n) override {
    auto it = members.find(n.name);
    if (it == members.end()) return;
    State& st = it->second;
    if (st.member.status == MemberStatus::leaving) {
      st.member.status = MemberStatus::left;
      st.leaveTime = loop.now();
      left.push_back(n.name);
      emit(MemberEvent::Type::leave, st.member);
    } else if (st.member.status == MemberStatus::alive) {
      st.member.status = MemberStatus::failed;
      st.leaveTime = loop.now();
      failed.push_back(n.name);
      emit(MemberEvent::Type::failed, st.member);
    }
  }

  void notifyUpdate(const Node& n) override {
    auto it = members.find(n.name);
    if (it == members.end()) return;
    it->second.member.addr = n.addr;
    it->second.member.tags = tagsOf(n.meta);
    copyVersions(it->second.member, n);
    emit(MemberEvent::Type::update, it->second.member);
  }

  void notifyConflict(const Node& existing, const Node& other) override {
    log->error("node name conflict name={} existing={} other={}", existing.name, existing.addr.toString(),
               other.addr.toString());
  }

  static void copyVersions(Member& m, const Node& n) {
    m.pmin = n.pmin, m.pmax = n.pmax, m.pcur = n.pcur, m.dmin = n.dmin, m.dmax = n.dmax, m.dcur = n.dcur;
  }

  // ---- intents and events (serf.go handleNodeLeaveIntent / JoinIntent / UserEvent) -------------

  bool upsertIntent(const std::string& node, MessageType t, LamportTime ltime) {
    auto it = recentIntents.find(node);
    if (it == recentIntents.end() || ltime > it->second.ltime) {
      recentIntents[node] = Intent{t, ltime, loop.now()};
      return true;
    }
    return false;
  }

  bool handleLeaveIntent(const Leave& m) {
    clock.witness(m.ltime);
    auto it = members.find(m.node);
    if (it == members.end()) return upsertIntent(m.node, MessageType::leave, m.ltime);
    State& st = it->second;
    if (m.ltime <= st.statusLTime) return false;
    // Someone says we are leaving while we are not: refute with a fresh join intent.
    if (m.node == config.nodeName && !leaving) {
      broadcastJoin(clock.time());
      return false;
    }
    st.statusLTime = m.ltime;
    switch (st.member.status) {
      case MemberStatus::alive:
        st.member.status = MemberStatus::leaving;
        return true;
      case MemberStatus::failed:
        st.member.status = MemberStatus::left;
        removeName(failed, m.node);
        left.push_back(m.node);
        emit(MemberEvent::Type::leave, st.member);
        return true;
      case MemberStatus::leaving:
      case MemberStatus::left:
        return true;
      default:
        return false;
    }
  }

  bool handleJoinIntent(const Join& m) {
    clock.witness(m.ltime);
    auto it = members.find(m.node);
    if (it == members.end()) return upsertIntent(m.node, MessageType::join, m.ltime);
    State& st = it->second;
    if (m.ltime <= st.statusLTime) return false;
    st.statusLTime = m.ltime;
    if (st.member.status == MemberStatus::leaving) st.member.status = MemberStatus::alive;
    return true;
  }

  bool handleUserEvent(const UserEventMessage& m) {
    eventClock.witness(m.ltime);
    if (m.ltime < eventMinTime) return false;
    const LamportTime now = eventClock.time();
    const auto n = static_cast<LamportTime>(eventBuffer.size());
    if (now > n && m.ltime < now - n) {
      log->warn("received old event name={} ltime={} current={}", m.name, m.ltime, now);
      return false;
    }
    auto& slot = eventBuffer[m.ltime % n];
    if (slot && slot->ltime == m.ltime) {
      for (const auto& prev : slot->events) {
        if (prev.name == m.name && prev.payload == m.payload) return false;  // seen already
      }
    } else {
      slot = UserEvents{m.ltime, {}};
    }
    slot->events.push_back(UserEvent{m.name, m.payload});
    deliver(UserEventDelivery{m.ltime, m.name, m.payload, m.cc});
    return true;
  }

  // ---- coalescing (serf's user_coalesce.go) ---------------------------------------------------

  void deliver(UserEventDelivery e) {
    if (!e.coalesce || config.userCoalescePeriod <= Duration::zero()) {
      if (onEvent) onEvent(e);
      return;
    }
    // Per name only the latest Lamport time survives; events of the same time are all kept.
    Coalesced& c = coalescing[e.name];
    if (c.events.empty() || c.ltime < e.ltime) {
      eventsCoalesced.inc(static_cast<double>(c.events.size()));
      c.ltime = e.ltime;
      c.events.assign(1, std::move(e));
    } else if (c.ltime == e.ltime) {
      c.events.push_back(std::move(e));
    } else {
      eventsCoalesced.inc();
    }
    if (coalesceTimer == 0) {
      coalesceTimer = loop.runAfter(config.userCoalescePeriod, [w = weak()] {
        if (auto s = w.lock()) s->flushCoalesced();
      });
    }
    loop.cancel(quiescentTimer);
    const Duration quiet = config.userQuiescentPeriod > Duration::zero() ? config.userQuiescentPeriod
                                                                        : config.userCoalescePeriod;
    quiescentTimer = loop.runAfter(quiet, [w = weak()] {
      if (auto s = w.lock()) s->flushCoalesced();
    });
  }

  void flushCoalesced() {
    loop.cancel(coalesceTimer);
    loop.cancel(quiescentTimer);
    coalesceTimer = quiescentTimer = 0;
    auto batch = std::move(coalescing);
    coalescing.clear();
    for (auto& [name, c] : batch) {
      for (auto& e : c.events) {
        if (onEvent) onEvent(e);
      }
    }
  }

  // ---- queries (serf.go handleQuery, handleQueryResponse; query.go; event.go Respond) ----------

  bool handleQuery(const Query& q) {
    queryClock.witness(q.ltime);
    if (q.ltime < queryMinTime) return false;
    const LamportTime now = queryClock.time();
    const auto n = static_cast<LamportTime>(queryBuffer.size());
    if (now > n && q.ltime < now - n) {
      log->warn("received old query name={} ltime={} current={}", q.name, q.ltime, now);
      return false;
    }
    auto& slot = queryBuffer[q.ltime % n];
    if (slot && slot->ltime == q.ltime) {
      if (std::find(slot->ids.begin(), slot->ids.end(), q.id) != slot->ids.end()) return false;
    } else {
      slot = SeenQueries{q.ltime, {}};
    }
    slot->ids.push_back(q.id);
    const bool rebroadcast = (q.flags & kQueryFlagNoBroadcast) == 0;
    // Not for us: still passed on, since this is the first time we saw it.
    if (!filtersMatch(q.filters, config.nodeName, config.tags, log.get())) return rebroadcast;
    queriesHandled.inc();

    auto source = addressFromWire(q.addr, q.port);
    if (!source) {
      log->warn("query name={} from={} has no usable reply address: {}", q.name, q.sourceNode, source.error().message());
      return rebroadcast;
    }
    if (q.flags & kQueryFlagAck) {
      QueryResponse ack{q.ltime, q.id, config.nodeName, kQueryFlagAck, {}};
      if (auto r = sendResponse(*source, q.sourceNode, q.relayFactor, ack); !r) log->error("failed to send ack: {}", r.error().message());
    }
    IncomingQuery in;
    in.ltime = q.ltime;
    in.id = q.id;
    in.name = q.name;
    in.payload = q.payload;
    in.sourceNode = q.sourceNode;
    in.source = *source;
    in.deadline = loop.now() + std::chrono::duration_cast<Duration>(q.timeout);
    in.relayFactor = q.relayFactor;
    if (std::string_view(q.name).starts_with(kInternalPrefix)) {
      handleInternalQuery(in);
    } else if (queryHandler) {
      queryHandler(in);
    }
    return rebroadcast;
  }

  // Sends an ack or answer to the asker (straight to us when we asked), then relays it.
  Result<void> sendResponse(const NodeAddress& to, const std::string& toName, std::uint8_t relayFactor,
                            const QueryResponse& resp) {
    std::string raw;
    encode(raw, MessageType::queryResponse, resp);
    if (raw.size() > config.queryResponseSizeLimit) {
      return Error(errc::too_large,
                   "response exceeds limit of " + std::to_string(config.queryResponseSizeLimit) + " bytes");
    }
    if (toName == config.nodeName && ml && to == ml->localNode().addr) {
      handleQueryResponse(resp);
      return {};
    }
    if (ml) ml->sendToAddress(to, toName, raw);
    relayResponse(relayFactor, to, toName, raw);
    return {};
  }

  void relayResponse(std::uint8_t relayFactor, const NodeAddress& to, const std::string& toName,
                     std::string_view inner) {
    if (relayFactor == 0 || !ml) return;
    std::vector<const Member*> candidates;
    for (const auto& [name, st] : members) {
      if (st.member.status == MemberStatus::alive && st.member.pmax >= 5 && name != config.nodeName) {
        candidates.push_back(&st.member);
      }
    }
    // serf relays only when there are enough members besides the asker's direct path.
    if (members.size() < std::size_t(relayFactor) + 1) return;
    std::string raw;
    encodeRelay(raw, RelayHeader{to.ip, to.port, "", toName}, inner);
    if (raw.size() > config.queryResponseSizeLimit) {
      log->warn("relayed response exceeds limit of {} bytes", config.queryResponseSizeLimit);
      return;
    }
    std::shuffle(candidates.begin(), candidates.end(), rng);
    if (candidates.size() > relayFactor) candidates.resize(relayFactor);
    for (const Member* m : candidates) ml->sendToAddress(m->addr, m->name, raw);
  }

  void handleRelay(std::string_view body) {
    auto r = decodeRelay(body);
    if (!r) {
      log->warn("undecodable relay: {}", r.error().message());
      return;
    }
    auto to = addressFromWire(r->first.destIp, r->first.destPort);
    if (!to) {
      log->warn("relay with a bad destination: {}", to.error().message());
      return;
    }
    // A relay carries one response to one address: anything else is not ours to forward.
    if (r->second.empty() || static_cast<MessageType>(static_cast<std::uint8_t>(r->second[0])) != MessageType::queryResponse) {
      log->warn("relay of a message that is not a query response refused");
      return;
    }
    relaysForwarded.inc();
    if (r->first.destName == config.nodeName && ml && *to == ml->localNode().addr) {
      if (auto m = decodeQueryResponse(r->second.substr(1))) handleQueryResponse(*m);
      return;
    }
    if (ml) ml->sendToAddress(*to, r->first.destName, r->second);
  }

  void handleQueryResponse(const QueryResponse& resp) {
    auto it = pending.find({resp.ltime, resp.id});
    if (it == pending.end()) {
      log->debug("reply for a query not running ltime={} id={} from={}", resp.ltime, resp.id, resp.from);
      return;
    }
    Pending& p = it->second;
    if (resp.flags & kQueryFlagAck) {
      if (!p.acks.insert(resp.from).second) return;
      queryAcks.inc();
      if (p.callbacks.onAck) p.callbacks.onAck(resp.from);
    } else {
      if (!p.responses.insert(resp.from).second) return;
      queryAnswers.inc();
      if (p.callbacks.onResponse) p.callbacks.onResponse(resp.from, resp.payload);
    }
    // A callback may have finished it already; look it up again.
    it = pending.find({resp.ltime, resp.id});
    if (it == pending.end()) return;
    const Pending& q = it->second;
    if (q.expected.empty()) return;
    for (const auto& name : q.expected) {
      if (!q.responses.contains(name)) return;
      if (q.wantAcks && !q.acks.contains(name)) return;
    }
    finishQuery(resp.ltime, resp.id);
  }

  void finishQuery(LamportTime ltime, std::uint32_t id) {
    auto it = pending.find({ltime, id});
    if (it == pending.end()) return;
    loop.cancel(it->second.timer);
    auto done = std::move(it->second.callbacks.onDone);
    pending.erase(it);
    if (done) done();
  }

  Result<void> respond(const IncomingQuery& q, std::string_view payload) {
    if (*q.responded) return Error(errc::malformed, "response already sent");
    if (loop.now() > q.deadline) return Error(errc::timeout, "response is past the deadline");
    QueryResponse resp{q.ltime, q.id, config.nodeName, 0, std::string(payload)};
    if (auto r = sendResponse(q.source, q.sourceNode, q.relayFactor, resp); !r) return r;
    *q.responded = true;
    return {};
  }

  // ---- internal queries (internal_query.go) ----------------------------------------------------

  void handleInternalQuery(const IncomingQuery& q) {
    const std::string_view what = std::string_view(q.name).substr(kInternalPrefix.size());
    if (what == "ping") return;  // the ack is the answer
    if (what == "conflict") return handleConflict(q);
    if (what == "install-key") return handleKeyQuery(q, KeyOp::install);
    if (what == "use-key") return handleKeyQuery(q, KeyOp::use);
    if (what == "remove-key") return handleKeyQuery(q, KeyOp::remove);
    if (what == "list-keys") return handleKeyQuery(q, KeyOp::list);
    log->warn("unhandled internal query name={}", q.name);
  }

  void handleConflict(const IncomingQuery& q) {
    if (q.payload == config.nodeName) return;
    std::string out;
    auto it = members.find(q.payload);
    if (it == members.end()) {
      encodeConflictResponse(out, nullptr);
    } else {
      const Member& m = it->second.member;
      MemberRecord rec{m.name, m.addr.ip, m.addr.port, m.tags, static_cast<int>(m.status),
                       m.pmin, m.pmax, m.pcur, m.dmin, m.dmax, m.dcur};
      encodeConflictResponse(out, &rec);
    }
    if (auto r = respond(q, out); !r) log->warn("conflict query answer failed: {}", r.error().message());
  }

  void handleKeyQuery(const IncomingQuery& q, KeyOp op) {
    KeyResponse resp;
    Keyring* ring = ml ? ml->keyring() : nullptr;
    const bool enabled = ring && !ring->empty();
    if (op == KeyOp::list) {
      if (!enabled) {
        resp.message = "Keyring is empty (encryption not enabled)";
      } else {
        for (const auto& k : ring->keys()) resp.keys.push_back(base64Encode(k));
        resp.primaryKey = base64Encode(ring->primary());
        resp.result = true;
      }
      return sendKeyResponse(q, resp, true);
    }
    KeyRequest req;
    if (q.payload.empty() || static_cast<MessageType>(static_cast<std::uint8_t>(q.payload[0])) != MessageType::keyRequest) {
      log->error("key query {} without a key request", keyOpName(op));
      return sendKeyResponse(q, resp, false);
    }
    if (auto r = decodeKeyRequest(std::string_view(q.payload).substr(1))) {
      req = std::move(*r);
    } else {
      log->error("undecodable key request: {}", r.error().message());
      return sendKeyResponse(q, resp, false);
    }
    if (!enabled) {
      resp.message = "No keyring to modify (encryption not enabled)";
      log->error("{} refused: no keyring to modify (encryption not enabled)", keyOpName(op));
      return sendKeyResponse(q, resp, false);
    }
    log->info("received {} query from={}", keyOpName(op), q.sourceNode);
    Result<void> r = op == KeyOp::install ? ring->addKey(req.key)
                     : op == KeyOp::use   ? ring->useKey(req.key)
                                          : ring->removeKey(req.key);
    if (!r) {
      resp.message = r.error().message();
      log->error("{} failed: {}", keyOpName(op), resp.message);
      return sendKeyResponse(q, resp, false);
    }
    if (config.onKeyringChange) {
      if (auto p = config.onKeyringChange(*ring); !p) {
        resp.message = p.error().message();
        log->error("failed to write keyring file: {}", resp.message);
        return sendKeyResponse(q, resp, false);
      }
    }
    resp.result = true;
    sendKeyResponse(q, resp, false);
  }

  // A list of keys is cut down until the answer fits the response size limit, as serf does.
  void sendKeyResponse(const IncomingQuery& q, KeyResponse& resp, bool list) {
    const std::size_t actual = resp.keys.size();
    const std::size_t maxKeys = config.queryResponseSizeLimit / kMinEncodedKeyLength;
    if (list && resp.keys.size() > maxKeys) resp.keys.resize(maxKeys);
    for (;;) {
      std::string payload;
      encode(payload, resp);
      QueryResponse probe{q.ltime, q.id, config.nodeName, 0, payload};
      std::string raw;
      encode(raw, MessageType::queryResponse, probe);
      if (raw.size() <= config.queryResponseSizeLimit || !list || resp.keys.empty()) {
        if (list && resp.keys.size() < actual) log->warn("{}", resp.message);
        if (auto r = respond(q, payload); !r) log->error("failed to respond to key query: {}", r.error().message());
        return;
      }
      resp.keys.pop_back();
      resp.message = "truncated key list response, showing first " + std::to_string(resp.keys.size()) + " of " +
                     std::to_string(actual) + " keys";
    }
  }

  Duration defaultQueryTimeout() const {
    const double n = ml ? double(ml->numLive()) : 1.0;
    const auto mult = static_cast<long>(std::ceil(std::log10(n + 1)));
    const Duration gossip = ml ? ml->config().gossipInterval : std::chrono::milliseconds(200);
    return gossip * config.queryTimeoutMult * std::max(1L, mult);
  }

  void broadcastJoin(LamportTime ltime) {
    Join j{ltime, config.nodeName};
    clock.witness(ltime);
    handleJoinIntent(j);
    std::string msg;
    encode(msg, j);
    queue(intents, std::move(msg));
    reportClocks();
  }

  // ---- reconnect (serf.go reconnect) ------------------------------------------------------------

  void scheduleReconnect() {
    if (config.reconnectInterval <= Duration::zero()) return;
    reconnectTimer = loop.runAfter(config.reconnectInterval, [w = weak()] {
      if (auto s = w.lock()) {
        s->reconnect();
        s->scheduleReconnect();
      }
    });
  }

  void reconnect() {
    if (failed.empty() || leaving || !ml) return;
    const double alive = std::max<double>(1.0, double(members.size() - failed.size() - left.size()));
    if (std::uniform_real_distribution<double>(0, 1)(rng) > double(failed.size()) / alive) return;
    const std::string& name = failed[std::uniform_int_distribution<std::size_t>(0, failed.size() - 1)(rng)];
    auto it = members.find(name);
    if (it == members.end()) return;
    reconnects.inc();
    log->debug("reconnect attempt name={} addr={}", name, it->second.member.addr.toString());
    ml->join({it->second.member.addr}, [](int, Result<void>) {});
  }

  // ---- reaping ---------------------------------------------------------------------------------

  void scheduleReap() {
    reapTimer = loop.runAfter(config.reapInterval, [w = weak()] {
      if (auto s = w.lock()) {
        s->reap();
        s->scheduleReap();
      }
    });
  }

  void reapList(std::vector<std::string>& names, Duration timeout) {
    const TimePoint now = loop.now();
    for (auto it = names.begin(); it != names.end();) {
      auto m = members.find(*it);
      if (m == members.end()) {
        it = names.erase(it);
        continue;
      }
      if (now - m->second.leaveTime <= timeout) {
        ++it;
        continue;
      }
      Member gone = m->second.member;
      members.erase(m);
      it = names.erase(it);
      log->info("reaped member name={} status={}", gone.name, memberStatusName(gone.status));
      emit(MemberEvent::Type::reap, gone);
    }
  }

  void reap() {
    reapList(failed, config.reconnectTimeout);
    reapList(left, config.tombstoneTimeout);
    const TimePoint now = loop.now();
    for (auto it = recentIntents.begin(); it != recentIntents.end();) {
      it = now - it->second.when > config.recentIntentTimeout ? recentIntents.erase(it) : std::next(it);
    }
  }
};

Result<std::unique_ptr<Serf>> Serf::create(SerfConfig config, Config mlConfig, EventLoop& loop, Transport& transport,
                                           metrics::Registry& registry, MemberCallback onMember,
                                           UserEventCallback onEvent) {
  if (config.protocolVersion < kSerfProtocolMin || config.protocolVersion > kSerfProtocolMax) {
    return Error(errc::incompatible_version, "serf protocol version " + std::to_string(config.protocolVersion) +
                                                 " outside 2-5");
  }
  if (encodeTags(config.tags).size() > kMetaMaxSize) return Error(errc::too_large, "tags longer than 512 bytes encoded");
  if (config.eventBuffer == 0) return Error(errc::malformed, "event buffer must hold at least one event");
  if (config.queryBuffer == 0) return Error(errc::malformed, "query buffer must hold at least one query");
  auto impl = std::make_shared<Impl>(std::move(config), loop, registry, std::move(onMember), std::move(onEvent));
  if (const auto& r = impl->config.restored) {
    impl->clock.restore(r->clock);
    impl->eventClock.restore(r->eventClock);
    impl->queryClock.restore(r->queryClock);
    // What we saw before the restart is not delivered again when push-pull replays it.
    impl->eventMinTime = r->eventClock;
    impl->queryMinTime = r->queryClock;
  }
  impl->reportedClocks = {impl->clock.time(), impl->eventClock.time(), impl->queryClock.time()};
  mlConfig.name = impl->config.nodeName;
  mlConfig.delegateProtocolMin = kSerfProtocolMin;
  mlConfig.delegateProtocolMax = kSerfProtocolMax;
  mlConfig.delegateProtocolVersion = impl->config.protocolVersion;
  auto ml = Memberlist::create(std::move(mlConfig), loop, transport,
                               Delegates{impl.get(), impl.get(), impl.get()}, registry);
  if (!ml) return ml.error();
  impl->ml = std::move(*ml);
  impl->scheduleReap();
  impl->scheduleReconnect();
  return std::unique_ptr<Serf>(new Serf(std::move(impl)));
}

Serf::~Serf() {
  impl_->loop.cancel(impl_->reapTimer);
  impl_->loop.cancel(impl_->reconnectTimer);
  impl_->loop.cancel(impl_->coalesceTimer);
  impl_->loop.cancel(impl_->quiescentTimer);
  for (auto& [key, p] : impl_->pending) impl_->loop.cancel(p.timer);
  impl_->pending.clear();
  if (impl_->ml) impl_->ml->shutdown();
}

void Serf::join(const std::vector<NodeAddress>& seeds, bool ignoreOldEvents,
                std::function<void(int, Result<void>)> done) {
  Impl& s = *impl_;
  s.eventJoinIgnore = ignoreOldEvents;
  s.ml->join(seeds, [w = s.weak(), done = std::move(done)](int contacted, Result<void> r) {
    auto self = w.lock();
    if (!self) return done(contacted, Error(errc::shutdown, "serf is shut down"));
    self->eventJoinIgnore = false;
    if (contacted > 0) self->broadcastJoin(self->clock.time());
    done(contacted, std::move(r));
  });
}

void Serf::leave(std::function<void(Result<void>)> done) {
  Impl& s = *impl_;
  if (s.leaving) return done({});
  s.leaving = true;
  Leave msg{s.clock.time(), s.config.nodeName, false};
  s.clock.increment();
  s.handleLeaveIntent(msg);
  s.reportClocks();
  auto finish = [w = s.weak(), done](bool) {
    auto self = w.lock();
    if (!self) return done(Error(errc::shutdown, "serf is shut down"));
    self->ml->leave(self->config.broadcastTimeout, [w, done](Result<void> r) {
      auto self = w.lock();
      if (!self) return done(std::move(r));
      // Give the intent and memberlist's dead message time to spread before we go quiet.
      self->loop.runAfter(self->config.leavePropagateDelay, [done, r] { done(r); });
    });
  };
  bool anyAlive = false;
  for (const auto& [name, st] : s.members) {
    anyAlive |= name != s.config.nodeName && st.member.status == MemberStatus::alive;
  }
  if (!anyAlive) return finish(true);
  auto fired = std::make_shared<bool>(false);
  std::string encoded;
  encode(encoded, msg);
  s.queue(s.intents, std::move(encoded), [fired, finish] {
    if (*fired) return;
    *fired = true;
    finish(true);
  });
  s.loop.runAfter(s.config.broadcastTimeout, [fired, finish] {
    if (*fired) return;
    *fired = true;
    finish(false);
  });
}

Result<void> Serf::userEvent(const std::string& name, const std::string& payload, bool coalesce) {
  Impl& s = *impl_;
  if (name.size() + payload.size() > s.config.userEventSizeLimit) {
    return Error(errc::too_large, "user event exceeds the size limit of " + std::to_string(s.config.userEventSizeLimit) +
                                      " bytes (name and payload: " + std::to_string(name.size() + payload.size()) + ")");
  }
  UserEventMessage m{s.eventClock.time(), name, payload, coalesce};
  s.eventClock.increment();
  std::string raw;
  encode(raw, m);
  if (raw.size() > s.config.userEventSizeLimit + 64) {
    return Error(errc::too_large, "encoded user event exceeds the size limit");
  }
  s.handleUserEvent(m);
  s.queue(s.events, std::move(raw));
  s.reportClocks();
  return {};
}

Result<void> Serf::setTags(std::map<std::string, std::string> tags) {
  Impl& s = *impl_;
  if (encodeTags(tags).size() > kMetaMaxSize) return Error(errc::too_large, "tags longer than 512 bytes encoded");
  s.config.tags = std::move(tags);
  return s.ml->updateNode();
}

std::vector<Member> Serf::members() const {
  std::vector<Member> out;
  for (const auto& [name, st] : impl_->members) out.push_back(st.member);
  return out;
}

std::optional<Member> Serf::member(const std::string& name) const {
  auto it = impl_->members.find(name);
  if (it == impl_->members.end()) return std::nullopt;
  return it->second.member;
}

Member Serf::localMember() const {
  auto it = impl_->members.find(impl_->config.nodeName);
  return it == impl_->members.end() ? Member{} : it->second.member;
}

Result<QueryStarted> Serf::query(const std::string& name, const std::string& payload, const QueryParams& params,
                                 QueryCallbacks callbacks) {
  Impl& s = *impl_;
  if (s.config.protocolVersion < kQueryMinProtocol) {
    return Error(errc::incompatible_version, "queries need serf protocol 4 or later");
  }
  if (s.leaving) return Error(errc::shutdown, "leaving the cluster");
  const Duration timeout = params.timeout > Duration::zero() ? params.timeout : s.defaultQueryTimeout();
  Query q;
  q.ltime = s.queryClock.time();
  q.id = static_cast<std::uint32_t>(std::uniform_int_distribution<std::uint32_t>(0, 0x7fffffff)(s.rng));
  const Node local = s.ml->localNode();
  q.addr = local.addr.ip;
  q.port = local.addr.port;
  q.sourceNode = local.name;
  if (!params.filterNodes.empty()) q.filters.push_back(encodeNodeFilter(params.filterNodes));
  for (const auto& [tag, expr] : params.filterTags) {
    if (expr.size() > kMaxFilterExprLength) {
      return Error(errc::too_large, "tag filter expression longer than " + std::to_string(kMaxFilterExprLength));
    }
    try {
      std::regex check(expr, std::regex::ECMAScript);
    } catch (const std::exception&) {
      return Error(errc::malformed, "tag filter " + tag + ": bad regular expression: " + expr);
    }
    q.filters.push_back(encodeTagFilter(tag, expr));
  }
  if (params.requestAck) q.flags |= kQueryFlagAck;
  q.relayFactor = params.relayFactor;
  q.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
  q.name = name;
  q.payload = payload;
  std::string raw;
  encode(raw, q);
  if (raw.size() > s.config.querySizeLimit) {
    return Error(errc::too_large, "query exceeds limit of " + std::to_string(s.config.querySizeLimit) +
                                      " bytes (encoded: " + std::to_string(raw.size()) + ")");
  }
  QueryStarted started{q.ltime, q.id, timeout, {}};
  Impl::Pending p;
  p.callbacks = std::move(callbacks);
  p.wantAcks = params.requestAck;
  for (const auto& [mname, st] : s.members) {
    if (st.member.status != MemberStatus::alive) continue;
    const auto& tags = mname == s.config.nodeName ? s.config.tags : st.member.tags;
    if (filtersMatch(q.filters, mname, tags, nullptr)) {
      p.expected.insert(mname);
      started.expected.push_back(mname);
    }
  }
  const bool nobody = p.expected.empty();
  p.timer = s.loop.runAfter(timeout, [w = s.weak(), key = std::pair{q.ltime, q.id}] {
    if (auto self = w.lock()) self->finishQuery(key.first, key.second);
  });
  s.pending.emplace(std::pair{q.ltime, q.id}, std::move(p));
  s.queriesStarted.inc();
  // Answered by ourselves first (when we match), then spread.
  s.handleQuery(q);
  s.queue(s.queryQueue, std::move(raw));
  s.reportClocks();
  if (nobody) {
    // The filters match no member we know: done now rather than at the deadline.
    s.loop.post([w = s.weak(), key = std::pair{q.ltime, q.id}] {
      if (auto self = w.lock()) self->finishQuery(key.first, key.second);
    });
  }
  return started;
}

void Serf::setQueryHandler(QueryCallback handler) { impl_->queryHandler = std::move(handler); }
void Serf::setExtensionHandler(std::function<void(std::string_view)> handler) {
  impl_->extensionHandler = std::move(handler);
}

Result<void> Serf::respond(const IncomingQuery& q, std::string_view payload) { return impl_->respond(q, payload); }

Duration Serf::defaultQueryTimeout() const { return impl_->defaultQueryTimeout(); }

void Serf::keyOperation(KeyOp op, const std::string& keyBase64, std::uint8_t relayFactor,
                        std::function<void(Result<KeyOpResult>)> done) {
  Impl& s = *impl_;
  std::string rawKey;
  if (op != KeyOp::list) {
    auto k = base64Decode(keyBase64);
    if (!k) return done(Error(errc::bad_key, "key is not valid base64"));
    rawKey = std::move(*k);
  }
  std::string payload;
  encode(payload, KeyRequest{rawKey});
  auto result = std::make_shared<KeyOpResult>();
  result->numNodes = static_cast<int>(s.ml->numLive());
  QueryParams params;
  params.relayFactor = relayFactor;
  QueryCallbacks cb;
  cb.onResponse = [result](const std::string& from, const std::string& p) {
    KeyOpResult& r = *result;
    ++r.numResp;
    if (p.empty() || static_cast<MessageType>(static_cast<std::uint8_t>(p[0])) != MessageType::keyResponse) {
      r.messages[from] = "Invalid key query response type";
      ++r.numErr;
      return;
    }
    auto kr = decodeKeyResponse(std::string_view(p).substr(1));
    if (!kr) {
      r.messages[from] = "Failed to decode key query response: " + kr.error().message();
      ++r.numErr;
      return;
    }
    if (!kr->result) {
      r.messages[from] = kr->message;
      ++r.numErr;
    }
    if (kr->result && !kr->message.empty()) r.messages[from] = kr->message;
    for (const auto& k : kr->keys) ++r.keys[k];
    ++r.primaryKeys[kr->primaryKey];
  };
  cb.onDone = [result, done] {
    KeyOpResult& r = *result;
    if (r.numErr != 0) {
      r.error = std::to_string(r.numErr) + "/" + std::to_string(r.numNodes) + " nodes reported failure";
    } else if (r.numResp != r.numNodes) {
      r.error = std::to_string(r.numResp) + "/" + std::to_string(r.numNodes) + " nodes reported success";
    }
    done(std::move(r));
  };
  auto started = query(std::string(kInternalPrefix) + keyOpName(op), payload, params, std::move(cb));
  if (!started) done(started.error());
}

LamportTime Serf::queryClock() const { return impl_->queryClock.time(); }
LamportTime Serf::clock() const { return impl_->clock.time(); }
LamportTime Serf::eventClock() const { return impl_->eventClock.time(); }
Memberlist& Serf::memberlist() { return *impl_->ml; }

}  // namespace mesh::gossip::serf
