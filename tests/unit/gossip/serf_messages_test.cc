// serf's wire format, byte for byte against go-msgpack's encoding of serf 0.9.4's structs
// (generated with Go for these tests).

#include "gossip/serf/messages.h"

#include <gtest/gtest.h>

#include "gossip/errc.h"
#include "tests/unit/gossip/test_util.h"

namespace mesh::gossip::serf {
namespace {

using mesh::gossip::testing::hex;
using mesh::gossip::testing::unhex;

std::string body(const std::string& msg) { return msg.substr(1); }

TEST(SerfMessages, JoinAndLeave) {
  std::string j;
  encode(j, Join{42, "n1"});
  EXPECT_EQ(static_cast<std::uint8_t>(j[0]), 1);
  EXPECT_EQ(hex(body(j)), "82a54c54696d652aa44e6f6465a26e31");
  EXPECT_EQ(decodeJoin(body(j))->node, "n1");
  std::string l;
  encode(l, Leave{300, "n2", true});
  EXPECT_EQ(static_cast<std::uint8_t>(l[0]), 0);
  EXPECT_EQ(hex(body(l)), "83a54c54696d65cd012ca44e6f6465a26e32a55072756e65c3");
  auto back = decodeLeave(body(l));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ltime, 300u);
  EXPECT_TRUE(back->prune);
}

TEST(SerfMessages, UserEvent) {
  std::string e;
  encode(e, UserEventMessage{7, "deploy", "v2", true});
  EXPECT_EQ(static_cast<std::uint8_t>(e[0]), 3);
  EXPECT_EQ(hex(body(e)), "84a24343c3a54c54696d6507a44e616d65a66465706c6f79a75061796c6f6164a27632");
  auto back = decodeUserEvent(body(e));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->name, "deploy");
  EXPECT_EQ(back->payload, "v2");
  EXPECT_TRUE(back->cc);
}

TEST(SerfMessages, PushPull) {
  PushPull pp;
  pp.ltime = 10;
  pp.statusLTimes = {{"a", 3}};
  pp.leftMembers = {"gone"};
  pp.eventLTime = 5;
  pp.events = {UserEvents{4, {UserEvent{"e", "p"}}}};
  pp.queryLTime = 2;
  std::string m;
  encode(m, pp);
  EXPECT_EQ(hex(body(m)),
            "86aa4576656e744c54696d6505a64576656e74739182a64576656e74739182a44e616d65a165a75061796c6f6164a170a54c54696d6504"
            "a54c54696d650aab4c6566744d656d6265727391a4676f6e65aa51756572794c54696d6502ac5374617475734c54696d657381a16103");
  auto back = decodePushPull(body(m));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->statusLTimes.at("a"), 3u);
  EXPECT_EQ(back->leftMembers, std::vector<std::string>{"gone"});
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].events[0].payload, "p");
  std::string empty;
  encode(empty, PushPull{1, {}, {}, 0, {}, 0});
  EXPECT_EQ(hex(body(empty)),
            "86aa4576656e744c54696d6500a64576656e7473c0a54c54696d6501ab4c6566744d656d62657273c0aa51756572794c54696d6500ac"
            "5374617475734c54696d6573c0");
  EXPECT_TRUE(decodePushPull(body(empty))->statusLTimes.empty());
}

TEST(SerfMessages, QueryAndResponse) {
  Query q;
  q.ltime = 9;
  q.id = 123456;
  q.addr = std::string("\x7f\x00\x00\x01", 4);
  q.port = 7946;
  q.sourceNode = "src";
  q.filters = {std::string("\x00\x01", 2)};
  q.flags = kQueryFlagAck;
  q.relayFactor = 2;
  q.timeout = std::chrono::seconds(5);
  q.name = "ping";
  q.payload = "x";
  std::string m;
  encode(m, q);
  EXPECT_EQ(static_cast<std::uint8_t>(m[0]), 4);
  EXPECT_EQ(hex(body(m)),
            "8ba441646472a47f000001a746696c7465727391a20001a5466c61677301a24944ce0001e240a54c54696d6509a44e616d65a470696e67"
            "a75061796c6f6164a178a4506f7274cd1f0aab52656c6179466163746f7202aa536f757263654e6f6465a3737263a754696d656f7574cf"
            "000000012a05f200");
  auto back = decodeQuery(body(m));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->timeout, std::chrono::seconds(5));
  EXPECT_EQ(back->filters.size(), 1u);
  std::string r;
  encode(r, MessageType::queryResponse, QueryResponse{9, 123456, "n3", kQueryFlagAck, "pong"});
  EXPECT_EQ(hex(body(r)), "85a5466c61677301a446726f6da26e33a24944ce0001e240a54c54696d6509a75061796c6f6164a4706f6e67");
  EXPECT_EQ(decodeQueryResponse(body(r))->payload, "pong");
}

TEST(SerfMessages, RelayHeaderFromGo) {
  // Go's net.IP for 127.0.0.1 may be 4 or 16 bytes (ParseIP gives IPv4-mapped 16).
  const std::string go4 = "82a8446573744164647283a24950a47f000001a4506f7274cd1f0aa45a6f6e65a0a8446573744e616d65a3737263";
  const std::string go16 =
      "82a8446573744164647283a24950b000000000000000000000ffff7f000001a4506f7274cd1f0aa45a6f6e65a0a8446573744e616d65a3737263";
  std::string ours;
  encodeRelay(ours, RelayHeader{std::string("\x7f\x00\x00\x01", 4), 7946, "", "src"}, "\x05inner");
  EXPECT_EQ(hex(ours.substr(1, go4.size() / 2)), go4);
  for (const auto& h : {go4, go16}) {
    const std::string wire = unhex(h) + "\x05" + "inner";  // the result views into it
    auto r = decodeRelay(wire);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->first.destPort, 7946);
    EXPECT_EQ(r->first.destName, "src");
    EXPECT_EQ(r->second, "\x05inner");
  }
  EXPECT_FALSE(decodeRelay(unhex(go4)).ok());  // a header and no message
}

TEST(SerfMessages, FiltersTagsAndKeys) {
  EXPECT_EQ(hex(encodeNodeFilter({"a", "b"})), "00" "92a161a162");
  EXPECT_EQ(hex(encodeTagFilter("role", "^web$")), "01" "82a445787072a55e77656224a3546167a4726f6c65");
  auto nf = decodeFilter(encodeNodeFilter({"a", "b"}));
  ASSERT_TRUE(nf.ok());
  EXPECT_EQ(nf->nodes, (std::vector<std::string>{"a", "b"}));
  auto tf = decodeFilter(encodeTagFilter("role", "^web$"));
  ASSERT_TRUE(tf.ok());
  EXPECT_EQ(tf->kind, Filter::Kind::tag);
  EXPECT_EQ(tf->expr, "^web$");
  EXPECT_EQ(decodeFilter(std::string("\x07\x90", 2)).error().code, errc::unknown_type);

  EXPECT_EQ(hex(encodeTags({{"role", "web"}})), "ff" "81a4726f6c65a3776562");
  auto tags = decodeTags(encodeTags({{"role", "web"}, {"zone", "a"}}));
  ASSERT_TRUE(tags.ok());
  EXPECT_EQ(tags->at("zone"), "a");
  EXPECT_EQ(decodeTags("legacy-role")->at("role"), "legacy-role");  // serf protocol < 3
  EXPECT_FALSE(decodeTags("\xff\x01").ok());

  std::string kr;
  encode(kr, KeyResponse{true, "", {"k1"}, "k1"});
  EXPECT_EQ(hex(body(kr)), "84a44b65797391a26b31a74d657373616765a0aa5072696d6172794b6579a26b31a6526573756c74c3");
  std::string req;
  encode(req, KeyRequest{"0123456789abcdef"});
  EXPECT_EQ(hex(body(req)), "81a34b6579b030313233343536373839616263646566");
  EXPECT_EQ(decodeKeyRequest(body(req))->key, "0123456789abcdef");
  EXPECT_EQ(decodeKeyResponse(body(kr))->keys, std::vector<std::string>{"k1"});
}

TEST(SerfMessages, HostileInputIsRefused) {
  EXPECT_FALSE(decodeJoin("").ok());
  EXPECT_FALSE(decodeLeave(unhex("83a5")).ok());
  EXPECT_FALSE(decodePushPull(unhex("81ac5374617475734c54696d657301")).ok());  // StatusLTimes not a map
  EXPECT_FALSE(decodeQuery(unhex("81a754696d656f7574ff")).ok());              // negative timeout
  EXPECT_FALSE(decodeUserEvent(unhex("dfffffffff")).ok());
}

TEST(Lamport, WitnessMovesPastAndNeverBack) {
  LamportClock c;
  EXPECT_EQ(c.increment(), 1u);
  c.witness(10);
  EXPECT_EQ(c.time(), 11u);
  c.witness(5);
  EXPECT_EQ(c.time(), 11u);
  c.restore(3);
  EXPECT_EQ(c.time(), 11u);
  c.restore(20);
  EXPECT_EQ(c.increment(), 21u);
}

}  // namespace
}  // namespace mesh::gossip::serf
