#pragma once
// Policy documents (issue 6): the seven kinds as operators write them in YAML, parsed against
// the Cap'n Proto schema (schemas/policy.capnp) field by field, validated, and encoded as the
// body that gets signed. The same validation runs in meshcli (every problem, with file, line and
// field path) and on every node for a body that arrives signed (a body that fails is "malformed"
// and refused).
//
// A document:
//   apiVersion: mesh/v1          # optional
//   kind: Route
//   metadata: {name: reviews, version: 7}   # version optional: meshcli asks the cluster
//   spec: {...}                  # the kind's fields, see docs/policy-reference.md
//
// The body is canonical (Cap'n Proto's canonical layout of the kind's struct), so the same spec
// always has the same digest whatever the order of its YAML keys.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::policy {

enum class Kind { route, destinationPolicy, rateLimit, externalService, accessPolicy, gateway, meshConfig };
inline constexpr Kind kAllKinds[] = {Kind::route,        Kind::destinationPolicy, Kind::rateLimit, Kind::externalService,
                                     Kind::accessPolicy, Kind::gateway,           Kind::meshConfig};
const char* kindName(Kind k);  // "Route", ...
std::optional<Kind> parseKind(std::string_view s);  // exact, or any case

// A name as metadata.name: lower-case letters, digits, '-' and '.', 1-253 characters, starting
// and ending with a letter or digit (Kubernetes' DNS subdomain).
bool validName(std::string_view s);
// MeshConfig has one document, named this.
inline constexpr const char* kMeshConfigName = "mesh";

struct Problem {
  std::string source;  // file name; empty for a body from the network
  int line = 0;        // 1-based; 0: unknown
  std::string path;    // field path: "spec.http[0].route[1].weight"
  std::string message;
  // "route.yaml:12: spec.http[0].timeout: '5x' is not a duration"
  std::string str() const;
};

struct Document {
  Kind kind = Kind::route;
  std::string name;
  std::uint64_t version = 0;  // 0: not given
  std::string body;           // canonical Cap'n Proto bytes of the kind's struct
  std::string source;
  int line = 0;               // where the document starts in source
  std::string key() const;    // "Route/reviews"
};

struct ParseResult {
  std::vector<Document> documents;
  std::vector<Problem> problems;  // every problem found, in file order; documents with one are left out
};

// Every YAML document in text ("---" separated; empty documents are skipped).
ParseResult parseDocuments(std::string_view text, const std::string& source);

// References between documents of one set, where they can be known without the cluster: a
// Route naming a subset of a service whose DestinationPolicy is in the set and lacks it; the
// same kind/name twice; two DestinationPolicies or RateLimits for one service.
std::vector<Problem> checkReferences(const std::vector<Document>& docs);

// A body from the network: decodes as the kind's struct (bounded) and passes the same checks as
// a parsed file. The problems carry paths but no lines.
std::vector<Problem> validateBody(Kind kind, std::string_view name, std::string_view body);

// The document as JSON ({"apiVersion","kind","metadata":{"name","version"},"spec"}) or YAML;
// only fields that are set are shown, durations as "5s", enums in UPPER_SNAKE. What these print
// parses back to the same body.
Result<std::string> renderJson(Kind kind, std::string_view name, std::uint64_t version, std::string_view body);
Result<std::string> renderYaml(Kind kind, std::string_view name, std::uint64_t version, std::string_view body);

// Helpers for the proxy-side reader (the snapshot): the names the documents refer to.
struct References {
  std::vector<std::pair<std::string, std::string>> subsets;  // (service, subset) a Route uses
  std::vector<std::string> services;                        // services a Route sends to or mirrors to
};
References referencesOf(Kind kind, std::string_view body);
// For DestinationPolicy: (service, subset names).
std::pair<std::string, std::vector<std::string>> subsetsOf(std::string_view body);
// For MeshConfig: trusted keys (PEM) and threshold; empty keys: no rotation.
std::pair<std::vector<std::string>, std::uint32_t> trustOf(std::string_view body);

}  // namespace mesh::policy
