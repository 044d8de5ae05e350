// TLS 1.3 between proxies, handshakes run over an in-memory BIO pair: two nodes of a trust domain
// complete it and learn each other's SPIFFE ID; a client with no certificate, one of another
// trust domain, or an expired one never does; nor does a server of another trust domain.
#include "node/identity/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/err.h>

#include <chrono>
#include <filesystem>

#include "tests/support/env.h"

namespace mesh::identity {
namespace {

using ::testing::HasSubstr;

std::int64_t realNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Outcome {
  bool clientOk = false, serverOk = false;
  std::string clientSawServer, serverSawClient;
};

// Runs both ends until both finish or one fails; then one application byte each way, so that a
// TLS 1.3 client learns of a refusal the server sends after the client's Finished.
Outcome handshake(SSL_CTX* clientCtx, SSL_CTX* serverCtx, const MeshTls* clientTls, const MeshTls* serverTls) {
  Outcome o;
  SSL* c = SSL_new(clientCtx);
  SSL* s = SSL_new(serverCtx);
  BIO *cb = nullptr, *sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(c, cb, cb);
  SSL_set_bio(s, sb, sb);
  SSL_set_connect_state(c);
  SSL_set_accept_state(s);
  bool cDone = false, sDone = false, failed = false;
  for (int i = 0; i < 50 && !(cDone && sDone) && !failed; ++i) {
    for (auto [ssl, done] : {std::pair{c, &cDone}, std::pair{s, &sDone}}) {
      if (*done) continue;
      const int r = SSL_do_handshake(ssl);
      if (r == 1) {
        *done = true;
      } else {
        const int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) failed = true;
      }
    }
  }
  ERR_clear_error();
  if (cDone && sDone) {
    char byte = 'x';
    bool exchanged = SSL_write(c, &byte, 1) == 1 && SSL_read(s, &byte, 1) == 1 && SSL_write(s, &byte, 1) == 1 &&
                     SSL_read(c, &byte, 1) == 1;
    ERR_clear_error();
    o.clientOk = o.serverOk = exchanged;
    if (auto id = clientTls->peerIdentity(c)) o.clientSawServer = *id;
    else o.clientOk = false, o.clientSawServer = id.error().message();
    if (auto id = serverTls->peerIdentity(s)) o.serverSawClient = *id;
    else o.serverOk = false, o.serverSawClient = id.error().message();
  }
  SSL_free(c);
  SSL_free(s);
  return o;
}

class MeshTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Roots made 100 days ago, so that a node certificate can be issued in the past (and expired).
    ASSERT_TRUE(initCa("prod.example", dir.sub("ca"), 3650, now - 100 * 86400));
    ASSERT_TRUE(initCa("other.example", dir.sub("other"), 3650, now - 100 * 86400));
  }
  std::shared_ptr<MeshTls> node(const std::string& ca, const std::string& name, std::int64_t issuedAt, int days) {
    auto n = issueNode(dir.sub(ca), name, dir.sub(name), days, issuedAt);
    EXPECT_TRUE(n) << n.error().message();
    // Loaded as of issue time (an expired one still loads here: meshd would refuse it at start).
    auto id = loadTlsDir(dir.sub(name), issuedAt + 60);
    EXPECT_TRUE(id) << id.error().message();
    auto t = MeshTls::create(*id);
    EXPECT_TRUE(t) << t.error().message();
    return *t;
  }
  testing::TempDir dir;
  std::int64_t now = realNow();
};

TEST_F(MeshTlsTest, TwoNodesOfADomainCompleteTls13AndLearnEachOthersIdentity) {
  auto a = node("ca", "a", now, 30);
  auto b = node("ca", "b", now, 30);
  auto o = handshake(a->client(), b->server(), a.get(), b.get());
  EXPECT_TRUE(o.clientOk) << o.clientSawServer;
  EXPECT_TRUE(o.serverOk) << o.serverSawClient;
  EXPECT_EQ(o.clientSawServer, "spiffe://prod.example/node/b");
  EXPECT_EQ(o.serverSawClient, "spiffe://prod.example/node/a");
}

TEST_F(MeshTlsTest, APeerWithoutAValidCertificateGetsNothing) {
  auto b = node("ca", "b", now, 30);
  // Another trust domain, as a client and as a server.
  auto x = node("other", "x", now, 30);
  EXPECT_FALSE(handshake(x->client(), b->server(), x.get(), b.get()).serverOk);
  EXPECT_FALSE(handshake(b->client(), x->server(), b.get(), x.get()).clientOk);
  // Expired (issued 40 days ago for 30).
  auto old = node("ca", "old", now - 40 * 86400, 30);
  EXPECT_FALSE(handshake(old->client(), b->server(), old.get(), b.get()).serverOk);
  // No certificate at all.
  SSL_CTX* bare = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(bare, SSL_VERIFY_NONE, nullptr);
  auto o = handshake(bare, b->server(), b.get(), b.get());
  EXPECT_FALSE(o.serverOk);
  SSL_CTX_free(bare);
  // Only TLS 1.3 between proxies.
  SSL_CTX* tls12 = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(tls12, TLS1_2_VERSION);
  EXPECT_FALSE(handshake(tls12, b->server(), b.get(), b.get()).serverOk);
  SSL_CTX_free(tls12);
}

}  // namespace
}  // namespace mesh::identity
