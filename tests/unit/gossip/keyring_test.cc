#include "gossip/keyring.h"

#include <gtest/gtest.h>

#include "gossip/errc.h"

namespace mesh::gossip {
namespace {

const std::string k16(16, 'a'), k24(24, 'b'), k32(32, 'c');

TEST(Keyring, SealAndOpenEveryKeySizeAndVersion) {
  for (const auto& key : {k16, k24, k32}) {
    for (std::uint8_t v : {0, 1}) {
      std::string env;
      ASSERT_TRUE(encryptPayload(v, key, "hello mesh", "", env).ok());
      EXPECT_EQ(env.size(), encryptedLength(v, 10));
      EXPECT_EQ(static_cast<std::uint8_t>(env[0]), v);
      auto plain = decryptPayload({key}, env, "");
      ASSERT_TRUE(plain.ok()) << plain.error().message();
      EXPECT_EQ(*plain, "hello mesh");
    }
  }
  EXPECT_EQ(encryptOverhead(1), 29u);
  EXPECT_EQ(encryptOverhead(0), 45u);
  EXPECT_EQ(encryptedLength(0, 16), 1u + 12 + 16 + 16 + 16);  // a full block still gets a pad block
}

TEST(Keyring, WrongKeyAadOrTamperingFails) {
  std::string env;
  ASSERT_TRUE(encryptPayload(1, k16, "secret", "aad", env).ok());
  EXPECT_EQ(decryptPayload({k32}, env, "aad").error().code, errc::decrypt_failed);
  EXPECT_EQ(decryptPayload({k16}, env, "other").error().code, errc::decrypt_failed);
  std::string bad = env;
  bad[20] ^= 1;
  EXPECT_FALSE(decryptPayload({k16}, bad, "aad").ok());
  EXPECT_TRUE(decryptPayload({k32, k24, k16}, env, "aad").ok());  // any installed key will do
  EXPECT_FALSE(decryptPayload({k16}, "", "").ok());
  EXPECT_FALSE(decryptPayload({k16}, std::string(28, '\1'), "").ok());  // shorter than an envelope
  EXPECT_FALSE(decryptPayload({k16}, std::string(60, '\2'), "").ok());  // version 2
}

TEST(Keyring, InstallUseRemove) {
  auto kr = Keyring::create({k16});
  ASSERT_TRUE(kr.ok());
  EXPECT_EQ(kr->primary(), k16);
  ASSERT_TRUE(kr->addKey(k32).ok());
  ASSERT_TRUE(kr->addKey(k32).ok());  // twice is once
  EXPECT_EQ(kr->keys().size(), 2u);
  EXPECT_EQ(kr->primary(), k16);
  ASSERT_TRUE(kr->useKey(k32).ok());
  EXPECT_EQ(kr->primary(), k32);
  EXPECT_EQ(kr->removeKey(k32).error().code, errc::bad_key);  // the primary stays
  ASSERT_TRUE(kr->removeKey(k16).ok());
  EXPECT_EQ(kr->keys().size(), 1u);
  EXPECT_EQ(kr->useKey(k24).error().code, errc::bad_key);
  EXPECT_EQ(kr->addKey("short").error().code, errc::bad_key);
  EXPECT_FALSE(Keyring::create({std::string(20, 'x')}).ok());
}

TEST(Keyring, Base64) {
  EXPECT_EQ(base64Encode(k16), "YWFhYWFhYWFhYWFhYWFhYQ==");
  EXPECT_EQ(base64Decode("YWFhYWFhYWFhYWFhYWFhYQ==").value(), k16);
  EXPECT_EQ(base64Decode(base64Encode(k32)).value(), k32);
  EXPECT_EQ(base64Decode(base64Encode("ab")).value(), "ab");
  EXPECT_FALSE(base64Decode("not base64!").ok());
  EXPECT_FALSE(base64Decode("abc").ok());
  EXPECT_FALSE(base64Decode("").ok());
}

}  // namespace
}  // namespace mesh::gossip
