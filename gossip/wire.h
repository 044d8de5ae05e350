#pragma once
// memberlist's messages as they travel (memberlist 0.2.2, PROTOCOL-NOTES.md sections 2-4): one
// type byte, then one msgpack map written as go-msgpack writes Go structs (keys are the Go field
// names in byte order, strings and []byte both in the old "raw" family, integers in their
// smallest form). Decoders accept every integer width, str8 and bin, nil for bytes, and ignore
// unknown keys, as go-msgpack does; they never read past their input and cap every size.
//
// Message type numbers are wire format: only append.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "gossip/errc.h"

namespace mesh::gossip {

enum class MessageType : std::uint8_t {
  ping = 0,
  indirectPing = 1,
  ack = 2,
  suspect = 3,
  alive = 4,
  dead = 5,
  pushPull = 6,
  compound = 7,
  user = 8,
  compress = 9,
  encrypt = 10,
  nack = 11,
  hasCrc = 12,
  err = 13,
  // Ours, on streams between meshd nodes only (memberlist does not know them, so they are never
  // sent to a Go node): a request and its response for the layers above (the mesh's pulls of
  // catalog and policy records). Framing: [type][4-byte big-endian length][bytes].
  meshRequest = 230,
  meshResponse = 231,
  hasLabel = 244,  // upstream v0.3.0+ label header; never inside a message
};
const char* messageTypeName(std::uint8_t type);  // "ping", ..., "unknown"

// Node states as sent in push-pull (state.go NodeStateType).
enum class NodeState : std::uint8_t { alive = 0, suspect = 1, dead = 2, left = 3 };
const char* nodeStateName(NodeState s);

// Protocol versions we speak (net.go): minimum 1, maximum 5, and 2 by default.
inline constexpr std::uint8_t kProtocolVersionMin = 1;
inline constexpr std::uint8_t kProtocolVersionMax = 5;
inline constexpr std::size_t kMetaMaxSize = 512;
inline constexpr std::size_t kMaxPushStateBytes = 20u << 20;  // streams larger than this are refused

// Bytes fields ([]byte in Go) and strings are both kept in std::string.
struct Ping {
  std::uint32_t seqNo = 0;
  std::string node;        // intended target's name; "" means anyone
  std::string sourceAddr;  // omitempty: 4 or 16 bytes of IP
  std::uint16_t sourcePort = 0;  // omitempty
  std::string sourceNode;        // omitempty
};

struct IndirectPing {
  std::uint32_t seqNo = 0;
  std::string target;  // IP bytes
  std::uint16_t port = 0;
  std::string node;
  bool nack = false;
  std::string sourceAddr;
  std::uint16_t sourcePort = 0;
  std::string sourceNode;
};

struct Ack {
  std::uint32_t seqNo = 0;
  std::string payload;
};

struct Nack {
  std::uint32_t seqNo = 0;
};

struct ErrResp {
  std::string error;
};

// suspect and dead share a shape.
struct Suspect {
  std::uint32_t incarnation = 0;
  std::string node;
  std::string from;
};
using Dead = Suspect;

struct Alive {
  std::uint32_t incarnation = 0;
  std::string node;
  std::string addr;  // IP bytes
  std::uint16_t port = 0;
  std::string meta;
  std::string vsn;  // pmin, pmax, pcur, dmin, dmax, dcur
};

struct PushPullHeader {
  std::int64_t nodes = 0;
  std::int64_t userStateLen = 0;
  bool join = false;
};

struct PushNodeState {
  std::string name;
  std::string addr;
  std::uint16_t port = 0;
  std::string meta;
  std::uint32_t incarnation = 0;
  std::uint8_t state = 0;  // NodeState; kept raw so that unknown states can be ignored
  std::string vsn;
};

struct UserMsgHeader {
  std::int64_t userMsgLen = 0;
};

struct Compress {
  std::uint8_t algo = 0;  // 0 = LZW
  std::string buf;
};

// Encoders append [type][msgpack] to out.
void encode(std::string& out, const Ping& m);
void encode(std::string& out, const IndirectPing& m);
void encode(std::string& out, const Ack& m);
void encode(std::string& out, const Nack& m);
void encode(std::string& out, const ErrResp& m);
void encodeSuspect(std::string& out, const Suspect& m);
void encodeDead(std::string& out, const Dead& m);
void encode(std::string& out, const Alive& m);
void encode(std::string& out, const Compress& m);
// Push-pull body: [6][header][states...][userState].
void encodePushPull(std::string& out, const std::vector<PushNodeState>& states,
                    std::string_view userState, bool join);
// Stream user message: [8][header][msg].
void encodeUserStream(std::string& out, std::string_view msg);

// Decoders take the bytes after the type byte (one msgpack map) and must consume all of them
// only where noted.
Result<Ping> decodePing(std::string_view body);
Result<IndirectPing> decodeIndirectPing(std::string_view body);
Result<Ack> decodeAck(std::string_view body);
Result<Nack> decodeNack(std::string_view body);
Result<ErrResp> decodeErr(std::string_view body);
Result<Suspect> decodeSuspect(std::string_view body);
Result<Dead> decodeDead(std::string_view body);
Result<Alive> decodeAlive(std::string_view body);
Result<Compress> decodeCompress(std::string_view body);

struct PushPull {
  PushPullHeader header;
  std::vector<PushNodeState> states;
  std::string userState;
};
// body: after the type byte. Caps: at most maxNodes states; user state at most
// kMaxPushStateBytes.
Result<PushPull> decodePushPull(std::string_view body, std::size_t maxNodes = 1u << 20);
// body: after the type byte; returns the user message.
Result<std::string> decodeUserStream(std::string_view body);

// How long the stream message at the start of `buf` is (type byte included): a value once
// enough bytes have arrived, std::nullopt while more are needed, or an error when the bytes can
// never form a message. Streams are not length-framed (the msgpack values delimit themselves),
// so a reader calls this on what it has received so far. Caps the total at maxBytes.
Result<std::optional<std::size_t>> streamMessageLength(std::string_view buf, std::size_t maxBytes);
// A meshRequest or meshResponse message; the decoder takes the bytes after the type byte.
inline constexpr std::size_t kMaxMeshMessageBytes = 8u << 20;
void encodeMeshMessage(std::string& out, MessageType type, std::string_view body);
Result<std::string_view> decodeMeshMessage(std::string_view afterType);

// Compound: [7][count u8][count x u16 BE length][parts]. At most 255 parts.
std::string makeCompound(const std::vector<std::string_view>& parts);
struct CompoundParts {
  std::vector<std::string_view> parts;  // views into the input
  std::size_t truncated = 0;            // parts that ran past the end (dropped)
};
// body: after the type byte.
Result<CompoundParts> decodeCompound(std::string_view body);

}  // namespace mesh::gossip
