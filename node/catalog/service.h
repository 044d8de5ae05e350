#pragma once
// A service instance as its owning node defines it (issue 5): name, id, address, port,
// protocol, tags, labels, zone, weight and health checks; parsed from the YAML files of
// --services-dir or the JSON of PUT /v1/agent/services/{id}, and validated field by field.
// Every error names the source (file), the line where there is one, and the field path, e.g.
// "services/reviews.yaml:9: service 'reviews': checks[0].interval: '5x' is not a duration".

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace mesh::catalog {

enum class Protocol { http, http2, grpc, tcp };
const char* protocolName(Protocol p);
std::optional<Protocol> parseProtocol(std::string_view s);

enum class Health { passing, warning, critical };
const char* healthName(Health h);

struct CheckDef {
  enum class Kind { http, tcp, grpc, exec, ttl };
  Kind kind = Kind::tcp;
  std::string id;      // default: "<service id>:<index>"
  std::string name;    // default: the kind and target
  std::string target;  // http: URL; tcp: host:port; grpc: host:port[/service]; exec: command; ttl: empty
  std::string method = "GET";        // http
  int statusMin = 200, statusMax = 399;  // http: a status in range passes
  Duration interval = std::chrono::seconds(10);
  Duration timeout = std::chrono::seconds(2);
  Duration ttl{0};  // ttl: critical when not updated within it
  // No flapping on one bad probe: warning after this many consecutive failures, critical after
  // failuresBeforeCritical, passing again after successBeforePassing consecutive successes.
  int failuresBeforeWarning = 1;
  int failuresBeforeCritical = 3;
  int successBeforePassing = 2;
  Health initial = Health::critical;  // until the first result: no traffic to an unchecked instance
  friend bool operator==(const CheckDef&, const CheckDef&) = default;
};
const char* checkKindName(CheckDef::Kind k);

struct ServiceDef {
  std::string id;       // unique on the node; default: the name
  std::string name;     // what clients ask for ("reviews")
  std::string address;  // default: the node's advertised address
  std::uint16_t port = 0;
  Protocol protocol = Protocol::http;
  std::vector<std::string> tags;
  std::map<std::string, std::string> labels;  // version=v2, ...
  std::string zone;     // default: the node's zone
  std::uint32_t weight = 1;
  std::vector<CheckDef> checks;
  friend bool operator==(const ServiceDef&, const ServiceDef&) = default;
};

// What fills the defaults: the node's advertised address and zone.
struct Defaults {
  std::string address;
  std::string zone = "default";
};

// A YAML document holding `service: {...}` or `services: [{...}, ...]`. `source` names it in
// errors (the file path). A document with any bad service is refused whole.
Result<std::vector<ServiceDef>> parseServicesYaml(std::string_view text, const std::string& source,
                                                  const Defaults& defaults);
// One service as the local API takes it (JSON, the same fields as the YAML); `id` from the URL
// wins over, and must agree with, an id in the body.
Result<ServiceDef> parseServiceJson(std::string_view text, const std::string& id, const Defaults& defaults);

// Field rules shared by both: names, ports, weights, check targets and timings.
Result<void> validate(const ServiceDef& s, const std::string& where);

}  // namespace mesh::catalog
