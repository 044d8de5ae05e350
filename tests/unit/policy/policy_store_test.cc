// The node's acceptance rules for signed policy, its history across restarts, conflicts, trust
// rotation by MeshConfig, and the snapshot it compiles.
#include "node/policy/policy_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "common/metrics.h"
#include "store/store.h"
#include "tests/support/env.h"

namespace mesh::policy {
namespace {

using ::testing::HasSubstr;

PublicKey pub(const KeyPair& k) { return PublicKey{k.publicKey, k.keyId}; }

Document doc(const std::string& yaml) {
  auto r = parseDocuments(yaml, "t.yaml");
  EXPECT_TRUE(r.problems.empty()) << (r.problems.empty() ? "" : r.problems[0].str());
  return r.documents.at(0);
}

std::string route(const std::string& name, const std::string& service) {
  return "kind: Route\nmetadata: {name: " + name + "}\nspec: {hosts: [" + service + "], http: [{route: [{destination: {service: " +
         service + "}}]}]}\n";
}

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k1 = *generateKey();
    k2 = *generateKey();
    k3 = *generateKey();
    openAll();
  }
  void openAll(int threshold = 1) {
    ps.reset();
    db.reset();
    auto opened = store::Store::open(dir.sub("store"), registry);
    ASSERT_TRUE(opened) << opened.error().message();
    db = std::move(opened).value();
    PolicyStore::Options o;
    o.trustedKeys = {pub(k1), pub(k2)};
    o.threshold = threshold;
    o.nowSeconds = [this] { return now; };
    auto p = PolicyStore::open(*db, o, registry);
    ASSERT_TRUE(p) << p.error().message();
    ps = std::move(p).value();
  }
  Signed signedDoc(const std::string& yaml, std::uint64_t version, std::vector<KeyPair> keys, std::int64_t expires = 0) {
    auto s = signDocument(doc(yaml), version, now, expires, keys);
    EXPECT_TRUE(s) << s.error().message();
    return *s;
  }
  PolicyStore::Offered publish(const Signed& s) { return ps->offer(encodeSigned(s), Source::publish); }

  testing::TempDir dir;
  metrics::Registry registry;
  std::unique_ptr<store::Store> db;
  std::unique_ptr<PolicyStore> ps;
  KeyPair k1, k2, k3;
  std::int64_t now = 1'800'000'000;
};

TEST_F(PolicyStoreTest, AcceptsASignedDocumentAndKeepsEveryVersion) {
  auto v1 = publish(signedDoc(route("reviews", "reviews"), 1, {k1}));
  ASSERT_TRUE(v1.held) << v1.refused->message;
  auto v2 = publish(signedDoc(route("reviews", "ratings"), 2, {k2}));
  ASSERT_TRUE(v2.held);
  EXPECT_EQ(ps->current("Route/reviews")->doc.envelope.version, 2u);
  EXPECT_EQ(ps->history("Route/reviews").size(), 2u);
  EXPECT_EQ(ps->version("Route/reviews", 1)->doc.envelope.version, 1u);
  auto snap = ps->snapshot();
  EXPECT_EQ(snap->documents.size(), 1u);
  EXPECT_EQ(snap->documents.at("Route/reviews")->doc.envelope.version, 2u);
  EXPECT_GE(snap->version, 3u);  // the empty one at open, then one per change
}

TEST_F(PolicyStoreTest, RefusesEachBadDocumentAndKeepsThePreviousVersion) {
  ASSERT_TRUE(publish(signedDoc(route("reviews", "reviews"), 5, {k1})).held);
  auto expectRefused = [&](const Signed& s, Refusal reason, const std::string& text) {
    auto r = publish(s);
    ASSERT_FALSE(r.held);
    ASSERT_TRUE(r.refused);
    EXPECT_EQ(r.refused->reason, reason) << r.refused->message;
    EXPECT_THAT(r.refused->message, HasSubstr(text));
    EXPECT_EQ(ps->current("Route/reviews")->doc.envelope.version, 5u);
    EXPECT_EQ(ps->history("Route/reviews").size(), 1u);
  };
  expectRefused(signedDoc(route("reviews", "x"), 6, {k3}), Refusal::untrusted_signer, "which this node does not trust");
  auto bad = signedDoc(route("reviews", "x"), 6, {k1});
  bad.envelope.signatures[0].signature[3] ^= 1;
  expectRefused(bad, Refusal::bad_signature, "signature");
  auto tampered = signedDoc(route("reviews", "x"), 6, {k1});
  tampered.body = doc(route("reviews", "evil")).body;
  expectRefused(tampered, Refusal::digest_mismatch, "digest");
  auto bumped = signedDoc(route("reviews", "x"), 6, {k1});
  bumped.envelope.version = 7;  // the version is signed
  expectRefused(bumped, Refusal::bad_signature, "signature");
  expectRefused(signedDoc(route("reviews", "x"), 4, {k1}), Refusal::not_newer, "not higher than the version held, 5");
  expectRefused(signedDoc(route("reviews", "reviews"), 5, {k1}), Refusal::not_newer, "already held (a replay)");
  expectRefused(signedDoc(route("reviews", "x"), 6, {k1}, now - 10), Refusal::expired, "expired");
  auto invalid = signedDoc(route("reviews", "x"), 6, {k1});
  invalid.body = "not capnp";
  invalid.envelope = *sign("Route", "reviews", 6, invalid.body, now, 0, {k1});
  expectRefused(invalid, Refusal::invalid_body, "not valid");
  auto r = ps->offer(std::string("garbage"), Source::publish);
  EXPECT_EQ(r.refused->reason, Refusal::malformed);
  EXPECT_THAT(registry.render(), HasSubstr("mesh_policy_refused_total{reason=\"untrusted_signer\",source=\"publish\"} 1"));
}

TEST_F(PolicyStoreTest, ThresholdCountsDistinctTrustedSigners) {
  openAll(2);
  auto one = publish(signedDoc(route("a", "a"), 1, {k1}));
  ASSERT_TRUE(one.refused);
  EXPECT_EQ(one.refused->reason, Refusal::below_threshold);
  auto mixed = publish(signedDoc(route("a", "a"), 1, {k1, k3}));
  EXPECT_EQ(mixed.refused->reason, Refusal::untrusted_signer);
  EXPECT_TRUE(publish(signedDoc(route("a", "a"), 1, {k1, k2})).held);
}

TEST_F(PolicyStoreTest, RestartEnforcesWhatWasHeld) {
  ASSERT_TRUE(publish(signedDoc(route("reviews", "reviews"), 1, {k1})).held);
  ASSERT_TRUE(publish(signedDoc(route("reviews", "ratings"), 2, {k1})).held);
  ASSERT_TRUE(publish(signedDoc(route("other", "other"), 9, {k1})).held);
  auto hashBefore = ps->hash();
  openAll();
  EXPECT_EQ(ps->current("Route/reviews")->doc.envelope.version, 2u);
  EXPECT_EQ(ps->history("Route/reviews").size(), 2u);
  EXPECT_EQ(ps->snapshot()->documents.size(), 2u);
  EXPECT_EQ(ps->hash(), hashBefore);
  // Still no rollback after a restart.
  EXPECT_EQ(publish(signedDoc(route("reviews", "x"), 2, {k1})).refused->reason, Refusal::not_newer);
}

TEST_F(PolicyStoreTest, SameVersionTwoBodiesResolveByHigherDigestEverywhere) {
  auto a = signedDoc(route("reviews", "left"), 3, {k1});
  auto b = signedDoc(route("reviews", "right"), 3, {k1});
  const Signed& hi = a.envelope.bodyDigest > b.envelope.bodyDigest ? a : b;
  const Signed& lo = &hi == &a ? b : a;
  // Gossip delivers them in either order; the higher digest ends up current.
  ASSERT_TRUE(ps->offer(encodeSigned(lo), Source::gossip).held);
  auto r = ps->offer(hi.key(), PolicyStore::packedVersion(hi), encodeSigned(hi));
  EXPECT_TRUE(r);
  EXPECT_EQ(ps->current("Route/reviews")->doc.envelope.bodyDigest, hi.envelope.bodyDigest);
  EXPECT_FALSE(ps->offer(encodeSigned(lo), Source::gossip).held);
  EXPECT_GT(PolicyStore::packedVersion(hi), PolicyStore::packedVersion(lo));
  EXPECT_THAT(registry.render(), HasSubstr("mesh_policy_conflicts_total 2"));
}

TEST_F(PolicyStoreTest, PulledRecordsMustBeWhatWasAnnounced) {
  auto s = signedDoc(route("reviews", "reviews"), 3, {k1});
  EXPECT_FALSE(ps->offer("Route/other", PolicyStore::packedVersion(s), encodeSigned(s)));
  EXPECT_FALSE(ps->offer("Route/reviews", PolicyStore::packedVersion(s) + (1 << 24), encodeSigned(s)));
  EXPECT_TRUE(ps->offer("Route/reviews", PolicyStore::packedVersion(s), encodeSigned(s)));
  EXPECT_EQ(ps->versions().at("Route/reviews"), PolicyStore::packedVersion(s));
  EXPECT_EQ(ps->body("Route/reviews")->second, encodeSigned(s));
}

TEST_F(PolicyStoreTest, MeshConfigRotatesTrust) {
  auto pem = [](const KeyPair& k) {
    testing::TempDir d;
    EXPECT_TRUE(writeKeyFiles(k, d.sub("k.key"), d.sub("k.pub")));
    std::ifstream in(d.sub("k.pub"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  std::string mc = "kind: MeshConfig\nmetadata: {name: mesh}\nspec:\n  trustedKeys:\n    - |\n";
  std::string p3 = pem(k3);
  for (std::size_t pos = 0; pos < p3.size();) {
    auto nl = p3.find('\n', pos);
    mc += "      " + p3.substr(pos, nl - pos) + "\n";
    pos = nl + 1;
  }
  mc += "  threshold: 1\n";
  // Signed by a key not trusted yet: refused.
  EXPECT_EQ(publish(signedDoc(mc, 1, {k3})).refused->reason, Refusal::untrusted_signer);
  ASSERT_TRUE(publish(signedDoc(mc, 1, {k1})).held);
  ASSERT_EQ(ps->trustedKeys().size(), 1u);
  EXPECT_EQ(ps->trustedKeys()[0].keyId, k3.keyId);
  EXPECT_EQ(publish(signedDoc(route("a", "a"), 1, {k1})).refused->reason, Refusal::untrusted_signer);
  EXPECT_TRUE(publish(signedDoc(route("a", "a"), 1, {k3})).held);
  openAll();  // the rotation survives a restart with the old flags
  EXPECT_EQ(ps->trustedKeys()[0].keyId, k3.keyId);
  EXPECT_EQ(ps->snapshot()->trustedKeys[0].keyId, k3.keyId);
}

TEST_F(PolicyStoreTest, SnapshotReportsRoutesToUndefinedSubsetsAndTellsListeners) {
  std::vector<std::uint64_t> seen;
  ps->onApply([&](const std::shared_ptr<const Snapshot>& s) { seen.push_back(s->version); });
  ASSERT_TRUE(publish(signedDoc("kind: Route\nmetadata: {name: r}\nspec: {hosts: [reviews], http: [{route: [{destination: {service: reviews, subset: v2}}]}]}\n",
                                1, {k1}))
                  .held);
  EXPECT_THAT(ps->snapshot()->problems.at("Route/r"), HasSubstr("no DestinationPolicy for 'reviews'"));
  ASSERT_TRUE(publish(signedDoc("kind: DestinationPolicy\nmetadata: {name: reviews}\nspec: {service: reviews, subsets: [{name: v2, labels: {version: v2}}]}\n",
                                1, {k1}))
                  .held);
  EXPECT_TRUE(ps->snapshot()->problems.empty());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_LT(seen[0], seen[1]);
}

TEST_F(PolicyStoreTest, NoTrustedKeysMeansNothingIsTaken) {
  ps.reset();
  PolicyStore::Options o;
  o.nowSeconds = [this] { return now; };
  auto p = PolicyStore::open(*db, o, registry);
  ASSERT_TRUE(p);
  ps = std::move(p).value();
  auto r = publish(signedDoc(route("a", "a"), 1, {k1}));
  ASSERT_TRUE(r.refused);
  EXPECT_EQ(r.refused->reason, Refusal::no_trusted_keys);
  EXPECT_THAT(r.refused->message, HasSubstr("--policy-trusted-key"));
}

TEST_F(PolicyStoreTest, SignedFilesRoundTripThroughJson) {
  auto s = signedDoc(route("reviews", "reviews"), 3, {k1, k2}, now + 3600);
  auto back = signedFromJson(signedToJson(s));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(encodeSigned(*back), encodeSigned(s));
  EXPECT_FALSE(signedFromJson("{}"));
  EXPECT_FALSE(signedFromJson("[1,2]"));
  EXPECT_FALSE(signedFromJson("{\"kind\":\"Route\",\"name\":\"a\",\"version\":-1}"));
}

}  // namespace
}  // namespace mesh::policy
