// The egress phase's decision (node/proxy/snapshot.h egressFor): MeshConfig's mode and the
// ExternalServices against a request's authority.

#include <gtest/gtest.h>

#include "node/proxy/snapshot.h"

namespace mesh::proxy {
namespace {

EgressPolicy policy(bool registryOnly) {
  EgressPolicy p;
  p.registryOnly = registryOnly;
  ExternalHost api;
  api.document = "ExternalService/api";
  api.hosts = {"api.example.com", "*.cdn.example.com"};
  api.ports = {{80, true}, {8080, false}};
  api.tlsPort = 8443;
  p.externals.push_back(api);
  ExternalHost fixed;
  fixed.document = "ExternalService/fixed";
  fixed.hosts = {"db.example.net"};
  fixed.ports = {{5432, false}};
  fixed.addresses = {"10.1.2.3"};
  p.externals.push_back(fixed);
  return p;
}

TEST(EgressTest, AListedHostAndPortGoesWithItsTlsAndAddress) {
  for (bool registryOnly : {false, true}) {
    auto p = policy(registryOnly);
    auto d = egressFor(p, "API.example.com");  // port 80 by default; names fold
    EXPECT_EQ(d.kind, EgressDecision::Kind::go);
    EXPECT_EQ(d.service, "ExternalService/api");
    EXPECT_TRUE(d.tls);
    EXPECT_EQ(d.port, 8443);  // TLS origination goes to the HTTPS port listed
    EXPECT_EQ(d.host, "api.example.com");
    EXPECT_TRUE(d.address.empty());  // resolved by DNS
    d = egressFor(p, "img.cdn.example.com:8080");
    EXPECT_EQ(d.kind, EgressDecision::Kind::go);
    EXPECT_FALSE(d.tls);
    EXPECT_EQ(d.port, 8080);
    d = egressFor(p, "db.example.net:5432");
    EXPECT_EQ(d.kind, EgressDecision::Kind::go);
    EXPECT_EQ(d.address, "10.1.2.3");
  }
}

TEST(EgressTest, RegistryOnlyBlocksWhatNoExternalServiceListsAndSaysWhy) {
  auto p = policy(true);
  for (const char* a : {"other.example.org", "api.example.com:9999", "cdn.example.com:8080", "10.0.0.7:80", "[::1]:8080"}) {
    auto d = egressFor(p, a);
    EXPECT_EQ(d.kind, EgressDecision::Kind::blocked) << a;
    EXPECT_NE(d.why.find("REGISTRY_ONLY"), std::string::npos) << a;
  }
}

TEST(EgressTest, AllowAnyPassesExternalNamesThroughButNotMeshNames) {
  auto p = policy(false);
  auto d = egressFor(p, "other.example.org:81");
  EXPECT_EQ(d.kind, EgressDecision::Kind::go);
  EXPECT_EQ(d.service, "passthrough");
  EXPECT_EQ(d.port, 81);
  EXPECT_FALSE(d.tls);
  d = egressFor(p, "127.0.0.9:8088");
  EXPECT_EQ(d.kind, EgressDecision::Kind::go);
  EXPECT_EQ(d.address, "127.0.0.9");
  d = egressFor(p, "[::1]:8088");
  EXPECT_EQ(d.kind, EgressDecision::Kind::go);
  EXPECT_EQ(d.address, "::1");
  // One label, or under .mesh: a mesh service's name the catalog lacks (503 no route).
  for (const char* a : {"reviews", "reviews.mesh", "reviews:9080", "", "x:0", "x.example.com:99999", "[::1"}) {
    EXPECT_EQ(egressFor(p, a).kind, EgressDecision::Kind::notExternal) << a;
  }
}

TEST(EgressTest, ADestinationPolicysTlsSimpleOriginatesOnThePortAskedFor) {
  auto p = policy(false);
  p.hostTls["api.example.com"] = {true, "origin.example.com"};
  p.hostTls["plain.example.org"] = {true, ""};
  auto d = egressFor(p, "api.example.com:8080");
  EXPECT_TRUE(d.tls);
  EXPECT_EQ(d.port, 8080);
  EXPECT_EQ(d.sni, "origin.example.com");
  d = egressFor(p, "plain.example.org:443");  // passthrough (ALLOW_ANY), TLS too
  EXPECT_EQ(d.service, "passthrough");
  EXPECT_TRUE(d.tls);
  EXPECT_EQ(d.sni, "plain.example.org");
  p.hostTls["api.example.com"] = {false, ""};  // DISABLE: never, whatever the port says
  d = egressFor(p, "api.example.com");
  EXPECT_FALSE(d.tls);
  EXPECT_EQ(d.port, 80);
}

}  // namespace
}  // namespace mesh::proxy
