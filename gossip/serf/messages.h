#pragma once
// serf's messages (serf 0.9.4 messages.go), carried in memberlist user messages and user state:
// one type byte, then one msgpack value written as go-msgpack writes serf's Go structs. Also
// query filters and node tags (serf's tag encoding: 0xff then a msgpack map of strings; meta
// without the magic byte is a legacy role string).
//
// Type numbers are wire format: only append.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "gossip/serf/lamport.h"

namespace mesh::gossip::serf {

enum class MessageType : std::uint8_t {
  leave = 0,
  join = 1,
  pushPull = 2,
  userEvent = 3,
  query = 4,
  queryResponse = 5,
  conflictResponse = 6,
  keyRequest = 7,
  keyResponse = 8,
  relay = 9,
};
const char* messageTypeName(std::uint8_t t);

// Query flags.
inline constexpr std::uint32_t kQueryFlagAck = 1;
inline constexpr std::uint32_t kQueryFlagNoBroadcast = 2;

struct Join {
  LamportTime ltime = 0;
  std::string node;
};

struct Leave {
  LamportTime ltime = 0;
  std::string node;
  bool prune = false;
};

struct UserEvent {
  std::string name;
  std::string payload;
};

struct UserEvents {
  LamportTime ltime = 0;
  std::vector<UserEvent> events;
};

struct PushPull {
  LamportTime ltime = 0;
  std::map<std::string, LamportTime> statusLTimes;
  std::vector<std::string> leftMembers;
  LamportTime eventLTime = 0;
  std::vector<UserEvents> events;
  LamportTime queryLTime = 0;
};

struct UserEventMessage {
  LamportTime ltime = 0;
  std::string name;
  std::string payload;
  bool cc = false;  // may be coalesced
};

struct Query {
  LamportTime ltime = 0;
  std::uint32_t id = 0;
  std::string addr;  // IP bytes of the node to answer
  std::uint16_t port = 0;
  std::string sourceNode;
  std::vector<std::string> filters;  // each encoded by encodeNodeFilter / encodeTagFilter
  std::uint32_t flags = 0;
  std::uint8_t relayFactor = 0;
  std::chrono::nanoseconds timeout{0};
  std::string name;
  std::string payload;
};

struct QueryResponse {
  LamportTime ltime = 0;
  std::uint32_t id = 0;
  std::string from;
  std::uint32_t flags = 0;
  std::string payload;
};

// The relay header in front of a relayed response: where it should finally go.
struct RelayHeader {
  std::string destIp;  // 4 or 16 bytes (Go may send IPv4 as 16-byte IPv4-mapped)
  int destPort = 0;
  std::string destZone;
  std::string destName;
};

struct KeyRequest {
  std::string key;
};

struct KeyResponse {
  bool result = false;
  std::string message;
  std::vector<std::string> keys;  // base64
  std::string primaryKey;         // base64
};

// serf's Member struct, as a conflict response carries it (the answer to "_serf_conflict": whom
// we know under a contested name).
struct MemberRecord {
  std::string name;
  std::string addr;  // IP bytes
  std::uint16_t port = 0;
  std::map<std::string, std::string> tags;
  int status = 0;  // serf's MemberStatus: 0 none, 1 alive, 2 leaving, 3 left, 4 failed
  std::uint8_t pmin = 0, pmax = 0, pcur = 0, dmin = 0, dmax = 0, dcur = 0;
};

// Encoders append [type][msgpack].
void encode(std::string& out, const Join& m);
void encode(std::string& out, const Leave& m);
void encode(std::string& out, const PushPull& m);
void encode(std::string& out, const UserEventMessage& m);
void encode(std::string& out, const Query& m);
void encode(std::string& out, MessageType t, const QueryResponse& m);  // queryResponse or conflictResponse
void encode(std::string& out, const KeyRequest& m);
// [conflictResponse][Member or nil]
void encodeConflictResponse(std::string& out, const MemberRecord* m);
void encode(std::string& out, const KeyResponse& m);
// [relay][header][type][msg], as serf relays a query response through another node.
void encodeRelay(std::string& out, const RelayHeader& h, std::string_view innerMessage);

// Decoders take the bytes after the type byte.
Result<Join> decodeJoin(std::string_view body);
Result<Leave> decodeLeave(std::string_view body);
Result<PushPull> decodePushPull(std::string_view body);
Result<UserEventMessage> decodeUserEvent(std::string_view body);
Result<Query> decodeQuery(std::string_view body);
Result<QueryResponse> decodeQueryResponse(std::string_view body);
Result<KeyRequest> decodeKeyRequest(std::string_view body);
Result<KeyResponse> decodeKeyResponse(std::string_view body);
// Returns the header and the inner message (type byte first), a view into `body`.
Result<std::pair<RelayHeader, std::string_view>> decodeRelay(std::string_view body);

// Query filters: [0][msgpack []string] (node names) or [1][msgpack {Tag, Expr}] (a tag regexp).
std::string encodeNodeFilter(const std::vector<std::string>& nodes);
std::string encodeTagFilter(const std::string& tag, const std::string& expr);
struct Filter {
  enum class Kind { nodes, tag } kind = Kind::nodes;
  std::vector<std::string> nodes;
  std::string tag, expr;
};
Result<Filter> decodeFilter(std::string_view f);

// Node meta as serf writes tags (protocol 3+): 0xff then a msgpack map of strings.
std::string encodeTags(const std::map<std::string, std::string>& tags);
// Meta without the magic byte is a legacy role string: {"role": meta}.
Result<std::map<std::string, std::string>> decodeTags(std::string_view meta);

}  // namespace mesh::gossip::serf
