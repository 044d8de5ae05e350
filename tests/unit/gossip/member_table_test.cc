#include "gossip/member_table.h"

#include <gtest/gtest.h>

#include <map>

namespace mesh::gossip {
namespace {

Member make(const std::string& name, std::uint32_t inc = 1) {
  Member m;
  m.name = Interned(name);
  m.setAddr(NodeAddress{std::string{10, 0, 0, 1}, 7946});
  m.incarnation = inc;
  return m;
}

TEST(Interned, SharesAndFreesStrings) {
  const std::size_t before = Interned::poolSize();
  {
    Interned a("shared-name-xyz"), b("shared-name-xyz");
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.id(), b.id());
    EXPECT_EQ(Interned::poolSize(), before + 1);
    EXPECT_EQ(Interned::find("shared-name-xyz").id(), a.id());
    Interned c = a;
    Interned d = std::move(b);
    EXPECT_EQ(c.view(), "shared-name-xyz");
    EXPECT_EQ(b.id(), nullptr);
  }
  EXPECT_EQ(Interned::poolSize(), before);  // the last holder freed it
  EXPECT_EQ(Interned::find("shared-name-xyz").id(), nullptr);
  EXPECT_TRUE(Interned("").empty());
}

TEST(MemberTable, FindInsertSwapErase) {
  MemberTable t;
  for (int i = 0; i < 100; ++i) t.insert(make("m" + std::to_string(i), i));
  EXPECT_EQ(t.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    Member* m = t.find("m" + std::to_string(i));
    ASSERT_NE(m, nullptr) << i;
    EXPECT_EQ(m->incarnation, static_cast<std::uint32_t>(i));
  }
  EXPECT_EQ(t.find("m100"), nullptr);
  EXPECT_EQ(t.find("never-interned-name"), nullptr);
  t.swap(3, 97);
  EXPECT_EQ(t.at(3).name.view(), "m97");
  EXPECT_EQ(t.find("m97")->incarnation, 97u);
  EXPECT_EQ(t.find("m3")->incarnation, 3u);
  t.eraseIf([](const Member& m) { return m.incarnation % 2 == 0; });
  EXPECT_EQ(t.size(), 50u);
  EXPECT_EQ(t.find("m4"), nullptr);
  EXPECT_NE(t.find("m5"), nullptr);
  std::mt19937_64 rng(1);
  t.shuffle(rng);
  for (int i = 1; i < 100; i += 2) ASSERT_NE(t.find("m" + std::to_string(i)), nullptr) << i;
  std::map<std::string, int> seen;
  for (const auto& m : t) ++seen[m.name.str()];
  EXPECT_EQ(seen.size(), 50u);
}

TEST(MemberTable, MemberConversions) {
  Member m = make("node-a");
  m.meta = Interned("role=web");
  m.setVsn(std::string{1, 5, 2, 2, 5, 4});
  EXPECT_EQ(m.vsn(), (std::string{1, 5, 2, 2, 5, 4}));
  m.setVsn("xx");  // too short: unchanged
  EXPECT_EQ(m.pmax, 5);
  Node n = m.node();
  EXPECT_EQ(n.name, "node-a");
  EXPECT_EQ(n.meta, "role=web");
  EXPECT_EQ(n.addr.toString(), "10.0.0.1:7946");
  EXPECT_TRUE(m.sameAddr(n.addr));
  EXPECT_FALSE(m.sameAddr(NodeAddress{std::string{10, 0, 0, 2}, 7946}));
  EXPECT_LE(sizeof(Member), 72u);  // what lets 10,000 nodes of 10,000 members fit in memory
}

}  // namespace
}  // namespace mesh::gossip
