// The serf layer on the in-memory network with a virtual clock: member status as serf reports
// it (left vs failed), join and leave intents, tags, user events (each delivered once), push-pull
// of serf state to late joiners, and reaping.

#include "gossip/serf/serf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <array>
#include <map>
#include <optional>

#include "common/metrics.h"
#include "common/virtual_clock.h"
#include "gossip/mem_transport.h"
#include "gossip/serf/messages.h"

namespace mesh::gossip::serf {
namespace {

using namespace std::chrono_literals;

struct Node {
  std::string name;
  NodeAddress addr;
  std::unique_ptr<MemTransport> transport;
  std::unique_ptr<Serf> serf;
  std::vector<MemberEvent> memberEvents;
  std::vector<UserEventDelivery> userEvents;
  int eventsNamed(const std::string& n) const {
    int c = 0;
    for (const auto& e : userEvents) c += e.name == n;
    return c;
  }
};

class SerfCluster {
 public:
  SerfCluster() : net(clock, 11) {}

  Node& add(const std::string& name, std::function<void(SerfConfig&)> tweak = nullptr,
            std::function<void(Config&)> mlTweak = nullptr) {
    auto n = std::make_unique<Node>();
    n->name = name;
    n->addr = NodeAddress{std::string{10, 1, 0, static_cast<char>(nodes.size() + 1)}, 7946};
    n->transport = net.attach(n->addr);
    SerfConfig sc;
    sc.nodeName = name;
    sc.tags = {{"role", "web"}, {"zone", "z" + std::to_string(nodes.size() % 2)}};
    if (tweak) tweak(sc);
    Config mc = Config::lan();
    mc.advertise = n->addr;
    mc.randomSeed = nodes.size() + 7;
    if (mlTweak) mlTweak(mc);
    Node* raw = n.get();
    auto s = Serf::create(sc, mc, clock, *n->transport, registry,
                          [raw](const MemberEvent& e) { raw->memberEvents.push_back(e); },
                          [raw](const UserEventDelivery& e) { raw->userEvents.push_back(e); });
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
    n->serf = std::move(*s);
    nodes.push_back(std::move(n));
    return *nodes.back();
  }

  void join(Node& n, Node& seed, bool ignoreOld = false) {
    bool done = false;
    n.serf->join({seed.addr}, ignoreOld, [&](int contacted, Result<void>) {
      EXPECT_EQ(contacted, 1);
      done = true;
    });
    for (int i = 0; i < 50 && !done; ++i) clock.advance(100ms);
    ASSERT_TRUE(done);
  }

  MemberStatus statusOf(const Node& observer, const std::string& name) const {
    for (const auto& m : observer.serf->members()) {
      if (m.name == name) return m.status;
    }
    return MemberStatus::none;
  }

  VirtualClock clock;
  MemNetwork net;
  metrics::Registry registry;
  std::vector<std::unique_ptr<Node>> nodes;
};

// A query and what came back, run to completion on the virtual clock.
struct QueryRun {
  std::map<std::string, std::string> responses;
  std::vector<std::string> acks;
  bool done = false;
  TimePoint doneAt{};
  QueryStarted started;
};

QueryRun runQuery(SerfCluster& c, Node& from, const std::string& name, const std::string& payload,
                  const QueryParams& params, Duration maxWait = 30s) {
  QueryRun run;
  QueryCallbacks cb;
  cb.onAck = [&](const std::string& n) { run.acks.push_back(n); };
  cb.onResponse = [&](const std::string& n, const std::string& p) { run.responses[n] = p; };
  cb.onDone = [&] {
    run.done = true;
    run.doneAt = c.clock.now();
  };
  auto started = from.serf->query(name, payload, params, std::move(cb));
  EXPECT_TRUE(started.ok()) << (started.ok() ? "" : started.error().message());
  if (!started.ok()) return run;
  run.started = *started;
  const TimePoint until = c.clock.now() + maxWait;
  while (!run.done && c.clock.now() < until) c.clock.advance(50ms);
  return run;
}

// Every node answers queries named "who" with its name and the payload.
void answerWho(Node& n) {
  Serf* serf = n.serf.get();
  serf->setQueryHandler([serf, name = n.name](const IncomingQuery& q) {
    if (q.name == "who") {
      EXPECT_TRUE(serf->respond(q, name + ":" + q.payload).ok());
    }
  });
}

// Gossip is best effort: with serf's retransmit multiplier (4) one of five nodes misses a given
// query about once in a hundred (each of ~16 sends picks it with p = 1/4). These tests are
// about what happens once a query arrives, so they spread it twice as hard.
SerfCluster& fiveNodes(SerfCluster& c, std::function<void(SerfConfig&)> tweak = nullptr,
                       std::function<void(Config&)> mlTweak = nullptr) {
  auto withRetransmits = [tweak](SerfConfig& sc) {
    sc.retransmitMult = 8;
    if (tweak) tweak(sc);
  };
  for (int i = 0; i < 5; ++i) c.add("n" + std::to_string(i), withRetransmits, mlTweak);
  for (int i = 1; i < 5; ++i) c.join(*c.nodes[i], *c.nodes[0]);
  c.clock.advance(3s);
  return c;
}

TEST(SerfQuery, EveryMemberAnswersOnceAndTheQueryEndsEarly) {
  SerfCluster c;
  fiveNodes(c);
  for (auto& n : c.nodes) answerWho(*n);
  const TimePoint start = c.clock.now();
  QueryParams params;
  params.requestAck = true;
  auto run = runQuery(c, *c.nodes[2], "who", "x", params);
  ASSERT_TRUE(run.done);
  ASSERT_EQ(run.responses.size(), 5u);
  EXPECT_EQ(run.responses.at("n4"), "n4:x");
  EXPECT_EQ(run.acks.size(), 5u);
  EXPECT_EQ(run.started.expected.size(), 5u);
  // Default timeout: GossipInterval (200 ms) * 16 * ceil(log10(5 + 1)) = 3.2 s; every member
  // answered, so it finished well before that.
  EXPECT_EQ(run.started.timeout, 3200ms);
  EXPECT_LT(run.doneAt - start, 3200ms);
  // The query clock moved on: the next query has a later Lamport time.
  auto again = runQuery(c, *c.nodes[2], "who", "y", params);
  EXPECT_GT(again.started.ltime, run.started.ltime);
}

TEST(SerfQuery, FiltersByNodeAndTag) {
  SerfCluster c;
  fiveNodes(c);  // zones: n0 z0, n1 z1, n2 z0, n3 z1, n4 z0
  for (auto& n : c.nodes) answerWho(*n);
  QueryParams byNode;
  byNode.filterNodes = {"n1", "n3"};
  auto r1 = runQuery(c, *c.nodes[0], "who", "", byNode);
  ASSERT_TRUE(r1.done);
  EXPECT_EQ(r1.responses.size(), 2u);
  EXPECT_TRUE(r1.responses.contains("n1") && r1.responses.contains("n3"));

  QueryParams byTag;
  byTag.filterTags = {{"zone", "^z0$"}};
  auto r2 = runQuery(c, *c.nodes[1], "who", "", byTag);
  ASSERT_TRUE(r2.done);
  EXPECT_EQ(r2.responses.size(), 3u);
  for (const auto& [from, p] : r2.responses) EXPECT_TRUE(from == "n0" || from == "n2" || from == "n4") << from;

  // Both at once: the intersection.
  QueryParams both = byTag;
  both.filterNodes = {"n1", "n2"};
  auto r3 = runQuery(c, *c.nodes[3], "who", "", both);
  EXPECT_EQ(r3.started.expected, std::vector<std::string>{"n2"});
  ASSERT_EQ(r3.responses.size(), 1u);
  EXPECT_TRUE(r3.responses.contains("n2"));
}

TEST(SerfQuery, AFilterMatchingNobodyEndsAtOnce) {
  SerfCluster c;
  fiveNodes(c);
  for (auto& n : c.nodes) answerWho(*n);
  QueryParams nobody;
  nobody.filterTags = {{"role", "^no-such-role$"}};
  const TimePoint start = c.clock.now();
  auto run = runQuery(c, *c.nodes[0], "who", "", nobody);
  ASSERT_TRUE(run.done);
  EXPECT_TRUE(run.responses.empty());
  EXPECT_LE(run.doneAt - start, 50ms);
  QueryParams ghost;
  ghost.filterNodes = {"ghost"};
  auto run2 = runQuery(c, *c.nodes[0], "who", "", ghost);
  EXPECT_TRUE(run2.done);
  EXPECT_TRUE(run2.responses.empty());
}

TEST(SerfQuery, TimesOutWhenSomeMembersDoNotAnswer) {
  SerfCluster c;
  fiveNodes(c);
  answerWho(*c.nodes[0]);
  answerWho(*c.nodes[1]);  // the others have no handler: they ack but never answer
  QueryParams params;
  params.requestAck = true;
  params.timeout = 2s;
  const TimePoint start = c.clock.now();
  auto run = runQuery(c, *c.nodes[0], "who", "", params);
  ASSERT_TRUE(run.done);
  EXPECT_EQ(run.responses.size(), 2u);
  EXPECT_EQ(run.acks.size(), 5u);
  EXPECT_GE(run.doneAt - start, 2s);
  EXPECT_LT(run.doneAt - start, 2s + 100ms);
  // An answer after the deadline is refused with a clear error.
  std::optional<IncomingQuery> held;
  c.nodes[3]->serf->setQueryHandler([&](const IncomingQuery& q) { held = q; });
  auto run2 = runQuery(c, *c.nodes[0], "late", "", params);
  ASSERT_TRUE(held.has_value());
  c.clock.advance(2s);  // past the deadline n3 computed when the query reached it
  auto late = c.nodes[3]->serf->respond(*held, "too late");
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message().find("past the deadline"), std::string::npos);
}

TEST(SerfQuery, SizeLimitsAndDuplicatesAndBadFilters) {
  SerfCluster c;
  fiveNodes(c);
  int handled = 0;
  c.nodes[3]->serf->setQueryHandler([&](const IncomingQuery& q) {
    auto huge = c.nodes[3]->serf->respond(q, std::string(2000, 'x'));
    ASSERT_FALSE(huge.ok());
    EXPECT_NE(huge.error().message().find("response exceeds limit of 1024 bytes"), std::string::npos);
  });
  c.nodes[4]->serf->setQueryHandler([&](const IncomingQuery& q) {
    ++handled;
    EXPECT_TRUE(c.nodes[4]->serf->respond(q, "once").ok());
    auto twice = c.nodes[4]->serf->respond(q, "twice");
    EXPECT_FALSE(twice.ok());
  });
  auto big = c.nodes[0]->serf->query("q", std::string(1100, 'x'), {}, {});
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message().find("query exceeds limit of 1024 bytes"), std::string::npos);
  QueryParams badRe;
  badRe.filterTags = {{"role", "(unclosed"}};
  auto bad = c.nodes[0]->serf->query("q", "", badRe, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("bad regular expression"), std::string::npos);
  QueryParams params;
  params.timeout = 3s;
  auto run = runQuery(c, *c.nodes[0], "q", "", params);
  // Gossiped to n4 many times (retransmits), handled once.
  EXPECT_EQ(handled, 1);
  EXPECT_EQ(run.responses.size(), 1u);
}

TEST(SerfQuery, AnswersAreRelayedThroughOtherMembers) {
  SerfCluster c;
  fiveNodes(c, nullptr, [](Config& mc) { mc.protocolVersion = 5; });
  for (auto& n : c.nodes) answerWho(*n);
  auto relayed = [&] {
    const std::string text = c.registry.render();
    const std::string series = "\nmesh_serf_relays_forwarded_total ";
    const auto pos = text.find(series);
    return pos == std::string::npos ? 0.0 : std::stod(text.substr(pos + series.size()));
  };
  const double before = relayed();
  // n3 and n4 cannot reach n0: they hear the query by gossip from the others, their direct
  // answers are lost, and the copies relayed through n1 and n2 arrive. (Factor 3: at most two
  // of the four relay candidates are on the cut side.)
  c.net.block(c.nodes[3]->addr, c.nodes[0]->addr);
  c.net.block(c.nodes[4]->addr, c.nodes[0]->addr);
  QueryParams params;
  params.relayFactor = 3;
  params.timeout = 5s;
  auto run = runQuery(c, *c.nodes[0], "who", "r", params);
  EXPECT_GT(relayed(), before);
  EXPECT_TRUE(run.responses.contains("n3"));
  EXPECT_TRUE(run.responses.contains("n4"));
  EXPECT_EQ(run.responses.size(), 5u);
}

TEST(SerfQuery, KeyRotationAcrossTheCluster) {
  SerfCluster c;
  const std::string k1(32, 'a'), k2(32, 'b');
  int persisted = 0;
  fiveNodes(
      c, [&](SerfConfig& sc) { sc.onKeyringChange = [&](const Keyring&) -> Result<void> { ++persisted; return {}; }; },
      [&](Config& mc) { mc.keyring = std::make_shared<Keyring>(Keyring::create({k1}).value()); });
  auto op = [&](KeyOp o, const std::string& key) {
    std::optional<Result<KeyOpResult>> out;
    c.nodes[1]->serf->keyOperation(o, base64Encode(key), 0, [&](Result<KeyOpResult> r) { out = std::move(r); });
    for (int i = 0; i < 200 && !out; ++i) c.clock.advance(50ms);
    EXPECT_TRUE(out.has_value());
    EXPECT_TRUE(out->ok());
    return out->value();
  };
  auto install = op(KeyOp::install, k2);
  EXPECT_EQ(install.error, "");
  EXPECT_EQ(install.numNodes, 5);
  EXPECT_EQ(install.numResp, 5);
  EXPECT_EQ(persisted, 5);
  auto list = op(KeyOp::list, "");
  EXPECT_EQ(list.keys[base64Encode(k1)], 5);
  EXPECT_EQ(list.keys[base64Encode(k2)], 5);
  EXPECT_EQ(list.primaryKeys[base64Encode(k1)], 5);
  // Removing the primary fails on every node, each saying why.
  auto bad = op(KeyOp::remove, k1);
  EXPECT_EQ(bad.error, "5/5 nodes reported failure");
  EXPECT_EQ(bad.messages.size(), 5u);
  EXPECT_EQ(bad.messages["n3"], "Removing the primary key is not allowed");
  EXPECT_EQ(op(KeyOp::use, k2).error, "");
  EXPECT_EQ(op(KeyOp::remove, k1).error, "");
  auto after = op(KeyOp::list, "");
  EXPECT_EQ(after.keys.size(), 1u);
  EXPECT_EQ(after.primaryKeys[base64Encode(k2)], 5);
  // The cluster still talks (everyone encrypts with k2 now): a query gets every answer.
  for (auto& n : c.nodes) answerWho(*n);
  auto run = runQuery(c, *c.nodes[0], "who", "", {});
  EXPECT_EQ(run.responses.size(), 5u);
  // A key of the wrong size: every node refuses it.
  auto wrong = op(KeyOp::install, std::string(7, 'k'));
  EXPECT_EQ(wrong.numErr, 5);
  EXPECT_NE(wrong.messages["n0"].find("key size must be 16, 24 or 32 bytes"), std::string::npos);
}

TEST(SerfQuery, KeyOperationsWithoutEncryptionReportWhy) {
  SerfCluster c;
  fiveNodes(c);
  std::optional<Result<KeyOpResult>> out;
  c.nodes[0]->serf->keyOperation(KeyOp::install, base64Encode(std::string(16, 'k')), 0,
                                 [&](Result<KeyOpResult> r) { out = std::move(r); });
  for (int i = 0; i < 200 && !out; ++i) c.clock.advance(50ms);
  ASSERT_TRUE(out && out->ok());
  EXPECT_EQ(out->value().error, "5/5 nodes reported failure");
  EXPECT_EQ(out->value().messages.at("n2"), "No keyring to modify (encryption not enabled)");
  std::optional<Result<KeyOpResult>> bad;
  c.nodes[0]->serf->keyOperation(KeyOp::install, "not base64!", 0, [&](Result<KeyOpResult> r) { bad = std::move(r); });
  ASSERT_TRUE(bad && !bad->ok());
}

TEST(SerfEvents, CoalescingDeliversOnlyTheLatestOfEachName) {
  SerfCluster c;
  auto coalesce = [](SerfConfig& sc) {
    sc.userCoalescePeriod = 3s;
    sc.userQuiescentPeriod = 1s;
  };
  fiveNodes(c, coalesce);
  auto& rx = *c.nodes[3];
  rx.userEvents.clear();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.nodes[0]->serf->userEvent("deploy", "v" + std::to_string(i), true).ok());
    c.clock.advance(100ms);
  }
  ASSERT_TRUE(c.nodes[0]->serf->userEvent("restart", "now", false).ok());  // not coalescable
  c.clock.advance(400ms);
  // The uncoalesced one is through; the coalesced ones wait for quiet.
  EXPECT_EQ(rx.eventsNamed("restart"), 1);
  EXPECT_EQ(rx.eventsNamed("deploy"), 0);
  c.clock.advance(3s);
  ASSERT_EQ(rx.eventsNamed("deploy"), 1);
  for (const auto& e : rx.userEvents) {
    if (e.name == "deploy") {
      EXPECT_EQ(e.payload, "v4");
    }
  }
  // A steady stream is still flushed by the coalesce period, not held forever.
  rx.userEvents.clear();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(c.nodes[1]->serf->userEvent("tick", std::to_string(i), true).ok());
    c.clock.advance(200ms);
  }
  EXPECT_GE(rx.eventsNamed("tick"), 2);
  EXPECT_LT(rx.eventsNamed("tick"), 10);
}

TEST(SerfSnapshot, RestoredClocksNeverGoBackAndOldEventsAreNotRedelivered) {
  SerfCluster c;
  auto& a = c.add("a");
  c.add("b");
  c.join(*c.nodes[1], a);
  c.clock.advance(1s);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.serf->userEvent("old" + std::to_string(i), "", false).ok());
  c.clock.advance(3s);
  const LamportTime seenEvents = c.nodes[1]->serf->eventClock();
  // "b" restarts from its snapshot, far ahead of the cluster's member clock.
  c.nodes[1]->serf.reset();
  c.net.heal();
  std::vector<std::array<LamportTime, 3>> reported;
  auto& b2 = c.add("b2", [&](SerfConfig& sc) {
    sc.restored = SerfConfig::Restored{500, seenEvents, 40};
    sc.onClocksChanged = [&](LamportTime x, LamportTime y, LamportTime z) { reported.push_back({x, y, z}); };
  });
  EXPECT_GE(b2.serf->clock(), 500u);
  EXPECT_GE(b2.serf->eventClock(), seenEvents);
  EXPECT_GE(b2.serf->queryClock(), 40u);
  c.join(b2, a);
  c.clock.advance(3s);
  // The events it had seen before are replayed by push-pull but not delivered again...
  EXPECT_EQ(b2.eventsNamed("old0"), 0);
  // ...while a new one is, and its clock change is reported (for the snapshot).
  ASSERT_TRUE(a.serf->userEvent("new", "", false).ok());
  c.clock.advance(3s);
  EXPECT_EQ(b2.eventsNamed("new"), 1);
  ASSERT_FALSE(reported.empty());
  EXPECT_EQ(reported.back()[1], b2.serf->eventClock());
  EXPECT_GE(reported.back()[0], 500u);
  // The cluster's clock was pulled forward past ours by the join intent.
  EXPECT_GT(a.serf->clock(), 500u);
}

TEST(SerfIntents, ALeaveIntentAboutUsIsRefutedAndOneAboutAStrangerIsKept) {
  SerfCluster c;
  auto& a = c.add("a");
  auto& b = c.add("b");
  c.join(b, a);
  c.clock.advance(2s);
  // Someone claims b is leaving, with a Lamport time far ahead: b refutes with a join intent
  // past it, and a ends up seeing b alive.
  std::string lie;
  encode(lie, Leave{1000, "b", false});
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", lie).ok());
  c.clock.advance(3s);
  EXPECT_GT(b.serf->clock(), 1000u);
  EXPECT_EQ(c.statusOf(a, "b"), MemberStatus::alive);
  EXPECT_EQ(c.statusOf(b, "b"), MemberStatus::alive);
  // An intent about a member not known yet is buffered: when "late" joins, b already knows it
  // announced a join with that Lamport time, and an older leave intent does not undo it.
  std::string joinIntent;
  encode(joinIntent, Join{5000, "late"});
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", joinIntent).ok());
  c.clock.advance(100ms);
  EXPECT_GT(b.serf->clock(), 5000u);  // witnessed even though "late" is unknown
  auto& late = c.add("late");
  c.join(late, a);
  c.clock.advance(2s);
  std::string oldLeave;
  encode(oldLeave, Leave{4000, "late", false});
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", oldLeave).ok());
  c.clock.advance(2s);
  EXPECT_EQ(c.statusOf(b, "late"), MemberStatus::alive);
}

TEST(Serf, MembersWithTagsAndDelegateVersions) {
  SerfCluster c;
  auto& a = c.add("a");
  auto& b = c.add("b");
  auto& d = c.add("d");
  c.join(b, a);
  c.join(d, b);
  c.clock.advance(3s);
  for (const auto& n : c.nodes) {
    auto ms = n->serf->members();
    ASSERT_EQ(ms.size(), 3u) << n->name;
    for (const auto& m : ms) {
      EXPECT_EQ(m.status, MemberStatus::alive);
      EXPECT_EQ(m.tags.at("role"), "web");
      EXPECT_EQ(m.dmin, 2);
      EXPECT_EQ(m.dmax, 5);
      EXPECT_EQ(m.dcur, 4);
    }
  }
  (void)d;
}

TEST(Serf, UserEventsReachEveryoneOnce) {
  SerfCluster c;
  for (int i = 0; i < 6; ++i) c.add("n" + std::to_string(i));
  for (int i = 1; i < 6; ++i) c.join(*c.nodes[i], *c.nodes[0]);
  c.clock.advance(2s);
  const auto before = c.nodes[3]->serf->eventClock();
  ASSERT_TRUE(c.nodes[2]->serf->userEvent("deploy", "v2", false).ok());
  c.clock.advance(5s);
  for (const auto& n : c.nodes) {
    EXPECT_EQ(n->eventsNamed("deploy"), 1) << n->name;  // gossiped several times, delivered once
  }
  EXPECT_GT(c.nodes[3]->serf->eventClock(), before);
  EXPECT_EQ(c.nodes[4]->userEvents.back().payload, "v2");
  // Too large: refused with a clear error, nothing sent.
  auto big = c.nodes[0]->serf->userEvent("big", std::string(600, 'x'), false);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message().find("exceeds the size limit of 512 bytes"), std::string::npos);
}

TEST(Serf, LeftIsNotFailed) {
  SerfCluster c;
  for (int i = 0; i < 4; ++i) c.add("n" + std::to_string(i));
  for (int i = 1; i < 4; ++i) c.join(*c.nodes[i], *c.nodes[0]);
  c.clock.advance(3s);
  bool left = false;
  c.nodes[3]->serf->leave([&](Result<void> r) { left = r.ok(); });
  for (int i = 0; i < 100 && !left; ++i) c.clock.advance(100ms);
  ASSERT_TRUE(left);
  c.nodes[3]->serf.reset();
  c.nodes[2]->serf.reset();  // dies without a word
  c.clock.advance(30s);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(c.statusOf(*c.nodes[i], "n3"), MemberStatus::left) << i;
    EXPECT_EQ(c.statusOf(*c.nodes[i], "n2"), MemberStatus::failed) << i;
  }
  bool sawLeave = false, sawFailed = false;
  for (const auto& e : c.nodes[0]->memberEvents) {
    sawLeave |= e.type == MemberEvent::Type::leave && e.member.name == "n3";
    sawFailed |= e.type == MemberEvent::Type::failed && e.member.name == "n2";
  }
  EXPECT_TRUE(sawLeave);
  EXPECT_TRUE(sawFailed);
}

TEST(Serf, LateJoinerGetsStateAndClocksByPushPull) {
  SerfCluster c;
  auto& a = c.add("a");
  auto& b = c.add("b");
  c.join(b, a);
  c.clock.advance(1s);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a.serf->userEvent("e" + std::to_string(i), "", false).ok());
  c.clock.advance(5s);
  auto& late = c.add("late");
  c.join(late, b);
  c.clock.advance(2s);
  // Events from before the join arrive with the push-pull (serf replays its event buffer).
  for (int i = 0; i < 5; ++i) EXPECT_EQ(late.eventsNamed("e" + std::to_string(i)), 1) << i;
  EXPECT_GE(late.serf->eventClock(), a.serf->eventClock() - 1);
  EXPECT_GE(late.serf->clock(), a.serf->clock() - 1);
  // ...unless the joiner asks to ignore old events.
  auto& quiet = c.add("quiet");
  c.join(quiet, a, /*ignoreOld=*/true);
  c.clock.advance(2s);
  EXPECT_EQ(quiet.eventsNamed("e0"), 0);
}

TEST(Serf, TagChangesSpread) {
  SerfCluster c;
  auto& a = c.add("a");
  auto& b = c.add("b");
  c.join(b, a);
  c.clock.advance(2s);
  ASSERT_TRUE(b.serf->setTags({{"role", "db"}, {"zone", "z9"}}).ok());
  c.clock.advance(3s);
  for (const auto& m : a.serf->members()) {
    if (m.name == "b") {
      EXPECT_EQ(m.tags.at("role"), "db");
    }
  }
  bool updated = false;
  for (const auto& e : a.memberEvents) updated |= e.type == MemberEvent::Type::update && e.member.name == "b";
  EXPECT_TRUE(updated);
  std::map<std::string, std::string> huge{{"k", std::string(600, 'v')}};
  EXPECT_FALSE(b.serf->setTags(huge).ok());
}

TEST(Serf, FailedAndLeftMembersAreReaped) {
  SerfCluster c;
  auto quick = [](SerfConfig& sc) {
    sc.reapInterval = 1s;
    sc.reconnectTimeout = 20s;
    sc.tombstoneTimeout = 20s;
  };
  for (int i = 0; i < 3; ++i) c.add("n" + std::to_string(i), quick);
  for (int i = 1; i < 3; ++i) c.join(*c.nodes[i], *c.nodes[0]);
  c.clock.advance(2s);
  c.nodes[2]->serf.reset();
  c.clock.advance(15s);
  EXPECT_EQ(c.statusOf(*c.nodes[0], "n2"), MemberStatus::failed);
  c.clock.advance(30s);
  EXPECT_EQ(c.statusOf(*c.nodes[0], "n2"), MemberStatus::none);  // reaped
  bool reaped = false;
  for (const auto& e : c.nodes[0]->memberEvents) reaped |= e.type == MemberEvent::Type::reap && e.member.name == "n2";
  EXPECT_TRUE(reaped);
}

TEST(Serf, ReconnectHealsAPartitionLongerThanMemberlistRemembers) {
  SerfCluster c;
  for (int i = 0; i < 4; ++i) c.add("n" + std::to_string(i), [](SerfConfig& sc) { sc.reconnectInterval = 10s; });
  for (int i = 1; i < 4; ++i) c.join(*c.nodes[i], *c.nodes[0]);
  c.clock.advance(3s);
  c.net.partition({c.nodes[0]->addr, c.nodes[1]->addr});
  c.clock.advance(120s);  // each half fails the other; memberlist forgets the dead after 30 s
  EXPECT_EQ(c.statusOf(*c.nodes[0], "n3"), MemberStatus::failed);
  EXPECT_FALSE(c.nodes[0]->serf->memberlist().numLive() == 4);
  c.net.heal();
  c.clock.advance(120s);
  for (const auto& n : c.nodes) {
    for (const auto& m : n->serf->members()) EXPECT_EQ(m.status, MemberStatus::alive) << n->name << " sees " << m.name;
    EXPECT_EQ(n->serf->memberlist().numLive(), 4u) << n->name;
  }
  // memberlist had forgotten the other half: it was serf's reconnect that brought it back.
  const std::string m = c.registry.render();
  const auto at = m.find("\nmesh_serf_reconnects_total ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GT(std::stoul(m.substr(at + 29)), 0u);
}

TEST(Serf, UnknownMessageTypesAreCountedAndIgnored) {
  SerfCluster c;
  auto& a = c.add("a");
  auto& b = c.add("b");
  c.join(b, a);
  c.clock.advance(2s);
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", std::string("\x30garbage")).ok());
  // An extension type with no handler set is unknown too.
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", std::string("\x63garbage")).ok());
  c.clock.advance(1s);
  EXPECT_NE(c.registry.render().find("mesh_serf_messages_received_total{type=\"unknown\"} 2"), std::string::npos);
  // With a handler, extension messages go to it and are not serf's to count.
  std::vector<std::string> ext;
  b.serf->setExtensionHandler([&](std::string_view m) { ext.emplace_back(m); });
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", std::string("\x40mesh")).ok());
  c.clock.advance(1s);
  ASSERT_EQ(ext.size(), 1u);
  EXPECT_EQ(ext[0], "\x40mesh");
  EXPECT_EQ(c.statusOf(b, "a"), MemberStatus::alive);
}

TEST(Serf, RefusesPlainMemberlistPeers) {
  // A memberlist node advertising delegate versions 0/0/0 cannot join serf (as with Go serf).
  SerfCluster c;
  auto& a = c.add("a");
  auto t = c.net.attach(NodeAddress{std::string{10, 1, 0, 99}, 7946});
  Config mc = Config::lan();
  mc.name = "plain";
  mc.advertise = NodeAddress{std::string{10, 1, 0, 99}, 7946};
  auto plain = Memberlist::create(mc, c.clock, *t, Delegates{}, c.registry).value();
  std::optional<Result<void>> r;
  plain->join({a.addr}, [&](int, Result<void> res) { r = std::move(res); });
  c.clock.advance(2s);
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->ok());
  EXPECT_NE(r->error().message().find("delegate protocol version"), std::string::npos);
}

}  // namespace
}  // namespace mesh::gossip::serf
