#pragma once
// Mesh-wide rate limits (RateLimit rules of scope MESH, issue 8): one approximate limit shared
// by every node that enforces a rule (those running an instance of the service it guards).
// Each such node measures the demand its own instances get for the rule (requests a second
// that matched it, admitted or not) and spreads it in a small usage record, one per node, by
// the mesh's dissemination (digests by gossip, bodies pulled); each node then fills its buckets
// at its share of the rate:
//
//   share_i = (d_i + L / (10 n)) / (D + L / 10)      D = sum of d_j over the n enforcing nodes
//
// The shares add up to 1, so the nodes together admit L a second when their views agree; a
// node with no demand keeps a tenth of its fair share (a burst arriving there is not refused
// outright while the others' records catch up). The error comes from views that lag: demand that
// moves faster than records spread (one a second, plus gossip), and nodes that have not heard
// of each other yet (alone, a node takes the whole rate). docs/benchmarks.md has it measured.
//
// Pure: the record's codec and the share; meshd's ProxyService measures, spreads and applies.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "node/proxy/ratelimit.h"

namespace mesh::proxy {

struct UsageRecord {
  std::string node;
  std::uint64_t version = 0;
  std::vector<std::pair<std::string, double>> demand;  // mesh rule id -> requests a second here
  friend bool operator==(const UsageRecord&, const UsageRecord&) = default;
};

// Bounds a record from the network must keep.
inline constexpr std::size_t kMaxUsageEntries = 256;
inline constexpr std::size_t kMaxUsageBytes = 64 * 1024;

std::string encodeUsage(const UsageRecord& r);
Result<UsageRecord> decodeUsage(std::string_view bytes);

// A mesh rule's identity across nodes: "RateLimit/NAME@VERSION#RULE" (two versions never mix).
std::string meshRuleId(const RateLimitTable& table, const RateLimitRule& rule);

// This node's share (0, 1] of a rule's `limit` (requests a second), from its own demand and the
// other enforcing nodes' (requests a second each).
double meshShare(double own, const std::vector<double>& others, double limit);

}  // namespace mesh::proxy
