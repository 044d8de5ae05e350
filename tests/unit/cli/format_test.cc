#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"

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

}  // namespace
}  // namespace mesh::cli
