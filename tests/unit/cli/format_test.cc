#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/policy.h"

namespace mesh::cli {
namespace {

TEST(Status, RendersTheSelfDocumentAsATable) {
  auto self = nlohmann::json::parse(R"({
    "name": "web-1", "cluster": "east", "role": "edge", "version": "0.1.0", "commit": "abc",
    "addresses": {"gossip_bind": "0.0.0.0:7946", "gossip_advertise": "10.0.0.1:7946",
                  "admin": "127.0.0.1:15000"},
    "data_dir": "/var/lib/meshd", "pid": 42, "started_at": "2026-01-01T00:00:00Z",
    "uptime_seconds": 3725.5})");
  EXPECT_EQ(formatStatus(self),
            "NAME      web-1\n"
            "CLUSTER   east\n"
            "ROLE      edge\n"
            "VERSION   0.1.0 (commit abc)\n"
            "GOSSIP    0.0.0.0:7946 (advertised as 10.0.0.1:7946)\n"
            "ADMIN     127.0.0.1:15000\n"
            "DATA DIR  /var/lib/meshd\n"
            "PID       42\n"
            "STARTED   2026-01-01T00:00:00Z (up 1h2m5s)\n");
}

TEST(Status, MissingFieldsShowAsDash) {
  std::string out = formatStatus(nlohmann::json::object());
  EXPECT_NE(out.find("NAME      -\n"), std::string::npos);
  EXPECT_NE(out.find("(up 0s)"), std::string::npos);
}

TEST(NodeClient, UnreachableNodeIsAClearError) {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  NodeClient c{*parseHostPort("127.0.0.1:1"), std::chrono::milliseconds(1000)};
  auto r = c.getJson("/v1/self");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message().rfind("cannot reach node at 127.0.0.1:1: ", 0), 0u) << r.error().message();
}

}  // namespace
}  // namespace mesh::cli

namespace mesh::cli {
namespace {

TEST(Members, RendersATableSortedAsGiven) {
  auto members = nlohmann::json::parse(R"([
    {"name": "a", "addr": "127.0.1.1", "port": 7946, "state": "alive", "status": "alive", "incarnation": 3,
     "meta": "\\xff...", "tags": {"role": "web", "zone": "z1"},
     "protocol": {"current": 2}, "delegate_protocol": {"current": 4}},
    {"name": "bb", "addr": "fd00::1", "port": 7946, "state": "left", "status": "failed", "incarnation": 10,
     "meta": "legacy", "tags": {}, "protocol": {"current": 2}, "delegate_protocol": {"current": 0}}])");
  EXPECT_EQ(formatMembers(members),
            "NAME  ADDRESS         STATE  STATUS  INCARNATION  PROTOCOL  TAGS\n"
            "a     127.0.1.1:7946  alive  alive   3            2/4       role=web,zone=z1\n"
            "bb    [fd00::1]:7946  left   failed  10           2/0       legacy\n");
}

}  // namespace
}  // namespace mesh::cli

namespace mesh::cli {
namespace {

TEST(Query, RendersLikeSerfQueryInArrivalOrder) {
  auto j = nlohmann::json::parse(R"({"name": "who", "ack": true,
    "acks": [{"from": "b", "after_ms": 2.0}, {"from": "a", "after_ms": 1.0}],
    "responses": [{"from": "a", "payload": "hi\\x0a", "payload_base64": "aGkK", "after_ms": 1.5}]})");
  EXPECT_EQ(formatQuery(j),
            "Query 'who' dispatched\nAck from 'a'\nResponse from 'a': hi\nAck from 'b'\nTotal Acks: 2\nTotal Responses: 1\n");
  j["ack"] = false;
  j["acks"] = nlohmann::json::array();
  EXPECT_EQ(formatQuery(j).find("Total Acks"), std::string::npos);
}

TEST(Keys, FailuresNameEveryNodeAndTheOutcome) {
  auto fail = nlohmann::json::parse(R"({"error": "2/3 nodes reported failure", "num_nodes": 3,
    "messages": {"a": "Removing the primary key is not allowed", "bb": "Removing the primary key is not allowed"}})");
  auto o = formatKeys("remove", fail);
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.err,
            "failed:  a   Removing the primary key is not allowed\n"
            "failed:  bb  Removing the primary key is not allowed\n\n"
            "Error removing key: 2/3 nodes reported failure\n");
  auto ok = formatKeys("install", nlohmann::json::parse(R"({"error": "", "num_nodes": 3})"));
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.out, "==> Successfully installed key!\n");
  auto list = formatKeys("list", nlohmann::json::parse(R"({"error": "", "num_nodes": 3,
    "keys": {"K1=": 3, "K2=": 2}, "primary_keys": {"K1=": 3}})"));
  EXPECT_EQ(list.out, "==> Keys gathered, listing cluster keys...\n\nK1=  [3/3] (primary on 3)\nK2=  [2/3]\n");
}

}  // namespace
}  // namespace mesh::cli

namespace mesh::cli {
namespace {

TEST(Catalog, ServicesAndInstances) {
  auto j = nlohmann::json::parse(R"({"web": [
    {"node": "a", "id": "web-1", "address": "10.0.0.1", "port": 80, "protocol": "http", "health": "passing",
     "zone": "z1", "weight": 1, "labels": {"version": "v1"}, "note": "", "node_available": true},
    {"node": "b", "id": "web-2", "address": "10.0.0.2", "port": 80, "protocol": "http", "health": "passing",
     "zone": "z2", "weight": 2, "labels": {}, "note": "", "node_available": false, "stale": true}]})");
  EXPECT_EQ(formatServices(j),
            "SERVICE  INSTANCES  PASSING  WARNING  CRITICAL  NODES\n"
            "web      2          1        0        1         a,b\n");
  EXPECT_EQ(formatService(j["web"]),
            "NODE  ID     ADDRESS      PROTOCOL  HEALTH                       ZONE  WEIGHT  LABELS      NOTE\n"
            "a     web-1  10.0.0.1:80  http      passing                      z1    1       version=v1  -\n"
            "b     web-2  10.0.0.2:80  http      passing (node dead) (stale)  z2    2       -           -\n");
}

TEST(Policy, ListHistoryAndStatus) {
  auto list = nlohmann::json::parse(R"({"node": "a", "snapshotVersion": 7, "threshold": 1, "trustedKeys": ["k1"],
    "policies": [{"kind": "Route", "name": "reviews", "version": 3, "digest": "0123456789abcdef0123", "signers": ["k1"],
                  "expiresAt": 0, "expired": false, "problem": "subset 'v2' is not defined"}]})");
  EXPECT_EQ(formatPolicyList(list),
            "Snapshot 7 on a; threshold 1 of trusted keys k1\n"
            "KIND   NAME     VERSION  DIGEST            SIGNERS  EXPIRES  PROBLEM\n"
            "Route  reviews  3        0123456789abcdef  k1       never    subset 'v2' is not defined\n");
  EXPECT_NE(formatPolicyList(nlohmann::json::parse(R"({"policies": []})")).find("No policy documents held."), std::string::npos);
  auto history = nlohmann::json::parse(R"({"versions": [
    {"version": 1, "digest": "aa", "signers": ["k1", "k2"], "issuedAt": 1800000000, "expiresAt": 0, "current": false},
    {"version": 2, "digest": "bb", "signers": ["k1"], "issuedAt": 1800000060, "expiresAt": 1800086460, "current": true}]})");
  EXPECT_EQ(formatPolicyHistory(history),
            "VERSION  DIGEST  SIGNERS  ISSUED                EXPIRES               \n"
            "1        aa      k1,k2    2027-01-15T08:00:00Z  never                 \n"
            "2        bb      k1       2027-01-15T08:01:00Z  2027-01-16T08:01:00Z  current\n");
  auto status = nlohmann::json::parse(R"({"kind": "Route", "name": "r", "highestVersion": 2, "members": 3, "holdingHighest": 1,
    "nodes": [{"node": "a", "version": 2, "digest": "bb"}, {"node": "b", "version": 0}], "noAnswer": ["c"]})");
  EXPECT_EQ(formatPolicyStatus(status),
            "NODE  VERSION    DIGEST\n"
            "a     2          bb\n"
            "b     none       -\n"
            "c     no answer  -\n"
            "1 of 3 nodes hold version 2 of Route/r\n");
}

TEST(Policy, LineDiffIsUnified) {
  EXPECT_EQ(lineDiff("a\nb\n", "a\nb\n", "x", "y"), "");
  std::string before, after;
  for (int i = 1; i <= 12; ++i) {
    before += "l" + std::to_string(i) + "\n";
    after += (i == 6 ? std::string("changed") : "l" + std::to_string(i)) + "\n";
  }
  EXPECT_EQ(lineDiff(before, after, "v1", "v2"),
            "--- v1\n+++ v2\n@@ -3,7 +3,7 @@\n l3\n l4\n l5\n-l6\n+changed\n l7\n l8\n l9\n");
  EXPECT_EQ(lineDiff("a\n", "", "v1", "v2"), "--- v1\n+++ v2\n@@ -1,1 +1,0 @@\n-a\n");
}

TEST(Policy, ExpiryTakesDays) {
  EXPECT_EQ(parseExpiry("30d")->count(), 30 * 86400);
  EXPECT_EQ(parseExpiry("12h")->count(), 12 * 3600);
  EXPECT_FALSE(parseExpiry("0d"));
  EXPECT_FALSE(parseExpiry("soon"));
  EXPECT_FALSE(parseExpiry("-5m"));
}

}  // namespace
}  // namespace mesh::cli
