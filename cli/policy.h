#pragma once
// meshcli policy ...: validate, sign, publish, list, get, history, diff, status, revert (issue 6).
// The commands are registered on meshcli's CLI11 app and run against one node's admin API; the
// formatting helpers are here for the tests.

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cli/client.h"

namespace CLI {
class App;
}

namespace mesh::cli {

class PolicyCommands {
 public:
  explicit PolicyCommands(CLI::App& app);
  ~PolicyCommands();
  // Whether `meshcli policy ...` was given, and running it (exit status).
  bool parsed() const;
  int run(const NodeClient& client);

  struct State;

 private:
  std::unique_ptr<State> s_;
};

// `policy list`: one line a document, after a line on the snapshot and trust.
std::string formatPolicyList(const nlohmann::json& policies);
// `policy history`: one line a version.
std::string formatPolicyHistory(const nlohmann::json& history);
// `policy status`: one line a node, then how many hold the highest version.
std::string formatPolicyStatus(const nlohmann::json& status);
// `policy diff`: a unified diff of two texts, line by line ("" when they are the same).
std::string lineDiff(const std::string& a, const std::string& b, const std::string& labelA, const std::string& labelB);
// "30d", "12h", "90m": durations with days allowed (for --expires).
Result<std::chrono::seconds> parseExpiry(const std::string& text);

}  // namespace mesh::cli
