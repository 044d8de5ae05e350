#include "gossip/lzw.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "gossip/errc.h"
#include "tests/unit/gossip/test_util.h"

namespace mesh::gossip {
namespace {

using testing::hex;
using testing::unhex;

std::string longInput() {
  std::string s;
  for (int i = 0; i < 40; ++i) s += "memberlist gossip ";
  return s + std::string(300, 'x');
}

// Outputs of Go 1.19's compress/lzw (LSB, litWidth 8), generated for these tests.
TEST(Lzw, CompressesExactlyAsGo) {
  EXPECT_EQ(hex(lzw::compress("TOBEORNOTTOBEORTOBEORNOT")), "00a93c1152e48914274fa80824687061c183090302");
  EXPECT_EQ(hex(lzw::compress("")), "000302");
  EXPECT_EQ(hex(lzw::compress("a")), "00c30404");
  std::ifstream f(std::string(MESH_TEST_DATA_DIR) + "/lzw_long.hex");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string goHex = ss.str();
  while (!goHex.empty() && (goHex.back() == '\n' || goHex.back() == ' ')) goHex.pop_back();
  ASSERT_FALSE(goHex.empty());
  EXPECT_EQ(hex(lzw::compress(longInput())), goHex);
  auto back = lzw::decompress(unhex(goHex), 1 << 20);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, longInput());
}

TEST(Lzw, RoundTripsThroughTableResets) {
  // 20 kB of pseudo-random bytes fills the 4096-code table several times; Go's writer made
  // 27,301 bytes of it with the same generator, and so must we.
  std::string in;
  std::uint32_t x = 1;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1664525u + 1013904223u;
    in.push_back(static_cast<char>(x >> 24));
  }
  std::string c = lzw::compress(in);
  EXPECT_EQ(c.size(), 27301u);
  auto back = lzw::decompress(c, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, in);
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::string s(rng() % 5000, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng() % (round % 2 ? 4 : 256));
    auto r = lzw::decompress(lzw::compress(s), 1 << 20);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, s);
  }
}

TEST(Lzw, RefusesBadStreamsAndBombs) {
  EXPECT_EQ(lzw::decompress("", 100).error().code, errc::truncated);
  EXPECT_EQ(lzw::decompress(unhex("00"), 100).error().code, errc::truncated);  // no end code
  // A code far above the table (9 bits of all ones right after a clear).
  EXPECT_EQ(lzw::decompress(unhex("00ffff"), 100).error().code, errc::malformed);
  std::string zeros(100000, 'z');
  auto c = lzw::compress(zeros);
  EXPECT_LT(c.size(), 2000u);
  EXPECT_EQ(lzw::decompress(c, 50000).error().code, errc::too_large);
  EXPECT_TRUE(lzw::decompress(c, 100000).ok());
}

}  // namespace
}  // namespace mesh::gossip
