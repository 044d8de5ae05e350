#include "gossip/packet.h"

#include <gtest/gtest.h>

#include "gossip/errc.h"
#include "gossip/wire.h"
#include "tests/unit/gossip/test_util.h"

namespace mesh::gossip {
namespace {

std::string aPing() {
  std::string m;
  encode(m, Ping{42, "target", std::string("\x7f\x00\x00\x01", 4), 7946, "source"});
  return m;
}

TEST(Packet, PlainWithCrcAndCompression) {
  CodecSettings s;
  std::string msg = aPing();
  auto sealed = sealPacket(msg, /*withCrc=*/true, s);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(static_cast<std::uint8_t>((*sealed)[0]), 12);  // hasCrc
  auto opened = openPacket(*sealed, s);
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  // The ping compresses to nothing shorter, so it travels as it is.
  EXPECT_EQ(*opened, msg);
  std::string bad = *sealed;
  bad.back() ^= 0x40;
  EXPECT_EQ(openPacket(bad, s).error().code, errc::bad_checksum);
}

TEST(Packet, CompressesOnlyWhenShorter) {
  CodecSettings s;
  std::string repetitive(600, 'a');
  repetitive[0] = static_cast<char>(MessageType::user);
  auto sealed = sealPacket(repetitive, false, s);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(static_cast<std::uint8_t>((*sealed)[0]), 9);  // compress
  EXPECT_LT(sealed->size(), repetitive.size());
  auto opened = openPacket(*sealed, s);
  ASSERT_TRUE(opened.ok());
  auto plain = decompressMessage(std::string_view(*opened).substr(1), 1 << 16);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, repetitive);
}

TEST(Packet, EncryptionAndVerifySwitches) {
  Keyring kr = Keyring::create({std::string(16, 'k')}).value();
  Keyring other = Keyring::create({std::string(16, 'o')}).value();
  CodecSettings keyed;
  keyed.keyring = &kr;
  CodecSettings wrong;
  wrong.keyring = &other;
  CodecSettings plain;

  std::string msg = aPing();
  auto sealed = sealPacket(msg, false, keyed);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(static_cast<std::uint8_t>((*sealed)[0]), 1);  // envelope version 1, no type byte
  EXPECT_EQ(openPacket(*sealed, keyed).value(), msg);
  EXPECT_EQ(openPacket(*sealed, wrong).error().code, errc::decrypt_failed);

  // A keyed node refuses plaintext, unless verifyIncoming is off (key rollout).
  auto clear = sealPacket(msg, false, plain).value();
  EXPECT_EQ(openPacket(clear, keyed).error().code, errc::decrypt_failed);
  CodecSettings lenient = keyed;
  lenient.verifyIncoming = false;
  EXPECT_EQ(openPacket(clear, lenient).value(), msg);
  // verifyOutgoing off: a keyed node sends plaintext.
  CodecSettings quiet = keyed;
  quiet.verifyOutgoing = false;
  EXPECT_EQ(sealPacket(msg, false, quiet).value(), msg);
  // Version 0 envelopes (protocol version 1) open too.
  CodecSettings v0 = keyed;
  v0.encryptionVersion = 0;
  auto old = sealPacket(msg, false, v0).value();
  EXPECT_EQ(static_cast<std::uint8_t>(old[0]), 0);
  EXPECT_EQ(openPacket(old, keyed).value(), msg);
}

TEST(Packet, Labels) {
  CodecSettings labelled;
  labelled.label = "east";
  CodecSettings none;
  std::string msg = aPing();
  auto sealed = sealPacket(msg, false, labelled).value();
  EXPECT_EQ(testing::hex(sealed.substr(0, 6)), "f404" + testing::hex("east"));
  EXPECT_EQ(openPacket(sealed, labelled).value(), msg);
  EXPECT_EQ(openPacket(sealed, none).error().code, errc::label_mismatch);
  EXPECT_EQ(openPacket(sealPacket(msg, false, none).value(), labelled).error().code, errc::label_mismatch);
  CodecSettings skip = labelled;
  skip.skipInboundLabelCheck = true;
  EXPECT_EQ(openPacket(sealPacket(msg, false, none).value(), skip).value(), msg);
  EXPECT_EQ(openPacket(sealed, skip).error().code, errc::label_mismatch);
  // With encryption the label is the AAD: a relabelled packet does not open.
  Keyring kr = Keyring::create({std::string(32, 'k')}).value();
  CodecSettings keyedEast = labelled, keyedWest = labelled;
  keyedEast.keyring = keyedWest.keyring = &kr;
  keyedWest.label = "west";
  auto enc = sealPacket(msg, false, keyedEast).value();
  std::string relabelled = "\xf4\x04west" + enc.substr(6);
  EXPECT_EQ(openPacket(relabelled, keyedWest).error().code, errc::decrypt_failed);
  EXPECT_FALSE(openPacket("\xf4", none).ok());
  EXPECT_FALSE(openPacket("\xf4\x00", none).ok());
}

TEST(Packet, NeverYieldsAnEmptyMessage) {
  CodecSettings s;
  EXPECT_FALSE(openPacket("", s).ok());
  // A CRC header with nothing after it.
  std::string crcOnly = "\x0c" + std::string("\x00\x00\x00\x00", 4);
  EXPECT_FALSE(openPacket(crcOnly, s).ok());
}

class StreamReaderTest : public ::testing::TestWithParam<std::tuple<bool, bool, std::string>> {};

TEST_P(StreamReaderTest, ReadsOneMessageFedByteByByte) {
  auto [compress, encrypt, label] = GetParam();
  Keyring kr = Keyring::create({std::string(24, 'k')}).value();
  CodecSettings s;
  s.compress = compress;
  s.label = label;
  if (encrypt) s.keyring = &kr;
  std::string msg;
  std::vector<PushNodeState> states(20, PushNodeState{"node", std::string(4, '\x01'), 7946, "meta", 1, 0, std::string(6, '\x01')});
  encodePushPull(msg, states, "user", false);
  auto sealed = sealStream(msg, s);
  ASSERT_TRUE(sealed.ok());
  StreamReader r(s);
  std::optional<std::string> got;
  for (std::size_t i = 0; i < sealed->size(); ++i) {
    auto step = r.feed(std::string_view(*sealed).substr(i, 1));
    ASSERT_TRUE(step.ok()) << step.error().message() << " at byte " << i;
    if (*step) {
      EXPECT_EQ(i, sealed->size() - 1) << "complete before the last byte";
      got = std::move(*step);
    }
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, msg);
}

INSTANTIATE_TEST_SUITE_P(Layers, StreamReaderTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Values("", "lbl")));

TEST(StreamReader, RefusesMismatchedEncryption) {
  Keyring kr = Keyring::create({std::string(16, 'k')}).value();
  CodecSettings keyed;
  keyed.keyring = &kr;
  CodecSettings plain;
  std::string msg;
  encodeUserStream(msg, "hi");
  {
    StreamReader r(keyed);
    auto out = r.feed(sealStream(msg, plain).value());
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().message(), "Encryption is configured but remote state is not encrypted");
  }
  {
    StreamReader r(plain);
    auto out = r.feed(sealStream(msg, keyed).value());
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().message(), "Remote state is encrypted and encryption is not configured");
  }
}

}  // namespace
}  // namespace mesh::gossip
