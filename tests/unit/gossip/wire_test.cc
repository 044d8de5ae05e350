#include "gossip/wire.h"

#include <gtest/gtest.h>

#include "tests/unit/gossip/test_util.h"

namespace mesh::gossip {
namespace {

using testing::hex;
using testing::unhex;

// A fixraw string as go-msgpack writes it, in hex.
std::string fixraw(std::string_view s) {
  return hex(std::string(1, static_cast<char>(0xa0 | s.size()))) + hex(s);
}

// Bytes captured from Go memberlist 0.2.2 (PROTOCOL-NOTES.md section 4).
TEST(Wire, PingMatchesTheCapturedGoBytes) {
  Ping p{1, "p1", std::string("\x7f\x00\x00\x01", 4), 17982, "p2"};
  std::string out;
  encode(out, p);
  const std::string expected = "00" "85" + fixraw("Node") + fixraw("p1") + fixraw("SeqNo") + "01" +
                               fixraw("SourceAddr") + "a47f000001" + fixraw("SourceNode") + fixraw("p2") +
                               fixraw("SourcePort") + "cd463e";
  EXPECT_EQ(hex(out), expected);
  EXPECT_EQ(out.size(), 61u);
  auto back = decodePing(std::string_view(out).substr(1));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->seqNo, 1u);
  EXPECT_EQ(back->node, "p1");
  EXPECT_EQ(back->sourcePort, 17982);
  EXPECT_EQ(back->sourceNode, "p2");
}

TEST(Wire, AckMatchesTheCapturedGoBytes) {
  std::string out;
  encode(out, Ack{1, ""});
  EXPECT_EQ(hex(out), "02" "82" + fixraw("Payload") + "c0" + fixraw("SeqNo") + "01");
  EXPECT_EQ(out.size(), 18u);
}

TEST(Wire, PingOmitsEmptyOptionalFields) {
  std::string out;
  encode(out, Ping{7, "", "", 0, ""});
  EXPECT_EQ(hex(out), "00" "82" + fixraw("Node") + "a0" + fixraw("SeqNo") + "07");
}

// go-msgpack 0.5.5 output for memberlist's own structs (generated with Go for this test).
TEST(Wire, AliveMatchesGoMsgpack) {
  Alive a{70000, "node-1", std::string("\x7f\x00\x01\x01", 4), 7946, "role=web", std::string("\x01\x05\x02\x02\x05\x04", 6)};
  std::string out;
  encode(out, a);
  EXPECT_EQ(hex(out.substr(1)),
            "86a441646472a47f000101ab496e6361726e6174696f6ece00011170a44d657461a8726f6c653d776562a44e6f6465a66e6f6465"
            "2d31a4506f7274cd1f0aa356736ea6010502020504");
  auto back = decodeAlive(std::string_view(out).substr(1));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->incarnation, 70000u);
  EXPECT_EQ(back->meta, "role=web");
  EXPECT_EQ(back->vsn.size(), 6u);
}

TEST(Wire, IndirectPingMatchesGoMsgpack) {
  IndirectPing p{300, std::string("\x7f\x00\x00\x03", 4), 7946, "c", true, std::string("\x7f\x00\x00\x01", 4), 7946, "a"};
  std::string out;
  encode(out, p);
  EXPECT_EQ(hex(out.substr(1)),
            "88a44e61636bc3a44e6f6465a163a4506f7274cd1f0aa55365714e6fcd012caa536f7572636541646472a47f000001aa536f7572"
            "63654e6f6465a161aa536f75726365506f7274cd1f0aa6546172676574a47f000003");
  std::string bare;
  encode(bare, IndirectPing{1, std::string("\x7f\x00\x00\x03", 4), 1, "c", false, "", 0, ""});
  EXPECT_EQ(hex(bare.substr(1)), "85a44e61636bc2a44e6f6465a163a4506f727401a55365714e6f01a6546172676574a47f000003");
  auto back = decodeIndirectPing(std::string_view(out).substr(1));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->nack);
  EXPECT_EQ(back->seqNo, 300u);
}

TEST(Wire, PushPullRoundTripWithGoNodeStateBytes) {
  std::vector<PushNodeState> states = {
      {"n2", std::string("\x0a\x00\x00\x02", 4), 7946, "", 3, 3, std::string("\x01\x05\x02\x00\x00\x00", 6)}};
  std::string out;
  encodePushPull(out, states, "user-state", true);
  // The node state as go-msgpack writes it (nil Meta).
  EXPECT_NE(hex(out).find("87a441646472a40a000002ab496e6361726e6174696f6e03a44d657461c0a44e616d65a26e32a450"
                          "6f7274cd1f0aa5537461746503a356736ea6010502000000"),
            std::string::npos);
  auto pp = decodePushPull(std::string_view(out).substr(1));
  ASSERT_TRUE(pp.ok()) << pp.error().message();
  EXPECT_TRUE(pp->header.join);
  ASSERT_EQ(pp->states.size(), 1u);
  EXPECT_EQ(pp->states[0].name, "n2");
  EXPECT_EQ(pp->states[0].state, 3);
  EXPECT_EQ(pp->userState, "user-state");
  auto len = streamMessageLength(out, 1 << 20);
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(len->value(), out.size());
}

TEST(Wire, LongStringsUseRaw16AndNeverStr8) {
  std::string out;
  encode(out, ErrResp{std::string(40, 's')});
  EXPECT_NE(hex(out).find("da0028" + hex(std::string(40, 's'))), std::string::npos);
  EXPECT_EQ(hex(out).find("d928"), std::string::npos);
}

TEST(Wire, DecodersAcceptWhatGoAccepts) {
  // SeqNo as uint32 (ce), Node as str8 (d9), an unknown key, and Payload as bin8 (c4).
  std::string body = unhex("83") + unhex("a5") + "SeqNo" + unhex("ce00000005") + unhex("a5") + "Extra" + unhex("c3") +
                     unhex("a7") + "Payload" + unhex("c403") + "abc";
  auto ack = decodeAck(body);
  ASSERT_TRUE(ack.ok()) << ack.error().message();
  EXPECT_EQ(ack->seqNo, 5u);
  EXPECT_EQ(ack->payload, "abc");
  std::string ping = unhex("81") + unhex("a4") + "Node" + unhex("d902") + "ab";
  ASSERT_TRUE(decodePing(ping).ok());
  EXPECT_EQ(decodePing(ping)->node, "ab");
}

TEST(Wire, DecodersRefuseBadInput) {
  EXPECT_EQ(decodePing("").error().code, errc::truncated);
  EXPECT_EQ(decodePing(unhex("85a4")).error().code, errc::truncated);
  EXPECT_EQ(decodePing(unhex("01")).error().code, errc::malformed);  // not a map
  // SeqNo as a string, a negative port, a port above 65535.
  EXPECT_EQ(decodeAck(unhex("81") + unhex("a5") + "SeqNo" + unhex("a133")).error().code, errc::malformed);
  EXPECT_EQ(decodeAlive(unhex("81") + unhex("a4") + "Port" + unhex("ff")).error().code, errc::malformed);
  EXPECT_EQ(decodeAlive(unhex("81") + unhex("a4") + "Port" + unhex("ce00010000")).error().code, errc::malformed);
  // A map key that is not a string.
  EXPECT_EQ(decodeNack(unhex("810101")).error().code, errc::malformed);
  // Deep nesting and huge declared sizes are refused, not allocated.
  EXPECT_EQ(decodeNack(unhex("81") + unhex("a5") + "SeqNo" + unhex("9191919191919101")).error().code, errc::too_large);
  EXPECT_FALSE(decodeNack(unhex("dfffffffff")).ok());
}

TEST(Wire, PushPullCapsNodesAndUserState) {
  // A header that claims 10 million nodes with none behind it.
  std::string hdr = unhex("83") + unhex("a4") + "Join" + unhex("c2") + unhex("a5") + "Nodes" + unhex("ce00989680") +
                    unhex("ac") + "UserStateLen" + unhex("00");
  EXPECT_EQ(decodePushPull(hdr, 1000).error().code, errc::too_large);
  EXPECT_EQ(decodePushPull(hdr).error().code, errc::too_large);
  std::string neg = unhex("83") + unhex("a4") + "Join" + unhex("c2") + unhex("a5") + "Nodes" + unhex("ff") +
                    unhex("ac") + "UserStateLen" + unhex("00");
  EXPECT_EQ(decodePushPull(neg).error().code, errc::malformed);
  std::string big = unhex("83") + unhex("a4") + "Join" + unhex("c2") + unhex("a5") + "Nodes" + unhex("00") +
                    unhex("ac") + "UserStateLen" + unhex("ce7fffffff");
  EXPECT_EQ(decodePushPull(big).error().code, errc::too_large);
}

TEST(Wire, StreamMessageLengthIsIncremental) {
  std::string user;
  encodeUserStream(user, "hello world");
  for (std::size_t cut = 0; cut < user.size(); ++cut) {
    auto r = streamMessageLength(std::string_view(user).substr(0, cut), 1 << 20);
    ASSERT_TRUE(r.ok()) << cut;
    EXPECT_FALSE(r->has_value()) << cut;
  }
  auto full = streamMessageLength(user + "trailing", 1 << 20);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->value(), user.size());
  EXPECT_EQ(decodeUserStream(std::string_view(user).substr(1)).value(), "hello world");
  // Encrypted framing: length from the header, capped.
  EXPECT_EQ(streamMessageLength(unhex("0a00000010"), 1 << 20)->has_value(), false);
  EXPECT_EQ(streamMessageLength(unhex("0a7fffffff"), 1 << 20).error().code, errc::too_large);
  EXPECT_EQ(streamMessageLength(unhex("07"), 1 << 20).error().code, errc::unknown_type);
  EXPECT_EQ(streamMessageLength(unhex("0801"), 1 << 20).error().code, errc::malformed);
}

TEST(Wire, CompoundRoundTripAndTruncation) {
  std::string a = "first", b = "second part";
  std::string c = makeCompound({a, b});
  EXPECT_EQ(hex(c.substr(0, 6)), "0702" "0005" "000b");
  auto parts = decodeCompound(std::string_view(c).substr(1));
  ASSERT_TRUE(parts.ok());
  ASSERT_EQ(parts->parts.size(), 2u);
  EXPECT_EQ(parts->parts[1], b);
  EXPECT_EQ(parts->truncated, 0u);
  auto cut = decodeCompound(std::string_view(c).substr(1, c.size() - 3));
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->parts.size(), 1u);
  EXPECT_EQ(cut->truncated, 1u);
  EXPECT_EQ(decodeCompound("").error().code, errc::truncated);
  EXPECT_EQ(decodeCompound(unhex("0300")).error().code, errc::truncated);
}

}  // namespace
}  // namespace mesh::gossip
