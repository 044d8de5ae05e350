// The store on a real RocksDB in a temporary directory: records survive reopening, batches are
// atomic, the format version is kept and checked (a newer store is refused with a clear error, a
// store from this format opens in later builds: the checked-in fixture), column families a newer
// build added are tolerated, and damaged records are reported instead of crashing.

#include "store/store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdlib>
#include <filesystem>

#include "common/metrics.h"
#include "store/errc.h"
#include "store/serf_records.h"
#include "tests/support/env.h"

namespace mesh::store {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<Store> openOk(const std::string& dir, metrics::Registry& reg) {
  auto s = Store::open(dir, reg);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  return s.ok() ? std::move(*s) : nullptr;
}

// The records the fixture holds (see FixtureOfFormat1OpensAndReads).
void writeFixtureRecords(Store& s) {
  ASSERT_TRUE(saveClocks(s, {41, 17, 9}).ok());
  ASSERT_TRUE(saveMember(s, {"alpha", std::string("\x7f\x00\x01\x01", 4), 7946, KnownMember::Status::alive,
                             {{"role", "node"}, {"zone", "z1"}}}).ok());
  ASSERT_TRUE(saveMember(s, {"beta", std::string(16, '\x01'), 7947, KnownMember::Status::left, {}}).ok());
  ASSERT_TRUE(saveKeyring(s, {std::string(32, 'k'), std::string(16, 'j')}).ok());
}

TEST(Store, PutGetEraseScanAndReopen) {
  testing::TempDir tmp;
  metrics::Registry reg;
  const std::string dir = tmp.sub("db");
  {
    auto s = openOk(dir, reg);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->openedFormat(), 0u);
    ASSERT_TRUE(s->put(Family::serf, "a/1", "one").ok());
    ASSERT_TRUE(s->put(Family::serf, "a/2", "two").ok());
    ASSERT_TRUE(s->put(Family::serf, "b/1", "other").ok());
    ASSERT_TRUE(s->put(Family::keyring, "a/1", "another family").ok());
    ASSERT_TRUE(s->erase(Family::serf, "a/2").ok());
    Batch b;
    b.put(Family::serf, "a/3", "three");
    b.put(Family::serf, "a/4", "four");
    b.erase(Family::serf, "b/1");
    ASSERT_TRUE(s->write(b).ok());
  }
  auto s = openOk(dir, reg);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->openedFormat(), kFormatVersion);
  EXPECT_EQ(s->get(Family::serf, "a/1")->value(), "one");
  EXPECT_FALSE(s->get(Family::serf, "a/2")->has_value());
  EXPECT_FALSE(s->get(Family::serf, "b/1")->has_value());
  EXPECT_EQ(s->get(Family::keyring, "a/1")->value(), "another family");
  std::vector<std::string> seen;
  ASSERT_TRUE(s->scan(Family::serf, "a/", [&](std::string_view k, std::string_view v) {
    seen.push_back(std::string(k) + "=" + std::string(v));
    return true;
  }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a/1=one", "a/3=three", "a/4=four"}));
  EXPECT_NE(reg.render().find("mesh_store_writes_total "), std::string::npos);
}

TEST(Store, ASecondOpenIsRefusedWhileTheFirstHoldsIt) {
  testing::TempDir tmp;
  metrics::Registry reg;
  auto first = openOk(tmp.sub("db"), reg);
  auto second = Store::open(tmp.sub("db"), reg);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, errc::locked) << second.error().message();
  EXPECT_NE(second.error().message().find(tmp.sub("db")), std::string::npos);
}

TEST(Store, ANewerFormatIsRefusedNotMisread) {
  testing::TempDir tmp;
  metrics::Registry reg;
  {
    auto s = openOk(tmp.sub("db"), reg);
    ASSERT_TRUE(s->put(Family::meta, "format", std::string("\0\0\0\x63", 4)).ok());  // format 99
  }
  auto s = Store::open(tmp.sub("db"), reg);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, errc::newer_format);
  EXPECT_NE(s.error().message().find("has format 99, written by a newer meshd"), std::string::npos)
      << s.error().message();
}

TEST(Store, ColumnFamiliesOfANewerBuildAreTolerated) {
  testing::TempDir tmp;
  metrics::Registry reg;
  { openOk(tmp.sub("db"), reg); }
  {
    // A newer build of the same format added a family.
    rocksdb::Options o;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(o, tmp.sub("db"), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const auto& n : names) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, tmp.sub("db"), descs, &handles, &db).ok());
    rocksdb::ColumnFamilyHandle* extra = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "future_kind", &extra).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), extra, "k", "v").ok());
    handles.push_back(extra);
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto s = openOk(tmp.sub("db"), reg);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->put(Family::serf, "still", "works").ok());
}

TEST(SerfRecords, RoundTripAndDamage) {
  testing::TempDir tmp;
  metrics::Registry reg;
  auto s = openOk(tmp.sub("db"), reg);
  ASSERT_TRUE(s);
  EXPECT_FALSE(loadClocks(*s)->has_value());
  EXPECT_FALSE(loadKeyring(*s)->has_value());
  writeFixtureRecords(*s);
  EXPECT_EQ(loadClocks(*s)->value(), (SerfClocks{41, 17, 9}));
  auto members = loadMembers(*s);
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[0].name, "alpha");
  EXPECT_EQ((*members)[0].tags.at("zone"), "z1");
  EXPECT_EQ((*members)[1].status, KnownMember::Status::left);
  ASSERT_TRUE(removeMember(*s, "beta").ok());
  EXPECT_EQ(loadMembers(*s)->size(), 1u);
  EXPECT_EQ(loadKeyring(*s)->value().size(), 2u);

  // Damaged records: reported, skipped, never a crash.
  ASSERT_TRUE(s->put(Family::serf, "member/broken", "not a capnp message").ok());
  ASSERT_TRUE(s->put(Family::serf, "member/short", std::string(8, '\0')).ok());
  int skipped = 0;
  auto again = loadMembers(*s, &skipped);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 1u);
  EXPECT_EQ(skipped, 2);
  ASSERT_TRUE(s->put(Family::serf, "clocks", std::string(24, '\xff')).ok());
  auto clocks = loadClocks(*s);
  ASSERT_FALSE(clocks.ok());
  EXPECT_EQ(clocks.error().code, errc::corrupt);
  for (std::string_view bad : {std::string_view(""), std::string_view("1234567"), std::string_view("\xff\xff\xff\xff\xff\xff\xff\xff")}) {
    EXPECT_FALSE(decodeMember(bad).ok());
    EXPECT_FALSE(decodeKeyring(bad).ok());
  }
}

// tests/unit/store/data/format1 was written by the build that introduced format 1
// (MESH_WRITE_STORE_FIXTURE=DIR regenerates it). Every later build must open it and read the
// same records: this is the "older store opens in a newer build" check.
TEST(Store, FixtureOfFormat1OpensAndReads) {
  if (const char* out = std::getenv("MESH_WRITE_STORE_FIXTURE")) {
    metrics::Registry reg;
    fs::remove_all(out);
    fs::create_directories(fs::path(out).parent_path());
    auto s = openOk(out, reg);
    writeFixtureRecords(*s);
    GTEST_SKIP() << "fixture written to " << out;
  }
  testing::TempDir tmp;
  fs::copy(std::string(MESH_TEST_DATA_DIR) + "/format1", tmp.sub("db"), fs::copy_options::recursive);
  metrics::Registry reg;
  auto s = openOk(tmp.sub("db"), reg);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->openedFormat(), 1u);
  EXPECT_EQ(loadClocks(*s)->value(), (SerfClocks{41, 17, 9}));
  auto members = loadMembers(*s);
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[0], (KnownMember{"alpha", std::string("\x7f\x00\x01\x01", 4), 7946, KnownMember::Status::alive,
                                        {{"role", "node"}, {"zone", "z1"}}}));
  EXPECT_EQ(loadKeyring(*s)->value(), (std::vector<std::string>{std::string(32, 'k'), std::string(16, 'j')}));
}

}  // namespace
}  // namespace mesh::store
