#pragma once
// How meshcli talks to a node: GET/PUT against its admin API, with errors turned into the
// one-line messages meshcli prints.

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/net_address.h"
#include "common/result.h"

namespace mesh::cli {

struct NodeClient {
  HostPort node;
  std::chrono::milliseconds timeout{5000};

  // GET path; the body parsed as JSON. Errors: unreachable node, non-2xx status (with the
  // node's own error message; errc::not_found for 404), or a body that is not JSON.
  Result<nlohmann::json> getJson(const std::string& path) const;
  // Any method with a body; the answer parsed as JSON, errors as for getJson.
  Result<nlohmann::json> call(const std::string& method, const std::string& path, const std::string& body) const;
};

// Prints "meshcli: error: MESSAGE" on stderr (after what was printed on stdout) and returns
// code: meshcli's exit status for that failure.
int fail(const std::string& message, int code = 1);

// Rows as aligned columns, two spaces apart (columnize, as serf's commands print).
std::string columns(const std::vector<std::vector<std::string>>& rows);

// Renders /v1/self as the two-column table `meshcli status` prints.
std::string formatStatus(const nlohmann::json& self);

// Renders /v1/members as the table `meshcli members` prints: one line a member, sorted by name.
std::string formatMembers(const nlohmann::json& members);

// Renders /v1/catalog/services as `meshcli services` prints it: one line a service with its
// instances by health.
std::string formatServices(const nlohmann::json& catalog);
// Renders /v1/catalog/service/NAME as `meshcli service NAME` prints it: one line an instance.
std::string formatService(const nlohmann::json& instances);

// Renders POST /v1/query's answer as `serf query` prints it: dispatch, acks, answers, totals.
std::string formatQuery(const nlohmann::json& result);

// Renders a /v1/keys answer as `serf keys` prints it: per-node failures, the outcome line, and
// for list the keys with how many members hold each ([n/total]).
struct KeysOutput {
  std::string out, err;
  bool ok = false;
};
KeysOutput formatKeys(const std::string& op, const nlohmann::json& result);

}  // namespace mesh::cli
