#include "gossip/memberlist.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "common/log.h"
#include "gossip/broadcast_queue.h"
#include "gossip/errc.h"
#include "gossip/lifeguard.h"
#include "gossip/member_table.h"
#include "gossip/packet.h"
#include "gossip/probe.h"

namespace mesh::gossip {
namespace {

// Sizes memberlist assumes when packing broadcasts into a compound (net.go).
constexpr std::size_t kCompoundHeaderOverhead = 2;
constexpr std::size_t kCompoundOverhead = 2;
constexpr std::size_t kUserMsgOverhead = 1;
// Compound and compress may nest; a hostile packet must not recurse without end.
constexpr int kMaxNesting = 4;
// Per-source rate buckets kept at once; beyond this the table is reset (a spoofed-source flood
// must not grow it without bound).
constexpr std::size_t kMaxBuckets = 4096;

bool deadOrLeft(NodeState s) { return s == NodeState::dead || s == NodeState::left; }

// One TCP exchange: a stream with a deadline, reading whole memberlist messages.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(EventLoop& loop, std::unique_ptr<Stream> s, const CodecSettings& codec, GossipMetrics& m,
       TimePoint deadline)
      : loop_(loop), stream_(std::move(s)), reader_(codec), metrics_(m), deadline_(deadline) {}
  ~Conn() { close(); }

  // Arms the deadline (separate from the constructor: it needs shared_from_this()).
  void arm() {
    std::weak_ptr<Conn> weak = shared_from_this();
    timer_ = loop_.runAt(deadline_, [weak] {
      if (auto c = weak.lock()) {
        c->timedOut_ = true;
        c->close();
      }
    });
  }

  void send(std::string bytes, std::function<void(Result<void>)> cb) {
    metrics_.tcpBytesOut.inc(bytes.size());
    stream_->write(std::move(bytes), [self = shared_from_this(), cb = std::move(cb)](Result<void> r) {
      if (!r && self->timedOut_) r = Error(errc::timeout, "stream deadline passed");
      cb(std::move(r));
    });
  }

  // Reads until one whole message (decrypted, decompressed) has arrived.
  void readMessage(std::function<void(Result<std::string>)> cb) {
    stream_->read([self = shared_from_this(), cb = std::move(cb)](Result<std::string> r) mutable {
      if (!r) {
        if (self->timedOut_) return cb(Error(errc::timeout, "stream deadline passed"));
        return cb(r.error());
      }
      if (r->empty()) return cb(Error(self->received_ ? errc::truncated : errc::closed,
                                      self->received_ ? "stream ended inside a message" : "EOF"));
      self->received_ = true;
      self->metrics_.tcpBytesIn.inc(r->size());
      auto msg = self->reader_.feed(*r);
      if (!msg) return cb(msg.error());
      if (*msg) return cb(std::move(**msg));
      self->readMessage(std::move(cb));
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    loop_.cancel(timer_);
    stream_->close();
  }
  NodeAddress remote() const { return stream_->remote(); }

 private:
  EventLoop& loop_;
  std::unique_ptr<Stream> stream_;
  StreamReader reader_;
  GossipMetrics& metrics_;
  EventLoop::TimerId timer_ = 0;
  TimePoint deadline_;
  bool timedOut_ = false;
  bool closed_ = false;
  bool received_ = false;
};

}  // namespace

struct Memberlist::Impl : std::enable_shared_from_this<Memberlist::Impl> {
  Impl(Config cfg, EventLoop& l, Transport& t, Delegates d, metrics::Registry& r)
      : config(std::move(cfg)),
        loop(l),
        transport(t),
        del(d),
        m(r),
        log(log::get("gossip")),
        rng(config.randomSeed ? config.randomSeed : std::random_device{}()),
        awareness(config.awarenessMaxMultiplier),
        broadcasts(config.retransmitMult, [this] { return nodes.size(); }) {
    counts.fill(0);
    codec.compress = config.enableCompression;
    codec.keyring = config.keyring.get();
    codec.verifyIncoming = config.gossipVerifyIncoming;
    codec.verifyOutgoing = config.gossipVerifyOutgoing;
    codec.encryptionVersion = config.encryptionVersion();
    codec.label = config.label;
    codec.skipInboundLabelCheck = config.skipInboundLabelCheck;
  }

  Config config;
  EventLoop& loop;
  Transport& transport;
  Delegates del;
  Memberlist::RequestHandler requestHandler;
  GossipMetrics m;
  std::shared_ptr<spdlog::logger> log;
  CodecSettings codec;
  std::mt19937_64 rng;

  MemberTable nodes;  // in probe order
  std::array<std::size_t, 4> counts{};  // members by state, kept as states change
  struct SuspicionTimer {
    Suspicion suspicion;
    TimePoint changeTime;
    EventLoop::TimerId timer = 0;
  };
  std::unordered_map<std::string, std::unique_ptr<SuspicionTimer>> nodeTimers;
  std::size_t probeIndex = 0;
  std::uint32_t seqNo = 0;
  std::uint32_t incarnation = 0;
  Awareness awareness;
  BroadcastQueue broadcasts;
  bool leaving = false;
  bool down = false;
  int pushPullsIn = 0;

  struct AckHandler {
    std::function<void(std::string_view payload, TimePoint at)> onAck;
    std::function<void()> onNack;
    EventLoop::TimerId timer = 0;
  };
  std::unordered_map<std::uint32_t, AckHandler> ackHandlers;
  EventLoop::TimerId probeTimer = 0, gossipTimer = 0, pushPullTimer = 0, reconnectTimer = 0;

  struct Bucket {
    double tokens;
    TimePoint last;
  };
  std::unordered_map<std::string, Bucket> buckets;

  // ------------------------------------------------------------------------------------------
  // Small helpers.

  std::weak_ptr<Impl> weak() { return weak_from_this(); }
  std::uint32_t nextSeqNo() { return ++seqNo; }
  std::uint32_t nextIncarnation() { return ++incarnation; }

  std::size_t randomOffset(std::size_t n) {
    if (n == 0) return 0;
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  }

  Duration stagger(Duration interval) {
    if (interval <= Duration::zero()) return Duration::zero();
    return Duration(std::uniform_int_distribution<std::int64_t>(0, interval.count() - 1)(rng));
  }

  // Up to k distinct random members that pass the filter (memberlist's kRandomNodes: 3n tries).
  template <typename Filter>
  std::vector<Member*> kRandomNodes(std::size_t k, Filter&& skip) {
    std::vector<Member*> out;
    const std::size_t n = nodes.size();
    for (std::size_t i = 0; i < 3 * n && out.size() < k; ++i) {
      Member* node = &nodes.at(randomOffset(n));
      if (skip(*node)) continue;
      if (std::find(out.begin(), out.end(), node) != out.end()) continue;
      out.push_back(node);
    }
    return out;
  }

  Member* self() { return nodes.find(config.name); }

  static Node nodeFromVsn(const std::string& name, NodeAddress addr, const std::string& meta, std::string_view vsn) {
    Node n{name, std::move(addr), meta};
    if (vsn.size() >= 6) {
      n.pmin = vsn[0], n.pmax = vsn[1], n.pcur = vsn[2], n.dmin = vsn[3], n.dmax = vsn[4], n.dcur = vsn[5];
    }
    return n;
  }

  // Every state change goes through here, so the counts (and the gauges) stay exact without
  // walking the table.
  void setState(Member& n, NodeState s) {
    --counts[static_cast<int>(n.state)];
    n.state = s;
    ++counts[static_cast<int>(s)];
  }

  void updateMemberGauges() {
    m.membersAlive.set(double(counts[0]));
    m.membersSuspect.set(double(counts[1]));
    m.membersDead.set(double(counts[2]));
    m.membersLeft.set(double(counts[3]));
  }

  void applyAwareness(int delta) {
    if (awareness.applyDelta(delta)) m.healthScore.set(awareness.score());
  }

  // ------------------------------------------------------------------------------------------
  // Sending.

  // A packet to `to`; `node` (when known) decides the CRC. Applies compression, CRC, encryption.
  void rawSendPacket(const NodeAddress& to, const Member* node, std::string_view msg) {
    if (down) return;
    const bool crc = node && node->pmax >= 5;
    auto sealed = sealPacket(msg, crc, codec);
    if (!sealed) {
      log->error("failed to seal packet peer={} error={}", to.toString(), sealed.error().message());
      return;
    }
    if (auto r = transport.sendPacket(to, *sealed); !r) {
      log->debug("failed to send packet peer={} error={}", to.toString(), r.error().message());
      return;
    }
    m.udpPacketsOut.inc();
    m.udpBytesOut.inc(sealed->size());
  }

  void countSent(std::string_view msg) {
    if (!msg.empty()) m.sent(static_cast<std::uint8_t>(msg[0]), msg.size());
  }

  // One packet: the message alone, or several as a compound; each counted by its own type.
  void sendParts(const NodeAddress& to, const Member* node, const std::vector<std::string_view>& parts) {
    for (auto p : parts) countSent(p);
    if (parts.size() == 1) {
      rawSendPacket(to, node, parts[0]);
    } else {
      rawSendPacket(to, node, makeCompound(parts));
    }
  }

  // A stream message, counted by type, then wrapped (compression, encryption, label).
  Result<std::string> sealForStream(std::string_view msg) {
    countSent(msg);
    return sealStream(msg, codec);
  }

  // Broadcasts to piggyback, memberlist's and then the delegate's (user) ones.
  std::vector<std::string> getBroadcasts(std::size_t overhead, std::size_t limit) {
    std::vector<std::string> out = broadcasts.get(overhead, limit);
    m.broadcastQueue.set(double(broadcasts.size()));
    if (del.delegate) {
      std::size_t used = 0;
      for (const auto& b : out) used += b.size() + overhead;
      if (limit > used && limit - used > overhead + kUserMsgOverhead) {
        for (auto& u : del.delegate->getBroadcasts(overhead + kUserMsgOverhead, limit - used)) {
          std::string msg(1, static_cast<char>(MessageType::user));
          msg += u;
          out.push_back(std::move(msg));
        }
      }
    }
    return out;
  }

  // A message with whatever broadcasts fit piggybacked on it (memberlist's sendMsg).
  void sendMsg(const NodeAddress& to, const Member* node, std::string msg) {
    std::size_t avail = config.udpBufferSize;
    const std::size_t used = msg.size() + kCompoundHeaderOverhead +
                             (config.encryptionEnabled() && config.gossipVerifyOutgoing
                                  ? encryptOverhead(config.encryptionVersion())
                                  : 0);
    avail = avail > used ? avail - used : 0;
    auto extra = getBroadcasts(kCompoundOverhead, avail);
    std::vector<std::string_view> parts;
    parts.reserve(extra.size() + 1);
    parts.push_back(msg);
    for (const auto& e : extra) parts.push_back(e);
    sendParts(to, node, parts);
  }

  const Member* findNode(const std::string& name) const { return nodes.find(name); }

  void queueBroadcast(const std::string& node, std::string msg, std::function<void()> done = nullptr) {
    broadcasts.queue(node, std::move(msg), std::move(done));
    m.broadcastQueue.set(double(broadcasts.size()));
  }

  // ------------------------------------------------------------------------------------------
  // State changes (memberlist state.go aliveNode / suspectNode / deadNode / refute).

  void refute(Member& me, std::uint32_t accusedInc) {
    std::uint32_t inc = nextIncarnation();
    if (accusedInc >= inc) {
      incarnation = accusedInc + 1;
      inc = incarnation;
    }
    me.incarnation = inc;
    applyAwareness(1);
    m.refutations.inc();
    Alive a{inc, me.name.str(), std::string(me.ip.data(), me.ipLen), me.port, me.meta.str(), me.vsn()};
    std::string msg;
    encode(msg, a);
    queueBroadcast(me.name.str(), std::move(msg));
  }

  void aliveNode(const Alive& a, std::function<void()> notify, bool bootstrap) {
    if (leaving && a.node == config.name) return;
    if (a.vsn.size() >= 3) {
      const auto pmin = static_cast<std::uint8_t>(a.vsn[0]), pmax = static_cast<std::uint8_t>(a.vsn[1]);
      if (pmin == 0 || pmax == 0 || pmin > pmax) {
        log->warn("ignoring alive with bad protocol versions node={}", a.node);
        return;
      }
    }
    auto addr = NodeAddress::fromBytes(a.addr, a.port);
    if (!addr) {
      m.decodeError(static_cast<int>(errc::malformed));
      return;
    }
    if (a.node.empty()) return;
    if (a.meta.size() > kMetaMaxSize) {
      m.decodeError(static_cast<int>(errc::too_large));
      return;
    }
    Member* state = nodes.find(a.node);
    bool updatesNode = false;
    if (!state) {
      Member fresh;
      fresh.name = Interned(a.node);
      fresh.meta = Interned(a.meta);
      fresh.setAddr(*addr);
      fresh.setVsn(a.vsn);
      // A new node starts as dead, so that becoming alive below is a join.
      fresh.state = NodeState::dead;
      fresh.stateChange = loop.now();
      ++counts[static_cast<int>(NodeState::dead)];
      // Insert at a random position so that probe order stays random.
      const std::size_t at = nodes.insert(std::move(fresh));
      const std::size_t off = randomOffset(nodes.size());
      nodes.swap(off, at);
      state = &nodes.at(off);
    } else {
      if (!state->sameAddr(*addr)) {
        const bool canReclaim = config.deadNodeReclaimTime > Duration::zero() &&
                                loop.now() - state->stateChange > config.deadNodeReclaimTime;
        if (state->state == NodeState::left || (state->state == NodeState::dead && canReclaim)) {
          log->info("updating address of left or failed node={} from={} to={}", a.node,
                    state->addr().toString(), addr->toString());
          updatesNode = true;
        } else {
          log->error("conflicting address for node={} mine={} theirs={} state={}", a.node,
                     state->addr().toString(), addr->toString(), nodeStateName(state->state));
          if (del.conflict) del.conflict->notifyConflict(state->node(), nodeFromVsn(a.node, *addr, a.meta, a.vsn));
          return;
        }
      }
    }
    const bool isLocal = a.node == config.name;
    if (a.incarnation <= state->incarnation && !isLocal && !updatesNode) return;
    if (a.incarnation < state->incarnation && isLocal) return;

    // Any alive news ends a suspicion.
    if (auto t = nodeTimers.find(a.node); t != nodeTimers.end()) {
      loop.cancel(t->second->timer);
      nodeTimers.erase(t);
    }
    const NodeState oldState = state->state;
    const Interned oldMeta = state->meta;

    if (!bootstrap && isLocal) {
      // Someone announces us: refute unless it is exactly what we said.
      if (a.incarnation == state->incarnation && a.meta == state->meta.view() && a.vsn == state->vsn()) return;
      refute(*state, a.incarnation);
      log->warn("refuting an alive message for ourselves incarnation={}", a.incarnation);
    } else {
      std::string msg;
      encode(msg, a);
      queueBroadcast(a.node, std::move(msg), std::move(notify));
      state->setVsn(a.vsn);  // shorter Vsn: keep what we knew of the versions
      if (state->meta.view() != a.meta) state->meta = Interned(a.meta);
      state->setAddr(*addr);
      state->incarnation = a.incarnation;
      if (state->state != NodeState::alive) {
        setState(*state, NodeState::alive);
        state->stateChange = loop.now();
      }
    }
    updateMemberGauges();
    if (del.events) {
      if (deadOrLeft(oldState)) {
        del.events->notifyJoin(state->node());
      } else if (!(oldMeta == state->meta)) {
        del.events->notifyUpdate(state->node());
      }
    }
  }

  void suspectNode(const Suspect& s) {
    Member* found = nodes.find(s.node);
    if (!found) return;
    Member& state = *found;
    if (s.incarnation < state.incarnation) return;
    if (auto t = nodeTimers.find(s.node); t != nodeTimers.end()) {
      // Already suspected: this may be an independent confirmation (Lifeguard).
      SuspicionTimer& st = *t->second;
      if (st.suspicion.confirm(s.from, loop.now())) {
        std::string msg;
        encodeSuspect(msg, s);
        queueBroadcast(s.node, std::move(msg));
        loop.cancel(st.timer);
        armSuspicion(s.node, st);
      }
      return;
    }
    if (state.state != NodeState::alive) return;
    if (s.node == config.name) {
      refute(state, s.incarnation);
      log->warn("refuting a suspect message from={}", s.from);
      return;
    }
    std::string msg;
    encodeSuspect(msg, s);
    queueBroadcast(s.node, std::move(msg));
    m.suspicions.inc();
    state.incarnation = s.incarnation;
    setState(state, NodeState::suspect);
    const TimePoint changeTime = loop.now();
    state.stateChange = changeTime;

    int k = config.suspicionMult - 2;
    const std::size_t n = nodes.size();
    if (n < 2 || static_cast<int>(n - 2) < k) k = 0;
    const Duration min = suspicionTimeout(config.suspicionMult, n, config.probeInterval);
    const Duration max = min * config.suspicionMaxTimeoutMult;
    auto st = std::make_unique<SuspicionTimer>(SuspicionTimer{Suspicion(s.from, k, min, max, changeTime), changeTime});
    armSuspicion(s.node, *st);
    nodeTimers[s.node] = std::move(st);
    updateMemberGauges();
  }

  void armSuspicion(const std::string& name, SuspicionTimer& st) {
    st.timer = loop.runAt(st.suspicion.deadline(), [w = weak(), name, changeTime = st.changeTime] {
      auto self = w.lock();
      if (!self || self->down) return;
      self->suspicionExpired(name, changeTime);
    });
  }

  void suspicionExpired(const std::string& name, TimePoint changeTime) {
    auto t = nodeTimers.find(name);
    int confirmations = 0, expected = 0;
    if (t != nodeTimers.end()) {
      confirmations = t->second->suspicion.confirmations();
      expected = t->second->suspicion.expected();
    }
    Member* found = nodes.find(name);
    if (!found) return;
    Member& state = *found;
    if (state.state != NodeState::suspect || state.stateChange != changeTime) return;
    log->info("marking node={} as failed: suspect timeout reached confirmations={}/{}", name, confirmations, expected);
    deadNode(Dead{state.incarnation, name, config.name});
  }

  void deadNode(const Dead& d) {
    Member* found = nodes.find(d.node);
    if (!found) return;
    Member& state = *found;
    if (d.incarnation < state.incarnation) return;
    if (auto t = nodeTimers.find(d.node); t != nodeTimers.end()) {
      loop.cancel(t->second->timer);
      nodeTimers.erase(t);
    }
    if (deadOrLeft(state.state)) return;
    std::string msg;
    encodeDead(msg, d);
    if (d.node == config.name) {
      if (!leaving) {
        refute(state, d.incarnation);
        log->warn("refuting a dead message from={}", d.from);
        return;
      }
      queueBroadcast(d.node, std::move(msg), [w = weak()] {
        if (auto self = w.lock()) self->leaveBroadcastSent();
      });
    } else {
      queueBroadcast(d.node, std::move(msg));
    }
    m.deaths.inc();
    state.incarnation = d.incarnation;
    setState(state, d.node == d.from ? NodeState::left : NodeState::dead);
    state.stateChange = loop.now();
    updateMemberGauges();
    if (del.events) del.events->notifyLeave(state.node());
  }

  void mergeState(const std::vector<PushNodeState>& remote) {
    for (const auto& r : remote) {
      switch (static_cast<NodeState>(r.state)) {
        case NodeState::alive:
          aliveNode(Alive{r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn}, nullptr, false);
          break;
        case NodeState::left:
          deadNode(Dead{r.incarnation, r.name, r.name});
          break;
        case NodeState::dead:
        case NodeState::suspect:
          // Push-pull never kills directly: it only raises a suspicion.
          suspectNode(Suspect{r.incarnation, r.name, config.name});
          break;
        default:
          break;  // a state from the future: ignore that entry
      }
    }
  }

  // The widest common range of protocol and delegate versions over alive nodes, local and
  // remote, must hold every node's current version (memberlist verifyProtocol).
  Result<void> verifyProtocol(const std::vector<PushNodeState>& remote) {
    std::uint8_t maxpmin = 0, minpmax = 255, maxdmin = 0, mindmax = 255;
    for (const auto& r : remote) {
      if (r.state != static_cast<std::uint8_t>(NodeState::alive) || r.vsn.size() < 6) continue;
      maxpmin = std::max<std::uint8_t>(maxpmin, r.vsn[0]);
      minpmax = std::min<std::uint8_t>(minpmax, r.vsn[1]);
      maxdmin = std::max<std::uint8_t>(maxdmin, r.vsn[3]);
      mindmax = std::min<std::uint8_t>(mindmax, r.vsn[4]);
    }
    for (const auto& n : nodes) {
      if (n.state != NodeState::alive) continue;
      maxpmin = std::max(maxpmin, n.pmin);
      minpmax = std::min(minpmax, n.pmax);
      maxdmin = std::max(maxdmin, n.dmin);
      mindmax = std::min(mindmax, n.dmax);
    }
    auto check = [&](const std::string& name, std::uint8_t pcur, std::uint8_t dcur) -> Result<void> {
      if (pcur < maxpmin || pcur > minpmax) {
        return Error(errc::incompatible_version, "Node '" + name + "' protocol version (" + std::to_string(pcur) +
                                                     ") is incompatible: [" + std::to_string(maxpmin) + ", " +
                                                     std::to_string(minpmax) + "]");
      }
      if (dcur < maxdmin || dcur > mindmax) {
        return Error(errc::incompatible_version, "Node '" + name + "' delegate protocol version (" +
                                                     std::to_string(dcur) + ") is incompatible: [" +
                                                     std::to_string(maxdmin) + ", " + std::to_string(mindmax) + "]");
      }
      return {};
    };
    for (const auto& r : remote) {
      std::uint8_t pcur = r.vsn.size() >= 6 ? r.vsn[2] : 0, dcur = r.vsn.size() >= 6 ? r.vsn[5] : 0;
      if (auto e = check(r.name, pcur, dcur); !e) return e;
    }
    for (const auto& n : nodes) {
      if (auto e = check(n.name.str(), n.pcur, n.dcur); !e) return e;
    }
    return {};
  }

  Result<void> mergeRemoteState(bool join, const PushPull& pp) {
    if (auto r = verifyProtocol(pp.states); !r) return r;
    if (join && del.merge) {
      std::vector<Node> peers;
      peers.reserve(pp.states.size());
      for (const auto& s : pp.states) {
        auto addr = NodeAddress::fromBytes(s.addr, s.port);
        peers.push_back(nodeFromVsn(s.name, addr ? *addr : NodeAddress{}, s.meta, s.vsn));
      }
      if (auto refused = del.merge->notifyMerge(peers)) return Error(errc::remote_error, *refused);
    }
    mergeState(pp.states);
    if (!pp.userState.empty() && del.delegate) del.delegate->mergeRemoteState(pp.userState, join);
    return {};
  }

  // ------------------------------------------------------------------------------------------
  // Timers: probe, gossip, push-pull (memberlist schedule()).

  void schedule() {
    if (config.probeInterval > Duration::zero()) {
      probeTimer = loop.runAfter(stagger(config.probeInterval), [w = weak()] {
        if (auto s = w.lock()) s->probeTick();
      });
    }
    if (config.gossipInterval > Duration::zero() && config.gossipNodes > 0) {
      gossipTimer = loop.runAfter(stagger(config.gossipInterval), [w = weak()] {
        if (auto s = w.lock()) s->gossipTick();
      });
    }
    if (config.pushPullInterval > Duration::zero()) {
      pushPullTimer = loop.runAfter(stagger(config.pushPullInterval), [w = weak()] {
        if (auto s = w.lock()) s->pushPullTick();
      });
    }
    if (config.reconnectInterval > Duration::zero()) {
      reconnectTimer = loop.runAfter(stagger(config.reconnectInterval), [w = weak()] {
        if (auto s = w.lock()) s->reconnectTick();
      });
    }
  }

  void reconnectTick() {
    if (down) return;
    reconnectTimer = loop.runAfter(config.reconnectInterval, [w = weak()] {
      if (auto s = w.lock()) s->reconnectTick();
    });
    if (leaving) return;
    const std::size_t dead = counts[static_cast<int>(NodeState::dead)];
    const std::size_t alive = counts[static_cast<int>(NodeState::alive)];
    if (dead == 0) return;
    // serf's rule: the more of the cluster is gone, the more eagerly we look for it.
    const double p = std::min(1.0, double(dead) / double(std::max<std::size_t>(alive, 1)));
    if (std::uniform_real_distribution<double>(0, 1)(rng) > p) return;
    auto peers = kRandomNodes(1, [](const Member& n) { return n.state != NodeState::dead; });
    if (peers.empty()) return;
    log->debug("reconnect attempt node={}", peers[0]->name.str());
    pushPullNode(peers[0]->addr(), false, [](Result<void>) {});
  }

  void probeTick() {
    if (down) return;
    probeTimer = loop.runAfter(config.probeInterval, [w = weak()] {
      if (auto s = w.lock()) s->probeTick();
    });
    probe();
  }

  void gossipTick() {
    if (down) return;
    gossipTimer = loop.runAfter(config.gossipInterval, [w = weak()] {
      if (auto s = w.lock()) s->gossipTick();
    });
    gossip();
  }

  void pushPullTick() {
    if (down) return;
    pushPullTimer = loop.runAfter(pushPullScale(config.pushPullInterval, nodes.size()), [w = weak()] {
      if (auto s = w.lock()) s->pushPullTick();
    });
    auto peers = kRandomNodes(1, [&](const Member& n) {
      return n.name.view() == config.name || n.state != NodeState::alive;
    });
    if (peers.empty()) return;
    pushPullNode(peers[0]->addr(), false, [w = weak(), name = peers[0]->name.str()](Result<void> r) {
      auto s = w.lock();
      if (s && !r) s->log->warn("push-pull failed peer={} error={}", name, r.error().message());
    });
  }

  // Drops nodes dead longer than gossipToTheDeadTime, and (unlike memberlist 0.2.2) nodes that
  // left longer than leftNodeGcTime ago; reshuffles the probe order.
  void resetNodes() {
    const TimePoint now = loop.now();
    nodes.eraseIf([&](const Member& n) {
      if (n.name.view() == config.name) return false;
      bool expired = false;
      if (n.state == NodeState::dead) expired = now - n.stateChange > config.gossipToTheDeadTime;
      if (n.state == NodeState::left) expired = now - n.stateChange > config.leftNodeGcTime;
      if (expired) {
        log->debug("forgetting node={} state={}", n.name.view(), nodeStateName(n.state));
        --counts[static_cast<int>(n.state)];
      }
      return expired;
    });
    nodes.shuffle(rng);
    updateMemberGauges();
  }

  void probe() {
    std::size_t checked = 0;
    for (;;) {
      if (checked >= nodes.size()) return;
      if (probeIndex >= nodes.size()) {
        resetNodes();
        probeIndex = 0;
        ++checked;
        continue;
      }
      Member& node = nodes.at(probeIndex++);
      if (node.name.view() == config.name || deadOrLeft(node.state)) {
        ++checked;
        continue;
      }
      probeNode(node);
      return;
    }
  }

  struct Probe {
    std::uint32_t seqNo;
    std::string name;
    Member snapshot;  // the node as it was when the probe started
    TimePoint sent;
    TimePoint deadline;
    bool done = false;
    int expectedNacks = 0;
    int nacks = 0;
    bool fallbackContacted = false;
    std::shared_ptr<Conn> fallback;
  };

  Ping makePing(std::uint32_t seq, const std::string& target) {
    return Ping{seq, target, config.advertise.ip, config.advertise.port, config.name};
  }

  void probeNode(Member& node) {
    m.probes.inc();
    const Duration interval = awareness.scale(config.probeInterval);
    auto p = std::make_shared<Probe>();
    p->seqNo = nextSeqNo();
    p->name = node.name.str();
    p->snapshot = node;
    p->sent = loop.now();
    p->deadline = p->sent + interval;
    std::weak_ptr<Probe> wp = p;

    AckHandler h;
    h.onAck = [w = weak(), p](std::string_view payload, TimePoint at) {
      auto s = w.lock();
      if (!s || p->done) return;
      p->done = true;
      const Duration rtt = at - p->sent;
      s->m.probeRtt.observe(std::chrono::duration<double>(rtt).count());
      if (p->fallback) p->fallback->close();
      s->applyAwareness(-1);
      if (s->del.ping) s->del.ping->notifyPingComplete(p->snapshot.node(), rtt, payload);
    };
    h.onNack = [p] { ++p->nacks; };
    h.timer = loop.runAfter(interval, [w = weak(), seq = p->seqNo] {
      if (auto s = w.lock()) s->ackHandlers.erase(seq);
    });
    ackHandlers[p->seqNo] = std::move(h);

    std::string ping;
    encode(ping, makePing(p->seqNo, node.name.str()));
    if (node.state == NodeState::alive) {
      sendMsg(node.addr(), &node, std::move(ping));
    } else {
      // Suspect: tell it so, which lets it refute at once.
      std::string sus;
      encodeSuspect(sus, Suspect{node.incarnation, node.name.str(), config.name});
      sendParts(node.addr(), &node, {ping, sus});
    }
    loop.runAfter(config.probeTimeout, [w = weak(), p] {
      if (auto s = w.lock()) s->probeTimedOut(p);
    });
  }

  void probeTimedOut(const std::shared_ptr<Probe>& p) {
    if (p->done || down) return;
    log->debug("failed ping node={} (timeout reached)", p->name);
    auto peers = kRandomNodes(static_cast<std::size_t>(config.indirectChecks), [&](const Member& n) {
      return n.name.view() == config.name || n.name.view() == p->name || n.state != NodeState::alive;
    });
    IndirectPing ind{p->seqNo, std::string(p->snapshot.ip.data(), p->snapshot.ipLen), p->snapshot.port, p->name, false,
                     config.advertise.ip, config.advertise.port, config.name};
    for (Member* peer : peers) {
      ind.nack = peer->pmax >= 4;
      if (ind.nack) ++p->expectedNacks;
      std::string msg;
      encode(msg, ind);
      m.indirectProbes.inc();
      sendMsg(peer->addr(), peer, std::move(msg));
    }
    if (!config.disableTcpPings && p->snapshot.pmax >= 3) {
      m.tcpFallbackProbes.inc();
      tcpPing(p);
    }
    loop.runAt(p->deadline, [w = weak(), p] {
      if (auto s = w.lock()) s->probeDeadline(p);
    });
  }

  void tcpPing(const std::shared_ptr<Probe>& p) {
    const Duration left = p->deadline - loop.now();
    transport.dial(p->snapshot.addr(), left, [w = weak(), p](Result<std::unique_ptr<Stream>> st) {
      auto s = w.lock();
      if (!s || !st || p->done) return;
      auto conn = std::make_shared<Conn>(s->loop, std::move(*st), s->codec, s->m, p->deadline);
      conn->arm();
      p->fallback = conn;
      std::string ping;
      encode(ping, s->makePing(p->seqNo, p->name));
      auto sealed = s->sealForStream(ping);
      if (!sealed) return;
      conn->send(std::move(*sealed), [w, p, conn](Result<void> r) {
        if (!r) return;
        conn->readMessage([w, p, conn](Result<std::string> msg) {
          conn->close();
          auto s = w.lock();
          if (!s || !msg) return;
          if (msg->empty() || static_cast<std::uint8_t>((*msg)[0]) != static_cast<std::uint8_t>(MessageType::ack)) return;
          auto ack = decodeAck(std::string_view(*msg).substr(1));
          if (ack && ack->seqNo == p->seqNo) p->fallbackContacted = true;
        });
      });
    });
  }

  void probeDeadline(const std::shared_ptr<Probe>& p) {
    if (p->done || down) return;
    p->done = true;
    if (p->fallback) p->fallback->close();
    if (p->fallbackContacted) {
      log->warn("was able to connect to node={} over TCP but other probes failed: network may be misconfigured", p->name);
      applyAwareness(-1);
      return;
    }
    int delta = 0;
    if (p->expectedNacks > 0) {
      if (p->nacks < p->expectedNacks) delta += p->expectedNacks - p->nacks;
    } else {
      delta += 1;
    }
    applyAwareness(delta);
    m.probesFailed.inc();
    log->info("suspect node={} has failed: no acks received", p->name);
    suspectNode(Suspect{p->snapshot.incarnation, p->name, config.name});
  }

  void gossip() {
    const TimePoint now = loop.now();
    auto peers = kRandomNodes(static_cast<std::size_t>(config.gossipNodes), [&](const Member& n) {
      if (n.name.view() == config.name) return true;
      switch (n.state) {
        case NodeState::alive:
        case NodeState::suspect: return false;
        case NodeState::dead: return now - n.stateChange > config.gossipToTheDeadTime;
        default: return true;
      }
    });
    std::size_t avail = config.udpBufferSize - kCompoundHeaderOverhead;
    if (config.encryptionEnabled()) avail -= encryptOverhead(config.encryptionVersion());
    for (Member* peer : peers) {
      auto msgs = getBroadcasts(kCompoundOverhead, avail);
      if (msgs.empty()) return;
      sendParts(peer->addr(), peer, std::vector<std::string_view>(msgs.begin(), msgs.end()));
    }
  }

  // ------------------------------------------------------------------------------------------
  // Push-pull (TCP).

  std::string localStateMessage(bool join) {
    std::vector<PushNodeState> states;
    states.reserve(nodes.size());
    for (const auto& n : nodes) {
      states.push_back(PushNodeState{n.name.str(), std::string(n.ip.data(), n.ipLen), n.port, n.meta.str(),
                                     n.incarnation, static_cast<std::uint8_t>(n.state), n.vsn()});
    }
    std::string user = del.delegate ? del.delegate->localState(join) : std::string{};
    std::string msg;
    encodePushPull(msg, states, user, join);
    return msg;
  }

  void pushPullNode(const NodeAddress& to, bool join, std::function<void(Result<void>)> done) {
    if (down) return done(Error(errc::shutdown, "shut down"));
    transport.dial(to, config.tcpTimeout, [w = weak(), to, join, done = std::move(done)](Result<std::unique_ptr<Stream>> st) mutable {
      auto s = w.lock();
      if (!s) return done(Error(errc::shutdown, "shut down"));
      if (!st) {
        s->m.pushPullsOutFailed.inc();
        return done(st.error());
      }
      auto conn = std::make_shared<Conn>(s->loop, std::move(*st), s->codec, s->m, s->loop.now() + s->config.tcpTimeout);
      conn->arm();
      auto sealed = s->sealForStream(s->localStateMessage(join));
      if (!sealed) return done(sealed.error());
      conn->send(std::move(*sealed), [w, conn, join, done = std::move(done)](Result<void> r) mutable {
        auto s = w.lock();
        if (!s) return done(Error(errc::shutdown, "shut down"));
        if (!r) {
          s->m.pushPullsOutFailed.inc();
          return done(r.error());
        }
        conn->readMessage([w, conn, join, done = std::move(done)](Result<std::string> msg) mutable {
          conn->close();
          auto s = w.lock();
          if (!s) return done(Error(errc::shutdown, "shut down"));
          auto r = s->handlePushPullReply(msg, join);
          (r ? s->m.pushPullsOut : s->m.pushPullsOutFailed).inc();
          done(std::move(r));
        });
      });
    });
  }

  Result<void> handlePushPullReply(const Result<std::string>& msg, bool join) {
    if (!msg) {
      m.decodeError(msg.error().code.value());
      return msg.error();
    }
    const auto type = static_cast<std::uint8_t>((*msg)[0]);
    const std::string_view body = std::string_view(*msg).substr(1);
    m.received(type, msg->size());
    if (type == static_cast<std::uint8_t>(MessageType::err)) {
      auto e = decodeErr(body);
      return Error(errc::remote_error, "remote error: " + (e ? e->error : std::string("(undecodable)")));
    }
    if (type != static_cast<std::uint8_t>(MessageType::pushPull)) {
      return Error(errc::malformed, "received message type " + std::to_string(type) + ", expected push-pull");
    }
    auto pp = decodePushPull(body);
    if (!pp) {
      m.decodeError(pp.error().code.value());
      return pp.error();
    }
    return mergeRemoteState(join, *pp);
  }

  void handleStream(std::unique_ptr<Stream> stream) {
    if (down) return;
    auto conn = std::make_shared<Conn>(loop, std::move(stream), codec, m, loop.now() + config.tcpTimeout);
    conn->arm();
    conn->readMessage([w = weak(), conn](Result<std::string> msg) {
      auto s = w.lock();
      if (!s) return;
      s->handleStreamMessage(conn, msg);
    });
  }

  void replyError(const std::shared_ptr<Conn>& conn, const std::string& what) {
    std::string msg;
    encode(msg, ErrResp{what});
    auto sealed = sealForStream(msg);
    if (!sealed) return conn->close();
    conn->send(std::move(*sealed), [conn](Result<void>) { conn->close(); });
  }

  void handleStreamMessage(const std::shared_ptr<Conn>& conn, const Result<std::string>& msg) {
    if (!msg) {
      // A connection closed before a single byte (a port scan, a health check) is no error.
      if (msg.error().code != errc::closed) {
        m.decodeError(msg.error().code.value());
        log->warn("failed to receive stream peer={} error={}", conn->remote().toString(), msg.error().message());
        replyError(conn, msg.error().message());
      } else {
        conn->close();
      }
      return;
    }
    const auto type = static_cast<std::uint8_t>((*msg)[0]);
    const std::string_view body = std::string_view(*msg).substr(1);
    m.received(type, msg->size());
    switch (static_cast<MessageType>(type)) {
      case MessageType::meshRequest: {
        auto req = decodeMeshMessage(body);
        if (!req) {
          m.decodeError(req.error().code.value());
          return replyError(conn, req.error().message());
        }
        if (!requestHandler) return replyError(conn, "no request handler on this node");
        requestHandler(std::string(*req), [w = weak(), conn](Result<std::string> resp) {
          auto s = w.lock();
          if (!s) return conn->close();
          if (!resp) return s->replyError(conn, resp.error().message());
          std::string msg;
          encodeMeshMessage(msg, MessageType::meshResponse, *resp);
          auto sealed = s->sealForStream(msg);
          if (!sealed) return conn->close();
          conn->send(std::move(*sealed), [conn](Result<void>) { conn->close(); });
        });
        return;
      }
      case MessageType::user: {
        conn->close();
        auto user = decodeUserStream(body);
        if (!user) {
          m.decodeError(user.error().code.value());
          return;
        }
        if (!user->empty() && del.delegate) del.delegate->notifyMsg(*user);
        return;
      }
      case MessageType::pushPull: {
        if (pushPullsIn >= config.maxConcurrentPushPulls) {
          m.pushPullsInRefused.inc();
          log->error("too many pending push/pull requests");
          return conn->close();
        }
        auto pp = decodePushPull(body);
        if (!pp) {
          m.decodeError(pp.error().code.value());
          m.pushPullsInRefused.inc();
          return replyError(conn, pp.error().message());
        }
        ++pushPullsIn;
        auto sealed = sealForStream(localStateMessage(pp->header.join));
        if (!sealed) {
          --pushPullsIn;
          return conn->close();
        }
        auto shared = std::make_shared<PushPull>(std::move(*pp));
        conn->send(std::move(*sealed), [w = weak(), conn, shared](Result<void> r) {
          conn->close();
          auto s = w.lock();
          if (!s) return;
          --s->pushPullsIn;
          if (!r) {
            s->m.pushPullsInRefused.inc();
            return;
          }
          if (auto merged = s->mergeRemoteState(shared->header.join, *shared); !merged) {
            s->m.pushPullsInRefused.inc();
            s->log->warn("push-pull merge failed peer={} error={}", conn->remote().toString(), merged.error().message());
            return;
          }
          s->m.pushPullsIn.inc();
        });
        return;
      }
      case MessageType::ping: {
        auto p = decodePing(body);
        if (!p) {
          m.decodeError(p.error().code.value());
          return conn->close();
        }
        if (!p->node.empty() && p->node != config.name) {
          log->warn("got ping for unexpected node={} over TCP", p->node);
          return conn->close();
        }
        std::string ack;
        encode(ack, Ack{p->seqNo, del.ping ? del.ping->ackPayload() : std::string{}});
        auto sealed = sealForStream(ack);
        if (!sealed) return conn->close();
        conn->send(std::move(*sealed), [conn](Result<void>) { conn->close(); });
        return;
      }
      default:
        m.decodeError(static_cast<int>(errc::unknown_type));
        log->warn("received invalid stream message type={} peer={}", type, conn->remote().toString());
        return conn->close();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Packets (UDP).

  bool allowPacket(const NodeAddress& from, TimePoint now) {
    if (config.maxPacketsPerSourcePerSecond <= 0) return true;
    if (buckets.size() >= kMaxBuckets) buckets.clear();
    const double rate = config.maxPacketsPerSourcePerSecond;
    auto [it, fresh] = buckets.try_emplace(from.ip, Bucket{2 * rate, now});
    Bucket& b = it->second;
    if (!fresh) {
      const double secs = std::chrono::duration<double>(now - b.last).count();
      b.tokens = std::min(2 * rate, b.tokens + secs * rate);
      b.last = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  void handlePacket(const NodeAddress& from, std::string data, TimePoint at) {
    if (down) return;
    m.udpPacketsIn.inc();
    m.udpBytesIn.inc(data.size());
    if (!allowPacket(from, at)) {
      m.packetsRateLimited.inc();
      return;
    }
    auto plain = openPacket(data, codec);
    if (!plain) {
      m.decodeError(plain.error().code.value());
      log->debug("dropping packet from={} error={}", from.toString(), plain.error().message());
      return;
    }
    handleCommand(*plain, from, at, 0);
  }

  void handleCommand(std::string_view buf, const NodeAddress& from, TimePoint at, int depth) {
    if (buf.empty()) {
      m.decodeError(static_cast<int>(errc::truncated));
      return;
    }
    const auto type = static_cast<std::uint8_t>(buf[0]);
    const std::string_view body = buf.substr(1);
    m.received(type, buf.size());
    auto bad = [&](const Error& e) {
      m.decodeError(e.code.value());
      log->debug("failed to decode message type={} from={} error={}", messageTypeName(type), from.toString(), e.message());
    };
    switch (static_cast<MessageType>(type)) {
      case MessageType::compound: {
        if (depth >= kMaxNesting) return bad(Error(errc::malformed, "nested too deeply"));
        auto parts = decodeCompound(body);
        if (!parts) return bad(parts.error());
        if (parts->truncated) m.decodeError(static_cast<int>(errc::truncated));
        for (auto part : parts->parts) handleCommand(part, from, at, depth + 1);
        return;
      }
      case MessageType::compress: {
        if (depth >= kMaxNesting) return bad(Error(errc::malformed, "nested too deeply"));
        auto plain = decompressMessage(body, 64 * 1024);
        if (!plain) return bad(plain.error());
        handleCommand(*plain, from, at, depth + 1);
        return;
      }
      case MessageType::ping: {
        auto p = decodePing(body);
        if (!p) return bad(p.error());
        return handlePing(*p, from);
      }
      case MessageType::indirectPing: {
        auto p = decodeIndirectPing(body);
        if (!p) return bad(p.error());
        return handleIndirectPing(*p, from);
      }
      case MessageType::ack: {
        auto a = decodeAck(body);
        if (!a) return bad(a.error());
        return invokeAck(*a, at);
      }
      case MessageType::nack: {
        auto n = decodeNack(body);
        if (!n) return bad(n.error());
        if (auto it = ackHandlers.find(n->seqNo); it != ackHandlers.end() && it->second.onNack) it->second.onNack();
        return;
      }
      case MessageType::suspect: {
        auto s = decodeSuspect(body);
        if (!s) return bad(s.error());
        return suspectNode(*s);
      }
      case MessageType::alive: {
        auto a = decodeAlive(body);
        if (!a) return bad(a.error());
        // Protocol 1 peers did not send a port; memberlist fills in the bind port.
        if (a->port == 0) a->port = config.advertise.port;
        return aliveNode(*a, nullptr, false);
      }
      case MessageType::dead: {
        auto d = decodeDead(body);
        if (!d) return bad(d.error());
        return deadNode(*d);
      }
      case MessageType::user:
        if (del.delegate) del.delegate->notifyMsg(body);
        return;
      default:
        m.decodeError(static_cast<int>(errc::unknown_type));
        log->debug("message type={} not supported from={}", type, from.toString());
        return;
    }
  }

  NodeAddress replyAddress(std::string_view sourceAddr, std::uint16_t sourcePort, const NodeAddress& from) {
    if (!sourceAddr.empty() && sourcePort > 0) {
      if (auto a = NodeAddress::fromBytes(sourceAddr, sourcePort)) return *a;
    }
    return from;
  }

  void handlePing(const Ping& p, const NodeAddress& from) {
    if (!p.node.empty() && p.node != config.name) {
      log->warn("got ping for unexpected node={} from={}", p.node, from.toString());
      return;
    }
    std::string ack;
    encode(ack, Ack{p.seqNo, del.ping ? del.ping->ackPayload() : std::string{}});
    sendMsg(replyAddress(p.sourceAddr, p.sourcePort, from), findNode(p.sourceNode), std::move(ack));
  }

  void handleIndirectPing(const IndirectPing& ind, const NodeAddress& from) {
    const std::uint16_t port = (config.protocolVersion < 2 || ind.port == 0) ? config.advertise.port : ind.port;
    auto target = NodeAddress::fromBytes(ind.target, port);
    if (!target) {
      m.decodeError(static_cast<int>(errc::malformed));
      return;
    }
    const NodeAddress requester = replyAddress(ind.sourceAddr, ind.sourcePort, from);
    const std::uint32_t local = nextSeqNo();
    auto answered = std::make_shared<bool>(false);
    AckHandler h;
    h.onAck = [w = weak(), answered, requester, seq = ind.seqNo, src = ind.sourceNode](std::string_view, TimePoint) {
      auto s = w.lock();
      if (!s) return;
      *answered = true;
      std::string ack;
      encode(ack, Ack{seq, {}});
      s->sendMsg(requester, s->findNode(src), std::move(ack));
    };
    h.timer = loop.runAfter(config.probeTimeout, [w = weak(), local] {
      if (auto s = w.lock()) s->ackHandlers.erase(local);
    });
    ackHandlers[local] = std::move(h);
    std::string ping;
    encode(ping, makePing(local, ind.node));
    sendMsg(*target, findNode(ind.node), std::move(ping));
    if (ind.nack) {
      loop.runAfter(config.probeTimeout, [w = weak(), answered, requester, seq = ind.seqNo, src = ind.sourceNode] {
        auto s = w.lock();
        if (!s || *answered) return;
        std::string nack;
        encode(nack, Nack{seq});
        s->sendMsg(requester, s->findNode(src), std::move(nack));
      });
    }
  }

  void invokeAck(const Ack& ack, TimePoint at) {
    auto it = ackHandlers.find(ack.seqNo);
    if (it == ackHandlers.end()) return;
    AckHandler h = std::move(it->second);
    ackHandlers.erase(it);
    loop.cancel(h.timer);
    if (h.onAck) h.onAck(ack.payload, at);
  }

  // ------------------------------------------------------------------------------------------
  // Leave.

  std::vector<std::function<void()>> leaveWaiters;
  void leaveBroadcastSent() {
    auto waiters = std::move(leaveWaiters);
    leaveWaiters.clear();
    for (auto& w : waiters) w();
  }

  bool anyAlive() const {
    for (const auto& n : nodes) {
      if (!deadOrLeft(n.state) && n.name.view() != config.name) return true;
    }
    return false;
  }
};

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<Memberlist>> Memberlist::create(Config config, EventLoop& loop, Transport& transport,
                                                       Delegates delegates, metrics::Registry& registry) {
  if (config.name.empty()) return Error(errc::malformed, "node name must not be empty");
  if (!config.advertise.valid()) return Error(errc::malformed, "advertise address is not set");
  if (config.protocolVersion < kProtocolVersionMin || config.protocolVersion > kProtocolVersionMax) {
    return Error(errc::incompatible_version, "protocol version " + std::to_string(config.protocolVersion) +
                                                 " outside " + std::to_string(kProtocolVersionMin) + "-" +
                                                 std::to_string(kProtocolVersionMax));
  }
  if (config.label.size() > 255) return Error(errc::malformed, "label longer than 255 bytes");
  auto impl = std::make_shared<Impl>(std::move(config), loop, transport, delegates, registry);
  std::string meta;
  if (impl->del.delegate) {
    meta = impl->del.delegate->nodeMeta(kMetaMaxSize);
    if (meta.size() > kMetaMaxSize) {
      return Error(errc::too_large, "node meta of " + std::to_string(meta.size()) + " bytes (limit 512)");
    }
  }
  std::weak_ptr<Impl> weak = impl;
  transport.setHandlers(
      [weak](const NodeAddress& from, std::string data, TimePoint at) {
        if (auto s = weak.lock()) s->handlePacket(from, std::move(data), at);
      },
      [weak](std::unique_ptr<Stream> stream) {
        if (auto s = weak.lock()) s->handleStream(std::move(stream));
      });
  // Our own alive, as the first member.
  const Config& c = impl->config;
  impl->aliveNode(Alive{impl->nextIncarnation(), c.name, c.advertise.ip, c.advertise.port, meta, c.vsn()}, nullptr, true);
  impl->schedule();
  impl->log->info("memberlist started node={} advertise={} protocol={} encrypted={} label={}", c.name,
                  c.advertise.toString(), c.protocolVersion, c.encryptionEnabled(), c.label.empty() ? "-" : c.label);
  return std::unique_ptr<Memberlist>(new Memberlist(std::move(impl)));
}

Memberlist::~Memberlist() { shutdown(); }

void Memberlist::join(const std::vector<NodeAddress>& seeds, std::function<void(int, Result<void>)> done) {
  struct State {
    std::size_t pending;
    int contacted = 0;
    std::string errors;
    std::function<void(int, Result<void>)> done;
  };
  if (seeds.empty()) {
    impl_->loop.post([done = std::move(done)] { done(0, Error(errc::unreachable, "no addresses to join")); });
    return;
  }
  auto st = std::make_shared<State>(State{seeds.size(), 0, {}, std::move(done)});
  for (const auto& seed : seeds) {
    impl_->pushPullNode(seed, true, [st, seed](Result<void> r) {
      if (r) {
        ++st->contacted;
      } else {
        if (!st->errors.empty()) st->errors += "; ";
        st->errors += "failed to join " + seed.toString() + ": " + r.error().message();
      }
      if (--st->pending == 0) {
        if (st->contacted > 0) {
          st->done(st->contacted, {});
        } else {
          st->done(0, Error(errc::unreachable, st->errors));
        }
      }
    });
  }
}

void Memberlist::leave(Duration timeout, std::function<void(Result<void>)> done) {
  Impl& m = *impl_;
  if (m.down) return done(Error(errc::shutdown, "leave after shutdown"));
  if (m.leaving) return done({});
  m.leaving = true;
  Member* me = m.self();
  if (!me) return done({});
  auto finished = std::make_shared<bool>(false);
  auto once = [finished, done](Result<void> r) {
    if (*finished) return;
    *finished = true;
    done(std::move(r));
  };
  if (!m.anyAlive()) {
    m.deadNode(Dead{me->incarnation, me->name.str(), me->name.str()});
    return once({});
  }
  m.leaveWaiters.push_back([once] { once({}); });
  const std::string myName = me->name.str();
  m.deadNode(Dead{me->incarnation, myName, myName});
  if (timeout > Duration::zero()) {
    m.loop.runAfter(timeout, [once] { once(Error(errc::timeout, "timeout waiting for leave broadcast")); });
  }
}

void Memberlist::shutdown() {
  Impl& m = *impl_;
  if (m.down) return;
  m.down = true;
  m.loop.cancel(m.probeTimer);
  m.loop.cancel(m.gossipTimer);
  m.loop.cancel(m.pushPullTimer);
  m.loop.cancel(m.reconnectTimer);
  for (auto& [name, t] : m.nodeTimers) m.loop.cancel(t->timer);
  m.nodeTimers.clear();
  for (auto& [seq, h] : m.ackHandlers) m.loop.cancel(h.timer);
  m.ackHandlers.clear();
  m.transport.shutdown();
}

Result<void> Memberlist::updateNode() {
  Impl& m = *impl_;
  std::string meta = m.del.delegate ? m.del.delegate->nodeMeta(kMetaMaxSize) : std::string{};
  if (meta.size() > kMetaMaxSize) return Error(errc::too_large, "node meta over 512 bytes");
  Member* me = m.self();
  if (!me) return Error(errc::shutdown, "no local node");
  m.aliveNode(Alive{m.nextIncarnation(), me->name.str(), std::string(me->ip.data(), me->ipLen), me->port, meta, m.config.vsn()},
              nullptr, true);
  return {};
}

Result<void> Memberlist::sendBestEffort(const std::string& node, std::string_view msg) {
  Impl& m = *impl_;
  const Member* n = m.findNode(node);
  if (!n) return Error(errc::unreachable, "unknown node " + node);
  std::string buf(1, static_cast<char>(MessageType::user));
  buf += msg;
  m.countSent(buf);
  m.rawSendPacket(n->addr(), n, buf);
  return {};
}

void Memberlist::sendToAddress(const NodeAddress& to, const std::string& name, std::string_view msg) {
  Impl& m = *impl_;
  const Member* n = m.findNode(name);
  if (n && n->addr() != to) n = nullptr;
  std::string buf(1, static_cast<char>(MessageType::user));
  buf += msg;
  m.countSent(buf);
  m.rawSendPacket(to, n, buf);
}

void Memberlist::sendReliable(const std::string& node, std::string msg, std::function<void(Result<void>)> done) {
  Impl& m = *impl_;
  const Member* n = m.findNode(node);
  if (!n) return done(Error(errc::unreachable, "unknown node " + node));
  std::string body;
  encodeUserStream(body, msg);
  auto sealed = m.sealForStream(body);
  if (!sealed) return done(sealed.error());
  m.transport.dial(n->addr(), m.config.tcpTimeout,
                   [w = m.weak(), sealed = std::move(*sealed), done = std::move(done)](Result<std::unique_ptr<Stream>> st) mutable {
                     auto s = w.lock();
                     if (!s) return done(Error(errc::shutdown, "shut down"));
                     if (!st) return done(st.error());
                     auto conn = std::make_shared<Conn>(s->loop, std::move(*st), s->codec, s->m,
                                                        s->loop.now() + s->config.tcpTimeout);
                     conn->arm();
                     conn->send(std::move(sealed), [conn, done = std::move(done)](Result<void> r) {
                       conn->close();
                       done(std::move(r));
                     });
                   });
}

void Memberlist::setRequestHandler(RequestHandler handler) { impl_->requestHandler = std::move(handler); }

void Memberlist::request(const NodeAddress& to, std::string body, Duration timeout,
                         std::function<void(Result<std::string>)> done) {
  Impl& m = *impl_;
  if (m.down) return done(Error(errc::shutdown, "shut down"));
  std::string msg;
  encodeMeshMessage(msg, MessageType::meshRequest, body);
  auto sealed = m.sealForStream(msg);
  if (!sealed) return done(sealed.error());
  m.transport.dial(to, timeout, [w = m.weak(), sealed = std::move(*sealed), timeout, done = std::move(done)](
                                    Result<std::unique_ptr<Stream>> st) mutable {
    auto s = w.lock();
    if (!s) return done(Error(errc::shutdown, "shut down"));
    if (!st) return done(st.error());
    auto conn = std::make_shared<Conn>(s->loop, std::move(*st), s->codec, s->m, s->loop.now() + timeout);
    conn->arm();
    conn->send(std::move(sealed), [w, conn, done](Result<void> r) mutable {
      if (!r) {
        conn->close();
        return done(r.error());
      }
      conn->readMessage([w, conn, done](Result<std::string> resp) {
        conn->close();
        auto s = w.lock();
        if (!s) return done(Error(errc::shutdown, "shut down"));
        if (!resp) return done(resp.error());
        const auto type = static_cast<MessageType>(static_cast<std::uint8_t>((*resp)[0]));
        const std::string_view rest = std::string_view(*resp).substr(1);
        s->m.received(static_cast<std::uint8_t>(type), resp->size());
        if (type == MessageType::err) {
          auto e = decodeErr(rest);
          return done(Error(errc::remote_error, e ? e->error : std::string("undecodable error from the peer")));
        }
        if (type != MessageType::meshResponse) return done(Error(errc::unknown_type, "unexpected answer to a request"));
        auto body = decodeMeshMessage(rest);
        if (!body) return done(body.error());
        done(std::string(*body));
      });
    });
  });
}

void Memberlist::queueBroadcast(std::string name, std::string msg, std::function<void()> onFinished) {
  impl_->queueBroadcast(name, std::move(msg), std::move(onFinished));
}

std::vector<MemberInfo> Memberlist::members() const {
  std::vector<MemberInfo> out;
  out.reserve(impl_->nodes.size());
  for (const auto& n : impl_->nodes) out.push_back(MemberInfo{n.node(), n.incarnation, n.state, n.stateChange});
  return out;
}

std::vector<Node> Memberlist::liveMembers() const {
  std::vector<Node> out;
  for (const auto& n : impl_->nodes) {
    if (!deadOrLeft(n.state)) out.push_back(n.node());
  }
  return out;
}

std::size_t Memberlist::numLive() const {
  return impl_->counts[static_cast<int>(NodeState::alive)] + impl_->counts[static_cast<int>(NodeState::suspect)];
}

void Memberlist::preload(const std::vector<MemberInfo>& members) {
  Impl& m = *impl_;
  for (const auto& mi : members) {
    if (mi.node.name.empty() || !mi.node.addr.valid() || m.nodes.find(mi.node.name)) continue;
    Member n;
    n.name = Interned(mi.node.name);
    n.meta = Interned(mi.node.meta);
    n.setAddr(mi.node.addr);
    n.pmin = mi.node.pmin, n.pmax = mi.node.pmax, n.pcur = mi.node.pcur;
    n.dmin = mi.node.dmin, n.dmax = mi.node.dmax, n.dcur = mi.node.dcur;
    n.state = mi.state;
    n.incarnation = mi.incarnation;
    n.stateChange = m.loop.now();
    ++m.counts[static_cast<int>(mi.state)];
    const std::size_t at = m.nodes.insert(std::move(n));
    m.nodes.swap(at, m.randomOffset(m.nodes.size()));
  }
  m.updateMemberGauges();
}

std::size_t Memberlist::estimatedSize() const { return impl_->nodes.size(); }

Node Memberlist::localNode() const {
  const Member* me = impl_->nodes.find(impl_->config.name);
  return me ? me->node() : Node{};
}

std::uint32_t Memberlist::incarnation() const { return impl_->incarnation; }
int Memberlist::healthScore() const { return impl_->awareness.score(); }
bool Memberlist::hasLeft() const { return impl_->leaving; }
const Config& Memberlist::config() const { return impl_->config; }
Keyring* Memberlist::keyring() { return impl_->config.keyring.get(); }

}  // namespace mesh::gossip
