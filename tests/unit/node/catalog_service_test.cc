// Service definitions: the YAML of --services-dir and the JSON of the local API, defaults, and
// an error for every bad field that names the file, the line and the field path.

#include "node/catalog/service.h"

#include <gtest/gtest.h>

namespace mesh::catalog {
namespace {

using namespace std::chrono_literals;

const Defaults kDefaults{"10.0.0.5", "us-east-1a"};

std::string errorOf(const std::string& yaml) {
  auto r = parseServicesYaml(yaml, "services/x.yaml", kDefaults);
  return r.ok() ? std::string("(accepted)") : r.error().message();
}

TEST(ServiceDefs, FullDefinitionAndDefaults) {
  auto r = parseServicesYaml(R"(
service:
  name: reviews
  id: reviews-v2
  port: 9080
  protocol: grpc
  tags: [canary, eu]
  labels: {version: v2, team: books}
  weight: 20
  checks:
    - http: http://127.0.0.1:9080/health
      interval: 5s
      timeout: 1s
      status: 200-299
      failures_before_critical: 4
    - tcp: 127.0.0.1:9080
    - ttl: 30s
    - exec: /usr/local/bin/check --fast
)", "services/reviews.yaml", kDefaults);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  const ServiceDef& s = (*r)[0];
  EXPECT_EQ(s.id, "reviews-v2");
  EXPECT_EQ(s.address, "10.0.0.5");  // the node's
  EXPECT_EQ(s.zone, "us-east-1a");   // the node's
  EXPECT_EQ(s.protocol, Protocol::grpc);
  EXPECT_EQ(s.labels.at("version"), "v2");
  EXPECT_EQ(s.weight, 20u);
  ASSERT_EQ(s.checks.size(), 4u);
  EXPECT_EQ(s.checks[0].kind, CheckDef::Kind::http);
  EXPECT_EQ(s.checks[0].interval, 5s);
  EXPECT_EQ(s.checks[0].statusMax, 299);
  EXPECT_EQ(s.checks[0].failuresBeforeCritical, 4);
  EXPECT_EQ(s.checks[0].id, "reviews-v2:0");
  EXPECT_EQ(s.checks[1].kind, CheckDef::Kind::tcp);
  EXPECT_EQ(s.checks[1].interval, 10s);
  EXPECT_EQ(s.checks[2].ttl, 30s);
  EXPECT_EQ(s.checks[3].target, "/usr/local/bin/check --fast");

  auto many = parseServicesYaml("services:\n  - {name: a, port: 1}\n  - {name: b, port: 2, address: 10.1.1.1}\n",
                                "f.yaml", kDefaults);
  ASSERT_TRUE(many.ok()) << many.error().message();
  EXPECT_EQ(many->size(), 2u);
  EXPECT_EQ((*many)[0].id, "a");
  EXPECT_EQ((*many)[1].address, "10.1.1.1");
  EXPECT_TRUE(parseServicesYaml("", "empty.yaml", kDefaults)->empty());
}

TEST(ServiceDefs, ErrorsNameFileLineAndField) {
  EXPECT_EQ(errorOf("service:\n  name: reviews\n  port: 9080\n  colour: red\n"),
            "services/x.yaml:4: service 'reviews': colour: unknown field (known: address, checks, id, labels, name, port, "
            "protocol, tags, weight, zone)");
  EXPECT_EQ(errorOf("service:\n  name: reviews\n  port: 70000\n"),
            "services/x.yaml:3: service 'reviews': port: 70000 is out of range 1-65535");
  EXPECT_EQ(errorOf("service:\n  name: reviews\n  port: 1\n  checks:\n    - tcp: 127.0.0.1:1\n      interval: 5x\n"),
            "services/x.yaml:6: service 'reviews': checks[0].interval: '5x' is not a duration (e.g. 500ms, 10s, 1m)");
  EXPECT_NE(errorOf("service:\n  name: reviews\n  port: 1\n  checks:\n    - tcp: a:1\n      http: http://x/\n")
                .find("checks[0]: give exactly one of http, tcp, grpc, exec or ttl"),
            std::string::npos);
  EXPECT_NE(errorOf("service:\n  name: r\n  port: 1\n  protocol: udp\n").find("protocol: 'udp' is not http, http2, grpc or tcp"),
            std::string::npos);
  EXPECT_NE(errorOf("service:\n  port: 1\n").find("name: missing"), std::string::npos);
  EXPECT_NE(errorOf("service:\n  name: 'bad name'\n  port: 1\n").find("name: 'bad name' is not a name"), std::string::npos);
  EXPECT_NE(errorOf("service:\n  name: r\n  port: 1\n  checks:\n    - http: ftp://x\n").find("checks[0].http: 'ftp://x' is not an http:// URL"),
            std::string::npos);
  EXPECT_NE(errorOf("service:\n  name: r\n  port: 1\n  checks:\n    - tcp: a:1\n      interval: 1s\n      timeout: 2s\n")
                .find("checks[0].timeout: must be above 0 and at most the interval"),
            std::string::npos);
  EXPECT_NE(errorOf("service: [1, 2\n").find("services/x.yaml:"), std::string::npos);
  EXPECT_NE(errorOf("services:\n  - {name: a, port: 1}\n  - {name: a, port: 2}\n").find("service id 'a' is defined twice"),
            std::string::npos);
  EXPECT_NE(errorOf("service:\n  name: r\n  port: 1\n  labels: {'bad key': x}\n").find("labels.bad key"), std::string::npos);
  EXPECT_EQ(errorOf("service:\n  name: r\n  port: 1\n  checks:\n    - grpc: 127.0.0.1:9090/pkg.Svc\n"), "(accepted)");
  EXPECT_NE(errorOf("service:\n  name: r\n  port: 1\n  checks:\n    - grpc: nohost\n").find("checks[0].grpc: 'nohost'"),
            std::string::npos);
  EXPECT_NE(errorOf("servce:\n  name: r\n").find("servce: unknown field"), std::string::npos);
}

TEST(ServiceDefs, JsonFromTheLocalApi) {
  auto r = parseServiceJson(R"({"name": "web", "port": 8080, "labels": {"version": "v1"},
                                 "checks": [{"ttl": "15s"}]})", "web-1", kDefaults);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->id, "web-1");
  EXPECT_EQ(r->checks[0].kind, CheckDef::Kind::ttl);
  auto clash = parseServiceJson(R"({"name": "web", "id": "other", "port": 1})", "web-1", kDefaults);
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.error().message().find("differs from the id in the path"), std::string::npos);
  EXPECT_FALSE(parseServiceJson("[1]", "x", kDefaults).ok());
  EXPECT_FALSE(parseServiceJson("{", "x", kDefaults).ok());
}

}  // namespace
}  // namespace mesh::catalog
