#include "common/net_address.h"

#include <gtest/gtest.h>

namespace mesh {
namespace {

TEST(NetAddress, ParsesIpv4AndIpv6) {
  auto a = parseHostPort("10.1.2.3:7946");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.1.2.3");
  EXPECT_EQ(a->port, 7946);
  EXPECT_FALSE(a->isIpv6);
  EXPECT_EQ(a->toString(), "10.1.2.3:7946");

  auto b = parseHostPort("[fd00::1]:80");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "fd00::1");
  EXPECT_TRUE(b->isIpv6);
  EXPECT_EQ(b->toString(), "[fd00::1]:80");
}

TEST(NetAddress, RefusesWhatIsNotAnAddress) {
  for (const char* bad : {"", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:x", "1.2.3.4:65536",
                          "1.2.3.4:-1", "256.1.1.1:1", "1.2.3:1", "::1:80", "[::1", "[::1]x",
                          "[zz::1]:1", "host.example:80", "1.2.3.4:80 "}) {
    auto r = parseHostPort(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find("is not a valid address"), std::string::npos);
    }
  }
}

TEST(NetAddress, PortZeroOnlyWhenAllowed) {
  EXPECT_FALSE(parseHostPort("127.0.0.1:0").ok());
  EXPECT_TRUE(parseHostPort("127.0.0.1:0", {.allowPortZero = true}).ok());
}

TEST(NetAddress, HostNamesAndDefaultPorts) {
  AddressRules join{.allowHostname = true, .requirePort = false, .defaultPort = 7946};
  auto a = parseHostPort("node-1.example.com", join);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->port, 7946);
  EXPECT_FALSE(a->isIpLiteral);
  EXPECT_FALSE(parseHostPort("-bad.example:1", join).ok());
  EXPECT_FALSE(parseHostPort("a..b:1", join).ok());
  EXPECT_FALSE(parseHostPort("under_score:1", join).ok());
}

TEST(NetAddress, Unspecified) {
  EXPECT_TRUE(parseHostPort("0.0.0.0:1")->isUnspecified());
  EXPECT_TRUE(parseHostPort("[::]:1")->isUnspecified());
  EXPECT_FALSE(parseHostPort("127.0.0.1:1")->isUnspecified());
}

TEST(NetAddress, Hostnames) {
  EXPECT_TRUE(validHostname("a"));
  EXPECT_TRUE(validHostname("a-b.c1.example"));
  EXPECT_FALSE(validHostname("a-"));
  EXPECT_FALSE(validHostname(std::string(64, 'a')));
  EXPECT_TRUE(validHostname(std::string(63, 'a')));
}

}  // namespace
}  // namespace mesh
