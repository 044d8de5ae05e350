// Mesh identity: a root per trust domain, node certificates with SPIFFE IDs, and every way a
// certificate is refused (another trust domain, expired, not yet valid, wrong key, no SPIFFE ID,
// tampered chain).
#include "node/identity/identity.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include "common/files.h"
#include "tests/support/env.h"

namespace mesh::identity {
namespace {

using ::testing::HasSubstr;

std::int64_t realNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

unsigned modeOf(const std::string& path) {
  struct stat st{};
  ::stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

class IdentityTest : public ::testing::Test {
 protected:
  testing::TempDir dir;
  std::int64_t now = realNow();
};

TEST_F(IdentityTest, IssuedNodeCertificatesLoadWithTheirSpiffeId) {
  auto ca = initCa("prod.example", dir.sub("ca"), 3650, now);
  ASSERT_TRUE(ca) << ca.error().message();
  EXPECT_EQ(ca->spiffeId, "spiffe://prod.example");
  EXPECT_TRUE(ca->isCa);
  EXPECT_EQ(modeOf(dir.sub("ca/ca.key")), 0600u);
  auto node = issueNode(dir.sub("ca"), "web-1", dir.sub("web-1"), 365, now);
  ASSERT_TRUE(node) << node.error().message();
  EXPECT_EQ(node->spiffeId, "spiffe://prod.example/node/web-1");
  EXPECT_FALSE(node->isCa);
  EXPECT_NEAR(static_cast<double>(node->notAfter - now), 365.0 * 86400, 10);
  for (const char* f : {"node.key", "node-ca.key"}) EXPECT_EQ(modeOf(dir.sub(std::string("web-1/") + f)), 0600u) << f;

  auto id = loadTlsDir(dir.sub("web-1"), now);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(id->trustDomain, "prod.example");
  EXPECT_EQ(id->spiffeId, "spiffe://prod.example/node/web-1");
  // A peer presenting this chain is accepted by another node of the domain.
  auto der = pemToDer(id->chainPem);
  ASSERT_TRUE(der);
  EXPECT_EQ(der->size(), 2u);
  auto peer = verifyPeer(*der, id->rootsPem, "prod.example", now);
  ASSERT_TRUE(peer) << peer.error().message();
  EXPECT_EQ(*peer, "spiffe://prod.example/node/web-1");
  // Never overwritten.
  auto again = issueNode(dir.sub("ca"), "web-1", dir.sub("web-1"), 365, now);
  ASSERT_FALSE(again);
  EXPECT_THAT(again.error().message(), HasSubstr("exists: remove the old files first"));
}

TEST_F(IdentityTest, PeersFromElsewhereOrOutOfDateAreRefused) {
  ASSERT_TRUE(initCa("prod.example", dir.sub("ca"), 3650, now));
  ASSERT_TRUE(initCa("other.example", dir.sub("other"), 3650, now));
  ASSERT_TRUE(issueNode(dir.sub("ca"), "a", dir.sub("a"), 30, now));
  ASSERT_TRUE(issueNode(dir.sub("other"), "b", dir.sub("b"), 30, now));
  auto roots = *files::read(dir.sub("ca/ca.crt"));
  auto chainOf = [&](const std::string& d) { return *pemToDer(*files::read(dir.sub(d + "/node.crt"))); };

  // Another trust domain's node: its root is not ours.
  auto other = verifyPeer(chainOf("b"), roots, "prod.example", now);
  ASSERT_FALSE(other);
  EXPECT_THAT(other.error().message(), HasSubstr("unable to get local issuer certificate"));
  // Even trusting its root, its SPIFFE ID is not in our domain.
  auto both = roots + *files::read(dir.sub("other/ca.crt"));
  auto domain = verifyPeer(chainOf("b"), both, "prod.example", now);
  ASSERT_FALSE(domain);
  EXPECT_THAT(domain.error().message(), HasSubstr("spiffe://other.example/node/b is not in trust domain prod.example"));
  // Expired, and not yet valid.
  auto expired = verifyPeer(chainOf("a"), roots, "prod.example", now + 31 * 86400);
  ASSERT_FALSE(expired);
  EXPECT_THAT(expired.error().message(), HasSubstr("certificate has expired"));
  auto early = verifyPeer(chainOf("a"), roots, "prod.example", now - 3600);
  ASSERT_FALSE(early);
  EXPECT_THAT(early.error().message(), HasSubstr("not yet valid"));
  // No certificate, a broken one, a chain without its intermediate.
  EXPECT_FALSE(verifyPeer({}, roots, "prod.example", now));
  auto chain = chainOf("a");
  chain[0][chain[0].size() / 2] ^= 0x40;
  EXPECT_FALSE(verifyPeer(chain, roots, "prod.example", now));
  EXPECT_FALSE(verifyPeer({chainOf("a")[0]}, roots, "prod.example", now));
}

TEST_F(IdentityTest, ATlsDirThatDoesNotHoldTogetherIsRefusedWithTheFileAtFault) {
  ASSERT_TRUE(initCa("prod.example", dir.sub("ca"), 3650, now));
  ASSERT_TRUE(initCa("other.example", dir.sub("other"), 3650, now));
  ASSERT_TRUE(issueNode(dir.sub("ca"), "a", dir.sub("a"), 30, now));
  ASSERT_TRUE(issueNode(dir.sub("ca"), "b", dir.sub("b"), 30, now));
  // Another node's key.
  std::filesystem::copy(dir.sub("a"), dir.sub("mixed"));
  std::filesystem::remove(dir.sub("mixed/node.key"));
  std::filesystem::copy_file(dir.sub("b/node.key"), dir.sub("mixed/node.key"));
  auto mixed = loadTlsDir(dir.sub("mixed"), now);
  ASSERT_FALSE(mixed);
  EXPECT_THAT(mixed.error().message(), HasSubstr("node.key does not belong to the certificate"));
  // Another domain's root as the trust bundle.
  std::filesystem::copy(dir.sub("a"), dir.sub("wrongroot"));
  std::filesystem::remove(dir.sub("wrongroot/ca.crt"));
  std::filesystem::copy_file(dir.sub("other/ca.crt"), dir.sub("wrongroot/ca.crt"));
  auto wrong = loadTlsDir(dir.sub("wrongroot"), now);
  ASSERT_FALSE(wrong);
  EXPECT_THAT(wrong.error().message(), HasSubstr("does not verify against"));
  // Expired at start; a key others can read; missing files.
  EXPECT_THAT(loadTlsDir(dir.sub("a"), now + 40 * 86400).error().message(), HasSubstr("certificate has expired"));
  ::chmod(dir.sub("b/node.key").c_str(), 0644);
  EXPECT_THAT(loadTlsDir(dir.sub("b"), now).error().message(), HasSubstr("chmod 600"));
  EXPECT_THAT(loadTlsDir(dir.sub("nothing"), now).error().message(), HasSubstr("node.crt"));
}

TEST_F(IdentityTest, NamesAreChecked) {
  EXPECT_FALSE(initCa("Prod Example", dir.sub("x"), 10, now));
  EXPECT_FALSE(initCa("", dir.sub("x"), 10, now));
  ASSERT_TRUE(initCa("td", dir.sub("ca"), 10, now));
  EXPECT_FALSE(issueNode(dir.sub("ca"), "../escape", dir.sub("n"), 10, now));
  EXPECT_FALSE(issueNode(dir.sub("ca"), "a/b", dir.sub("n"), 10, now));
  // A node certificate never outlives its root.
  auto n = issueNode(dir.sub("ca"), "n", dir.sub("n"), 365, now);
  ASSERT_TRUE(n);
  EXPECT_LE(n->notAfter, now + 10 * 86400);
  EXPECT_TRUE(validTrustDomain("cluster.local"));
  EXPECT_FALSE(validTrustDomain("UPPER"));
}

}  // namespace
}  // namespace mesh::identity
