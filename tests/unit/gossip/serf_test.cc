// The serf layer on the in-memory network with a virtual clock: member status as serf reports
// it (left vs failed), join and leave intents, tags, user events (each delivered once), push-pull
// of serf state to late joiners, and reaping.

#include "gossip/serf/serf.h"

#include <gtest/gtest.h>

#include <map>

#include "common/metrics.h"
#include "common/virtual_clock.h"
#include "gossip/mem_transport.h"

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

  Node& add(const std::string& name, std::function<void(SerfConfig&)> tweak = nullptr) {
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
  ASSERT_TRUE(a.serf->memberlist().sendBestEffort("b", std::string("\x63garbage")).ok());
  c.clock.advance(1s);
  EXPECT_NE(c.registry.render().find("mesh_serf_messages_received_total{type=\"unknown\"} 1"), std::string::npos);
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
