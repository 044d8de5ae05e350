// The egress phase's decision (node/proxy/snapshot.h egressFor): MeshConfig's mode and the
// ExternalServices against a request's authority.

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

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

TEST(EgressTest, ItsOwnListenersAreKnownForWhatTheyAre) {
  auto hp = [](const std::string& s) { return *parseHostPort(s); };
  const HostPort out1 = hp("127.0.1.1:15001"), in1 = hp("127.0.1.1:15006");
  const std::initializer_list<const HostPort*> specific = {&out1, &in1};
  EXPECT_TRUE(ownListener(specific, hp("127.0.1.1:15001")));
  EXPECT_TRUE(ownListener(specific, hp("127.0.1.1:15006")));
  EXPECT_FALSE(ownListener(specific, hp("127.0.1.2:15001")));  // another node's on this host
  EXPECT_FALSE(ownListener(specific, hp("127.0.1.1:8080")));
  // The defaults: outbound on loopback, inbound on every address of the host.
  const HostPort out = hp("127.0.0.1:15001"), in = hp("0.0.0.0:15006");
  const std::initializer_list<const HostPort*> defaults = {&out, &in};
  EXPECT_TRUE(ownListener(defaults, hp("127.0.0.1:15001")));
  EXPECT_FALSE(ownListener(defaults, hp("127.0.0.2:15001")));
  // Other spellings of the same place: the unspecified address, a v4-mapped v6 address.
  EXPECT_TRUE(ownListener(defaults, hp("0.0.0.0:15001")));
  EXPECT_TRUE(ownListener(defaults, hp("[::ffff:127.0.0.1]:15001")));
  EXPECT_TRUE(ownListener(specific, hp("[::ffff:127.0.1.1]:15006")));
  EXPECT_TRUE(ownListener(specific, hp("[::]:15006")));
  EXPECT_TRUE(ownListener(defaults, hp("127.0.0.5:15006")));  // loopback is all ours
  EXPECT_TRUE(ownListener(defaults, hp("0.0.0.0:15006")));
  EXPECT_TRUE(ownListener(defaults, hp("[::1]:15006")));
  EXPECT_FALSE(ownListener(defaults, hp("192.0.2.1:15006")));  // TEST-NET-1: nobody's address
  EXPECT_FALSE(ownListener(defaults, HostPort{"api.example.com", 15006}));  // not an address
  // An address of one of this host's interfaces, whatever they are here.
  ifaddrs* all = nullptr;
  ASSERT_EQ(::getifaddrs(&all), 0);
  int checked = 0;
  for (auto* i = all; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    EXPECT_TRUE(ownListener(defaults, hp(std::string(text) + ":15006"))) << text;
    EXPECT_FALSE(ownListener(defaults, hp(std::string(text) + ":15007"))) << text;
    ++checked;
  }
  ::freeifaddrs(all);
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace mesh::proxy
