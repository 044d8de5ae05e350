#include "gossip/serf/serf.h"

#include <algorithm>
#include <optional>

#include "common/log.h"
#include "common/metrics.h"

#include <random>
#include "gossip/broadcast_queue.h"
#include "gossip/errc.h"
#include "gossip/serf/messages.h"

namespace mesh::gossip::serf {
namespace {

// serf's protocol range (serf 0.9.4: ProtocolVersionMin 2, ProtocolVersionMax 5).
constexpr std::uint8_t kSerfProtocolMin = 2;
constexpr std::uint8_t kSerfProtocolMax = 5;

}  // namespace

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
        rng(std::random_device{}()),
        log(log::get("serf")),
        onMember(std::move(m)),
        onEvent(std::move(e)),
        intents(config.retransmitMult, [this] { return ml ? ml->numLive() : 1; }),
        events(config.retransmitMult, [this] { return ml ? ml->numLive() : 1; }),
        eventBuffer(config.eventBuffer) {
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

  SerfConfig config;
  EventLoop& loop;
  metrics::Registry& registry;
  metrics::Counter& reconnects;
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
  std::vector<std::optional<UserEvents>> eventBuffer;
  LamportTime eventMinTime = 0;
  bool eventJoinIgnore = false;
  bool leaving = false;
  EventLoop::TimerId reapTimer = 0;
  std::unique_ptr<Memberlist> ml;  // last: destroyed first, while the delegate is still whole

  std::weak_ptr<Impl> weak() { return weak_from_this(); }

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
      default:
        // Queries, responses and relays arrive with the next step of issue 4; until then they
        // are ignored (and counted by memberlist as user messages).
        log->debug("serf message type={} not handled yet", messageTypeName(static_cast<std::uint8_t>(type)));
        break;
    }
    if (rebroadcast) queue(*q, std::string(buf));
  }

  std::vector<std::string> getBroadcasts(std::size_t overhead, std::size_t limit) override {
    std::vector<std::string> out = intents.get(overhead, limit);
    std::size_t used = 0;
    for (const auto& m : out) used += m.size() + overhead;
    if (limit > used) {
      for (auto& m : events.get(overhead, limit - used)) out.push_back(std::move(m));
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
    if (onEvent) onEvent(UserEventDelivery{m.ltime, m.name, m.payload, m.cc});
    return true;
  }

  void broadcastJoin(LamportTime ltime) {
    Join j{ltime, config.nodeName};
    clock.witness(ltime);
    handleJoinIntent(j);
    std::string msg;
    encode(msg, j);
    queue(intents, std::move(msg));
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
  auto impl = std::make_shared<Impl>(std::move(config), loop, registry, std::move(onMember), std::move(onEvent));
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

Member Serf::localMember() const {
  auto it = impl_->members.find(impl_->config.nodeName);
  return it == impl_->members.end() ? Member{} : it->second.member;
}

LamportTime Serf::clock() const { return impl_->clock.time(); }
LamportTime Serf::eventClock() const { return impl_->eventClock.time(); }
Memberlist& Serf::memberlist() { return *impl_->ml; }

}  // namespace mesh::gossip::serf
