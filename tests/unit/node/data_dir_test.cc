#include "node/data_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/support/env.h"

namespace mesh::node {
namespace {

TEST(DataDir, CreatesAMissingDirectoryAndLocksIt) {
  mesh::testing::TempDir tmp;
  auto d = DataDir::open(tmp.sub("data"));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_TRUE(std::filesystem::is_directory(tmp.sub("data")));
  std::ifstream lock(tmp.sub("data/LOCK"));
  int pid = 0;
  lock >> pid;
  EXPECT_EQ(pid, ::getpid());
}

TEST(DataDir, TrailingSlashIsTheSameDirectory) {
  mesh::testing::TempDir tmp;
  EXPECT_TRUE(DataDir::open(tmp.sub("data/")).ok());
}

TEST(DataDir, SecondOpenIsRefusedWhileTheFirstHoldsIt) {
  mesh::testing::TempDir tmp;
  auto a = DataDir::open(tmp.sub("d"));
  ASSERT_TRUE(a.ok());
  auto b = DataDir::open(tmp.sub("d"));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message().find("in use by another meshd (pid " + std::to_string(::getpid())),
            std::string::npos)
      << b.error().message();
  { auto released = std::move(*a); }  // the moved-to object releases the lock
  EXPECT_TRUE(DataDir::open(tmp.sub("d")).ok());
}

TEST(DataDir, MissingParentIsAnError) {
  mesh::testing::TempDir tmp;
  auto d = DataDir::open(tmp.sub("no/such/data"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().message(),
            "data-dir " + tmp.sub("no/such/data") + ": parent directory " + tmp.sub("no/such") +
                " does not exist");
}

TEST(DataDir, NotADirectory) {
  mesh::testing::TempDir tmp;
  std::ofstream(tmp.sub("file")) << "x";
  auto d = DataDir::open(tmp.sub("file"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().message(), "data-dir " + tmp.sub("file") + ": not a directory");
}

TEST(DataDir, Unwritable) {
  // sysfs refuses new files even to root; a mode-0500 directory refuses them to everyone else.
  std::string dir = "/sys/kernel";
  mesh::testing::TempDir tmp;
  if (::geteuid() != 0) {
    dir = tmp.sub("ro");
    ::mkdir(dir.c_str(), 0500);
  }
  auto d = DataDir::open(dir);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("data-dir " + dir + ": not writable"), std::string::npos)
      << d.error().message();
}

}  // namespace
}  // namespace mesh::node
