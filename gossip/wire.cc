#include "gossip/wire.h"

#include "gossip/msgpack_codec.h"

namespace mesh::gossip {
namespace {

using namespace mp;

void typeByte(std::string& out, MessageType t) { out.push_back(static_cast<char>(t)); }

void packSuspectShape(std::string& out, MessageType t, const Suspect& m) {
  typeByte(out, t);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(3);
  key(pk, "From"), raw(pk, m.from);
  key(pk, "Incarnation"), uint(pk, m.incarnation);
  key(pk, "Node"), raw(pk, m.node);
}

void packPushNodeState(Packer& pk, const PushNodeState& s) {
  pk.pack_map(7);
  key(pk, "Addr"), bytes(pk, s.addr);
  key(pk, "Incarnation"), uint(pk, s.incarnation);
  key(pk, "Meta"), bytes(pk, s.meta);
  key(pk, "Name"), raw(pk, s.name);
  key(pk, "Port"), uint(pk, s.port);
  key(pk, "State"), sint(pk, s.state);
  key(pk, "Vsn"), bytes(pk, s.vsn);
}

Result<void> setPing(Ping& m, std::string_view k, const msgpack::object& v) {
  if (k == "SeqNo") return getUint(v, m.seqNo);
  if (k == "Node") return getBytes(v, m.node);
  if (k == "SourceAddr") return getBytes(v, m.sourceAddr);
  if (k == "SourcePort") return getUint(v, m.sourcePort);
  if (k == "SourceNode") return getBytes(v, m.sourceNode);
  return {};
}

Result<void> setPushNodeState(PushNodeState& s, std::string_view k, const msgpack::object& v) {
  if (k == "Name") return getBytes(v, s.name);
  if (k == "Addr") return getBytes(v, s.addr);
  if (k == "Port") return getUint(v, s.port);
  if (k == "Meta") return getBytes(v, s.meta);
  if (k == "Incarnation") return getUint(v, s.incarnation);
  if (k == "State") {
    std::int64_t st = 0;
    if (auto r = getInt(v, st); !r) return r;
    if (st < 0 || st > 255) return fail(errc::malformed, "node state out of range");
    s.state = static_cast<std::uint8_t>(st);
    return {};
  }
  if (k == "Vsn") return getBytes(v, s.vsn);
  return {};
}

Result<PushPullHeader> headerFrom(const msgpack::object& o) {
  PushPullHeader h;
  auto r = forEachField(o, [&](std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Nodes") return getInt(v, h.nodes);
    if (k == "UserStateLen") return getInt(v, h.userStateLen);
    if (k == "Join") return getBool(v, h.join);
    return {};
  });
  if (!r) return r.error();
  if (h.nodes < 0 || h.userStateLen < 0) return fail(errc::malformed, "negative count in push-pull header");
  if (static_cast<std::uint64_t>(h.userStateLen) > kMaxPushStateBytes) {
    return fail(errc::too_large, "push-pull user state above the cap");
  }
  return h;
}

Result<std::int64_t> userMsgLenFrom(const msgpack::object& o) {
  std::int64_t len = 0;
  auto r = forEachField(o, [&](std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "UserMsgLen") return getInt(v, len);
    return {};
  });
  if (!r) return r.error();
  if (len < 0) return fail(errc::malformed, "negative user message length");
  if (static_cast<std::uint64_t>(len) > kMaxPushStateBytes) return fail(errc::too_large, "user message above the cap");
  return len;
}

}  // namespace

const char* messageTypeName(std::uint8_t t) {
  switch (static_cast<MessageType>(t)) {
    case MessageType::ping: return "ping";
    case MessageType::indirectPing: return "indirect_ping";
    case MessageType::ack: return "ack";
    case MessageType::suspect: return "suspect";
    case MessageType::alive: return "alive";
    case MessageType::dead: return "dead";
    case MessageType::pushPull: return "push_pull";
    case MessageType::compound: return "compound";
    case MessageType::user: return "user";
    case MessageType::compress: return "compress";
    case MessageType::encrypt: return "encrypt";
    case MessageType::nack: return "nack";
    case MessageType::hasCrc: return "has_crc";
    case MessageType::err: return "err";
    case MessageType::hasLabel: return "has_label";
    case MessageType::meshRequest: return "mesh_request";
    case MessageType::meshResponse: return "mesh_response";
  }
  return "unknown";
}

const char* nodeStateName(NodeState s) {
  switch (s) {
    case NodeState::alive: return "alive";
    case NodeState::suspect: return "suspect";
    case NodeState::dead: return "dead";
    case NodeState::left: return "left";
  }
  return "unknown";
}

void encode(std::string& out, const Ping& m) {
  typeByte(out, MessageType::ping);
  Sink sink{out};
  Packer pk(sink);
  // omitempty fields are left out when empty, and the map's size counts only what is written.
  std::uint32_t n = 2 + !m.sourceAddr.empty() + (m.sourcePort != 0) + !m.sourceNode.empty();
  pk.pack_map(n);
  key(pk, "Node"), raw(pk, m.node);
  key(pk, "SeqNo"), uint(pk, m.seqNo);
  if (!m.sourceAddr.empty()) key(pk, "SourceAddr"), raw(pk, m.sourceAddr);
  if (!m.sourceNode.empty()) key(pk, "SourceNode"), raw(pk, m.sourceNode);
  if (m.sourcePort != 0) key(pk, "SourcePort"), uint(pk, m.sourcePort);
}

void encode(std::string& out, const IndirectPing& m) {
  typeByte(out, MessageType::indirectPing);
  Sink sink{out};
  Packer pk(sink);
  std::uint32_t n = 5 + !m.sourceAddr.empty() + (m.sourcePort != 0) + !m.sourceNode.empty();
  pk.pack_map(n);
  key(pk, "Nack"), boolean(pk, m.nack);
  key(pk, "Node"), raw(pk, m.node);
  key(pk, "Port"), uint(pk, m.port);
  key(pk, "SeqNo"), uint(pk, m.seqNo);
  if (!m.sourceAddr.empty()) key(pk, "SourceAddr"), raw(pk, m.sourceAddr);
  if (!m.sourceNode.empty()) key(pk, "SourceNode"), raw(pk, m.sourceNode);
  if (m.sourcePort != 0) key(pk, "SourcePort"), uint(pk, m.sourcePort);
  key(pk, "Target"), bytes(pk, m.target);
}

void encode(std::string& out, const Ack& m) {
  typeByte(out, MessageType::ack);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(2);
  key(pk, "Payload"), bytes(pk, m.payload);
  key(pk, "SeqNo"), uint(pk, m.seqNo);
}

void encode(std::string& out, const Nack& m) {
  typeByte(out, MessageType::nack);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(1);
  key(pk, "SeqNo"), uint(pk, m.seqNo);
}

void encode(std::string& out, const ErrResp& m) {
  typeByte(out, MessageType::err);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(1);
  key(pk, "Error"), raw(pk, m.error);
}

void encodeSuspect(std::string& out, const Suspect& m) { packSuspectShape(out, MessageType::suspect, m); }
void encodeDead(std::string& out, const Dead& m) { packSuspectShape(out, MessageType::dead, m); }

void encode(std::string& out, const Alive& m) {
  typeByte(out, MessageType::alive);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(6);
  key(pk, "Addr"), bytes(pk, m.addr);
  key(pk, "Incarnation"), uint(pk, m.incarnation);
  key(pk, "Meta"), bytes(pk, m.meta);
  key(pk, "Node"), raw(pk, m.node);
  key(pk, "Port"), uint(pk, m.port);
  key(pk, "Vsn"), bytes(pk, m.vsn);
}

void encode(std::string& out, const Compress& m) {
  typeByte(out, MessageType::compress);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(2);
  key(pk, "Algo"), uint(pk, m.algo);
  key(pk, "Buf"), bytes(pk, m.buf);
}

void encodePushPull(std::string& out, const std::vector<PushNodeState>& states,
                    std::string_view userState, bool join) {
  typeByte(out, MessageType::pushPull);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(3);
  key(pk, "Join"), boolean(pk, join);
  key(pk, "Nodes"), sint(pk, static_cast<std::int64_t>(states.size()));
  key(pk, "UserStateLen"), sint(pk, static_cast<std::int64_t>(userState.size()));
  for (const auto& s : states) packPushNodeState(pk, s);
  out.append(userState);
}

void encodeUserStream(std::string& out, std::string_view msg) {
  typeByte(out, MessageType::user);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(1);
  key(pk, "UserMsgLen"), sint(pk, static_cast<std::int64_t>(msg.size()));
  out.append(msg);
}

Result<Ping> decodePing(std::string_view body) { return decodeStruct<Ping>(body, setPing); }

Result<IndirectPing> decodeIndirectPing(std::string_view body) {
  return decodeStruct<IndirectPing>(body, [](IndirectPing& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "SeqNo") return getUint(v, m.seqNo);
    if (k == "Target") return getBytes(v, m.target);
    if (k == "Port") return getUint(v, m.port);
    if (k == "Node") return getBytes(v, m.node);
    if (k == "Nack") return getBool(v, m.nack);
    if (k == "SourceAddr") return getBytes(v, m.sourceAddr);
    if (k == "SourcePort") return getUint(v, m.sourcePort);
    if (k == "SourceNode") return getBytes(v, m.sourceNode);
    return {};
  });
}

Result<Ack> decodeAck(std::string_view body) {
  return decodeStruct<Ack>(body, [](Ack& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "SeqNo") return getUint(v, m.seqNo);
    if (k == "Payload") return getBytes(v, m.payload);
    return {};
  });
}

Result<Nack> decodeNack(std::string_view body) {
  return decodeStruct<Nack>(body, [](Nack& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "SeqNo") return getUint(v, m.seqNo);
    return {};
  });
}

Result<ErrResp> decodeErr(std::string_view body) {
  return decodeStruct<ErrResp>(body, [](ErrResp& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Error") return getBytes(v, m.error);
    return {};
  });
}

Result<Suspect> decodeSuspect(std::string_view body) {
  return decodeStruct<Suspect>(body, [](Suspect& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Incarnation") return getUint(v, m.incarnation);
    if (k == "Node") return getBytes(v, m.node);
    if (k == "From") return getBytes(v, m.from);
    return {};
  });
}

Result<Dead> decodeDead(std::string_view body) { return decodeSuspect(body); }

Result<Alive> decodeAlive(std::string_view body) {
  return decodeStruct<Alive>(body, [](Alive& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Incarnation") return getUint(v, m.incarnation);
    if (k == "Node") return getBytes(v, m.node);
    if (k == "Addr") return getBytes(v, m.addr);
    if (k == "Port") return getUint(v, m.port);
    if (k == "Meta") return getBytes(v, m.meta);
    if (k == "Vsn") return getBytes(v, m.vsn);
    return {};
  });
}

Result<Compress> decodeCompress(std::string_view body) {
  return decodeStruct<Compress>(body, [](Compress& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Algo") return getUint(v, m.algo);
    if (k == "Buf") return getBytes(v, m.buf);
    return {};
  });
}

Result<PushPull> decodePushPull(std::string_view body, std::size_t maxNodes) {
  std::size_t off = 0;
  auto h = unpackOne(body, off);
  if (!h) return h.error();
  auto header = headerFrom(h->get());
  if (!header) return header.error();
  if (static_cast<std::uint64_t>(header->nodes) > maxNodes) {
    return fail(errc::too_large, "push-pull with " + std::to_string(header->nodes) + " nodes");
  }
  PushPull out;
  out.header = *header;
  // Never trust a count to size an allocation: each state takes at least 8 bytes on the wire.
  out.states.reserve(std::min<std::size_t>(header->nodes, body.size() / 8));
  for (std::int64_t i = 0; i < header->nodes; ++i) {
    auto o = unpackOne(body, off);
    if (!o) return o.error();
    PushNodeState s;
    auto r = forEachField(o->get(), [&](std::string_view k, const msgpack::object& v) {
      return setPushNodeState(s, k, v);
    });
    if (!r) return r.error();
    out.states.push_back(std::move(s));
  }
  const auto len = static_cast<std::size_t>(header->userStateLen);
  if (body.size() - off < len) return fail(errc::truncated, "push-pull user state is truncated");
  out.userState.assign(body.substr(off, len));
  return out;
}

Result<std::string> decodeUserStream(std::string_view body) {
  std::size_t off = 0;
  auto h = unpackOne(body, off);
  if (!h) return h.error();
  auto len = userMsgLenFrom(h->get());
  if (!len) return len.error();
  if (body.size() - off < static_cast<std::size_t>(*len)) return fail(errc::truncated, "user message is truncated");
  return std::string(body.substr(off, static_cast<std::size_t>(*len)));
}

void encodeMeshMessage(std::string& out, MessageType type, std::string_view body) {
  out.push_back(static_cast<char>(type));
  const auto n = static_cast<std::uint32_t>(body.size());
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.append(body);
}

Result<std::string_view> decodeMeshMessage(std::string_view b) {
  if (b.size() < 4) return fail(errc::truncated, "mesh message without a length");
  const std::uint32_t n = (std::uint32_t(std::uint8_t(b[0])) << 24) | (std::uint32_t(std::uint8_t(b[1])) << 16) |
                          (std::uint32_t(std::uint8_t(b[2])) << 8) | std::uint32_t(std::uint8_t(b[3]));
  if (n > kMaxMeshMessageBytes) return fail(errc::too_large, "mesh message of " + std::to_string(n) + " bytes");
  if (b.size() - 4 != n) return fail(errc::malformed, "mesh message length " + std::to_string(n) + " but " + std::to_string(b.size() - 4) + " bytes");
  return b.substr(4);
}

Result<std::optional<std::size_t>> streamMessageLength(std::string_view buf, std::size_t maxBytes) {
  using Out = std::optional<std::size_t>;
  if (buf.empty()) return Out{};
  const auto type = static_cast<std::uint8_t>(buf[0]);
  std::size_t off = 1;
  // A value that is incomplete means "wait for more"; any other error is final.
  auto skip = [&](msgpack::object_handle* keep) -> Result<bool> {
    auto o = unpackOne(buf, off);
    if (!o) {
      if (o.error().code == errc::truncated && buf.size() < maxBytes) return false;
      return o.error();
    }
    if (keep) *keep = std::move(*o);
    return true;
  };
  auto done = [&](std::size_t total) -> Result<Out> {
    if (total > maxBytes) return fail(errc::too_large, "stream message above " + std::to_string(maxBytes) + " bytes");
    if (buf.size() < total) return Out{};
    return Out{total};
  };
  switch (static_cast<MessageType>(type)) {
    case MessageType::encrypt: {
      if (buf.size() < 5) return Out{};
      std::uint32_t n = (std::uint32_t(std::uint8_t(buf[1])) << 24) | (std::uint32_t(std::uint8_t(buf[2])) << 16) |
                        (std::uint32_t(std::uint8_t(buf[3])) << 8) | std::uint32_t(std::uint8_t(buf[4]));
      if (n > kMaxPushStateBytes) return fail(errc::too_large, "encrypted stream of " + std::to_string(n) + " bytes");
      return done(5 + std::size_t(n));
    }
    case MessageType::meshRequest:
    case MessageType::meshResponse: {
      if (buf.size() < 5) return Out{};
      std::uint32_t n = (std::uint32_t(std::uint8_t(buf[1])) << 24) | (std::uint32_t(std::uint8_t(buf[2])) << 16) |
                        (std::uint32_t(std::uint8_t(buf[3])) << 8) | std::uint32_t(std::uint8_t(buf[4]));
      if (n > kMaxMeshMessageBytes) return fail(errc::too_large, "mesh message of " + std::to_string(n) + " bytes");
      return done(5 + std::size_t(n));
    }
    case MessageType::compress:
    case MessageType::ping:
    case MessageType::ack:
    case MessageType::err: {
      auto r = skip(nullptr);
      if (!r) return r.error();
      if (!*r) return Out{};
      return done(off);
    }
    case MessageType::user: {
      msgpack::object_handle h;
      auto r = skip(&h);
      if (!r) return r.error();
      if (!*r) return Out{};
      auto len = userMsgLenFrom(h.get());
      if (!len) return len.error();
      return done(off + static_cast<std::size_t>(*len));
    }
    case MessageType::pushPull: {
      msgpack::object_handle h;
      auto r = skip(&h);
      if (!r) return r.error();
      if (!*r) return Out{};
      auto header = headerFrom(h.get());
      if (!header) return header.error();
      for (std::int64_t i = 0; i < header->nodes; ++i) {
        auto s = skip(nullptr);
        if (!s) return s.error();
        if (!*s) return Out{};
      }
      return done(off + static_cast<std::size_t>(header->userStateLen));
    }
    default:
      return fail(errc::unknown_type, std::string("stream message type ") + std::to_string(type));
  }
}

std::string makeCompound(const std::vector<std::string_view>& parts) {
  std::string out;
  std::size_t total = 2 + 2 * parts.size();
  for (auto p : parts) total += p.size();
  out.reserve(total);
  out.push_back(static_cast<char>(MessageType::compound));
  out.push_back(static_cast<char>(parts.size()));
  for (auto p : parts) {
    out.push_back(static_cast<char>((p.size() >> 8) & 0xff));
    out.push_back(static_cast<char>(p.size() & 0xff));
  }
  for (auto p : parts) out.append(p);
  return out;
}

Result<CompoundParts> decodeCompound(std::string_view body) {
  if (body.empty()) return fail(errc::truncated, "missing compound length byte");
  const std::size_t n = static_cast<std::uint8_t>(body[0]);
  body.remove_prefix(1);
  if (body.size() < n * 2) return fail(errc::truncated, "truncated compound length table");
  CompoundParts out;
  std::size_t pos = n * 2;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t len = (std::size_t(std::uint8_t(body[2 * i])) << 8) | std::uint8_t(body[2 * i + 1]);
    if (body.size() - pos < len) {
      out.truncated = n - i;
      break;
    }
    out.parts.push_back(body.substr(pos, len));
    pos += len;
  }
  return out;
}

}  // namespace mesh::gossip
