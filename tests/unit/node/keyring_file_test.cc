#include "node/keyring_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/support/env.h"

namespace mesh::node {
namespace {

TEST(KeyringFile, WritesAndReadsSerfFormat) {
  mesh::testing::TempDir tmp;
  auto ring = gossip::Keyring::create({std::string(16, 'a'), std::string(32, 'b')}).value();
  ASSERT_TRUE(writeKeyringFile(tmp.sub("keys.json"), ring).ok());
  struct stat st{};
  ASSERT_EQ(::stat(tmp.sub("keys.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(tmp.sub("keys.json"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"YWFhYWFhYWFhYWFhYWFhYQ==\""), std::string::npos);
  auto back = readKeyringFile(tmp.sub("keys.json"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->keys(), ring.keys());
}

TEST(KeyringFile, LoadOrder) {
  mesh::testing::TempDir tmp;
  NodeConfig cfg;
  std::string warning;
  auto none = loadKeyring(cfg, warning);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->get(), nullptr);  // no key: encryption off

  cfg.encryptKey = std::string(16, 'k');
  cfg.keyringFile = tmp.sub("ring.json");
  auto created = loadKeyring(cfg, warning);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ((*created)->primary(), cfg.encryptKey);
  EXPECT_TRUE(readKeyringFile(cfg.keyringFile).ok());  // --encrypt wrote the file

  cfg.encryptKey = std::string(16, 'z');
  auto loaded = loadKeyring(cfg, warning);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ((*loaded)->primary(), std::string(16, 'k'));  // the file wins
  EXPECT_NE(warning.find("--encrypt is ignored"), std::string::npos);

  NodeConfig missing;
  missing.keyringFile = tmp.sub("nope.json");
  EXPECT_NE(loadKeyring(missing, warning).error().message().find("does not exist"), std::string::npos);
}

TEST(KeyringFile, BadFilesNameTheProblem) {
  mesh::testing::TempDir tmp;
  auto write = [&](const std::string& body) {
    std::ofstream(tmp.sub("k.json")) << body;
    auto r = readKeyringFile(tmp.sub("k.json"));
    return r.ok() ? std::string("<ok>") : r.error().message();
  };
  EXPECT_NE(write("{").find("expected a JSON list of base64 keys"), std::string::npos);
  EXPECT_NE(write("[]").find("empty"), std::string::npos);
  EXPECT_NE(write("[1]").find("entry 0 is not a string"), std::string::npos);
  EXPECT_NE(write("[\"YWFhYWFhYWFhYWFhYWFhYQ==\", \"!!\"]").find("entry 1 is not valid base64"), std::string::npos);
  EXPECT_NE(write("[\"YWJj\"]").find("entry 0: key size must be"), std::string::npos);
}

}  // namespace
}  // namespace mesh::node
