#pragma once
// Shared by the signed-policy integration tests: real meshd processes trusting keys made by
// the real meshcli, and what each node holds of a document.

#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/env.h"
#include "tests/support/meshd_node.h"

namespace mesh::testing {

struct HeldVersion {
  std::uint64_t version = 0;  // 0: not held (or the node did not answer)
  std::string digest;
  std::uint64_t snapshot = 0;  // the snapshot in force holds this version
  friend bool operator==(const HeldVersion&, const HeldVersion&) = default;
};

// What /v1/policies of a node says of "Kind/name": the version in the snapshot in force.
inline HeldVersion heldOn(const MeshdNode& n, const std::string& key) {
  auto r = n.get("/v1/policies");
  if (!r.ok() || r->status != 200) return {};
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return {};
  for (const auto& p : j.value("policies", nlohmann::json::array())) {
    if (p.value("kind", "") + "/" + p.value("name", "") == key) {
      return {p.value("version", std::uint64_t{0}), p.value("digest", ""), j.value("snapshotVersion", std::uint64_t{0})};
    }
  }
  return {};
}

inline std::size_t historyOn(const MeshdNode& n, const std::string& key) {
  auto slash = key.find('/');
  auto r = n.get("/v1/policies/" + key.substr(0, slash) + "/" + key.substr(slash + 1) + "/history");
  if (!r.ok() || r->status != 200) return 0;
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  return j.is_discarded() ? 0 : j.value("versions", nlohmann::json::array()).size();
}

inline RunResult meshcli(const std::vector<std::string>& args, const std::string& dir,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  std::vector<std::string> argv{meshcliPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout, dir);
}

inline void writeFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

inline std::string routeYaml(const std::string& name, const std::string& service, int timeoutMs = 1000) {
  return "kind: Route\nmetadata:\n  name: " + name + "\nspec:\n  hosts: [" + service +
         "]\n  http:\n    - route:\n        - destination: {service: " + service + "}\n      timeout: " +
         std::to_string(timeoutMs) + "ms\n";
}

}  // namespace mesh::testing
