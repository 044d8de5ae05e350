#include "gossip/serf/messages.h"

#include "gossip/msgpack_codec.h"

namespace mesh::gossip::serf {
namespace {

using namespace mesh::gossip::mp;

// serf's push-pull holds a map entry per member and a list of left members: far more than
// memberlist's 64-key structs, so its own caps.
const msgpack::unpack_limit kSerfLimits(/*array=*/1u << 20, /*map=*/1u << 20, /*str=*/kMaxPushStateBytes,
                                        /*bin=*/kMaxPushStateBytes, /*ext=*/0, /*depth=*/6);

void typeByte(std::string& out, MessageType t) { out.push_back(static_cast<char>(t)); }

Result<msgpack::object_handle> one(std::string_view body, std::size_t& off) { return unpackOne(body, off, kSerfLimits); }

template <typename T, typename Setter>
Result<T> decodeWhole(std::string_view body, Setter&& set) {
  return decodeStruct<T>(body, std::forward<Setter>(set), kSerfLimits);
}

Result<void> getStrings(const msgpack::object& o, std::vector<std::string>& out) {
  out.clear();
  if (o.type == msgpack::type::NIL) return {};
  if (o.type != msgpack::type::ARRAY) return Error(errc::malformed, "expected a list");
  out.reserve(o.via.array.size);
  for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
    std::string s;
    if (auto r = getBytes(o.via.array.ptr[i], s); !r) return r;
    out.push_back(std::move(s));
  }
  return {};
}

void putStrings(Packer& pk, const std::vector<std::string>& v) {
  // go-msgpack writes a nil slice as nil; an empty list we hold is the same to every reader.
  if (v.empty()) {
    pk.pack_nil();
    return;
  }
  pk.pack_array(static_cast<std::uint32_t>(v.size()));
  for (const auto& s : v) raw(pk, s);
}

Result<void> getUserEvent(const msgpack::object& o, UserEvent& e) {
  return forEachField(o, [&](std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Name") return getBytes(v, e.name);
    if (k == "Payload") return getBytes(v, e.payload);
    return {};
  });
}

Result<void> getUserEvents(const msgpack::object& o, UserEvents& u) {
  return forEachField(o, [&](std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, u.ltime);
    if (k == "Events") {
      u.events.clear();
      if (v.type == msgpack::type::NIL) return {};
      if (v.type != msgpack::type::ARRAY) return Error(errc::malformed, "expected a list of events");
      for (std::uint32_t i = 0; i < v.via.array.size; ++i) {
        UserEvent e;
        if (auto r = getUserEvent(v.via.array.ptr[i], e); !r) return r;
        u.events.push_back(std::move(e));
      }
    }
    return {};
  });
}

}  // namespace

const char* messageTypeName(std::uint8_t t) {
  switch (static_cast<MessageType>(t)) {
    case MessageType::leave: return "leave";
    case MessageType::join: return "join";
    case MessageType::pushPull: return "push_pull";
    case MessageType::userEvent: return "user_event";
    case MessageType::query: return "query";
    case MessageType::queryResponse: return "query_response";
    case MessageType::conflictResponse: return "conflict_response";
    case MessageType::keyRequest: return "key_request";
    case MessageType::keyResponse: return "key_response";
    case MessageType::relay: return "relay";
  }
  return "unknown";
}

void encode(std::string& out, const Join& m) {
  typeByte(out, MessageType::join);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(2);
  key(pk, "LTime"), uint(pk, m.ltime);
  key(pk, "Node"), raw(pk, m.node);
}

void encode(std::string& out, const Leave& m) {
  typeByte(out, MessageType::leave);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(3);
  key(pk, "LTime"), uint(pk, m.ltime);
  key(pk, "Node"), raw(pk, m.node);
  key(pk, "Prune"), boolean(pk, m.prune);
}

void encode(std::string& out, const PushPull& m) {
  typeByte(out, MessageType::pushPull);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(6);
  key(pk, "EventLTime"), uint(pk, m.eventLTime);
  key(pk, "Events");
  if (m.events.empty()) {
    pk.pack_nil();
  } else {
    pk.pack_array(static_cast<std::uint32_t>(m.events.size()));
    for (const auto& u : m.events) {
      pk.pack_map(2);
      key(pk, "Events");
      if (u.events.empty()) {
        pk.pack_nil();
      } else {
        pk.pack_array(static_cast<std::uint32_t>(u.events.size()));
        for (const auto& e : u.events) {
          pk.pack_map(2);
          key(pk, "Name"), raw(pk, e.name);
          key(pk, "Payload"), bytes(pk, e.payload);
        }
      }
      key(pk, "LTime"), uint(pk, u.ltime);
    }
  }
  key(pk, "LTime"), uint(pk, m.ltime);
  key(pk, "LeftMembers"), putStrings(pk, m.leftMembers);
  key(pk, "QueryLTime"), uint(pk, m.queryLTime);
  key(pk, "StatusLTimes");
  if (m.statusLTimes.empty()) {
    pk.pack_nil();
  } else {
    pk.pack_map(static_cast<std::uint32_t>(m.statusLTimes.size()));
    for (const auto& [name, t] : m.statusLTimes) raw(pk, name), uint(pk, t);
  }
}

void encode(std::string& out, const UserEventMessage& m) {
  typeByte(out, MessageType::userEvent);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(4);
  key(pk, "CC"), boolean(pk, m.cc);
  key(pk, "LTime"), uint(pk, m.ltime);
  key(pk, "Name"), raw(pk, m.name);
  key(pk, "Payload"), bytes(pk, m.payload);
}

void encode(std::string& out, const Query& m) {
  typeByte(out, MessageType::query);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(11);
  key(pk, "Addr"), bytes(pk, m.addr);
  key(pk, "Filters");
  if (m.filters.empty()) {
    pk.pack_nil();
  } else {
    pk.pack_array(static_cast<std::uint32_t>(m.filters.size()));
    for (const auto& f : m.filters) raw(pk, f);
  }
  key(pk, "Flags"), uint(pk, m.flags);
  key(pk, "ID"), uint(pk, m.id);
  key(pk, "LTime"), uint(pk, m.ltime);
  key(pk, "Name"), raw(pk, m.name);
  key(pk, "Payload"), bytes(pk, m.payload);
  key(pk, "Port"), uint(pk, m.port);
  key(pk, "RelayFactor"), uint(pk, m.relayFactor);
  key(pk, "SourceNode"), raw(pk, m.sourceNode);
  key(pk, "Timeout"), sint(pk, m.timeout.count());
}

void encode(std::string& out, MessageType t, const QueryResponse& m) {
  typeByte(out, t);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(5);
  key(pk, "Flags"), uint(pk, m.flags);
  key(pk, "From"), raw(pk, m.from);
  key(pk, "ID"), uint(pk, m.id);
  key(pk, "LTime"), uint(pk, m.ltime);
  key(pk, "Payload"), bytes(pk, m.payload);
}

void encode(std::string& out, const KeyRequest& m) {
  typeByte(out, MessageType::keyRequest);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(1);
  key(pk, "Key"), bytes(pk, m.key);
}

void encode(std::string& out, const KeyResponse& m) {
  typeByte(out, MessageType::keyResponse);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(4);
  key(pk, "Keys"), putStrings(pk, m.keys);
  key(pk, "Message"), raw(pk, m.message);
  key(pk, "PrimaryKey"), raw(pk, m.primaryKey);
  key(pk, "Result"), boolean(pk, m.result);
}

void encodeConflictResponse(std::string& out, const MemberRecord* m) {
  typeByte(out, MessageType::conflictResponse);
  Sink sink{out};
  Packer pk(sink);
  if (!m) {
    pk.pack_nil();
    return;
  }
  pk.pack_map(11);
  key(pk, "Addr"), bytes(pk, m->addr);
  key(pk, "DelegateCur"), uint(pk, m->dcur);
  key(pk, "DelegateMax"), uint(pk, m->dmax);
  key(pk, "DelegateMin"), uint(pk, m->dmin);
  key(pk, "Name"), raw(pk, m->name);
  key(pk, "Port"), uint(pk, m->port);
  key(pk, "ProtocolCur"), uint(pk, m->pcur);
  key(pk, "ProtocolMax"), uint(pk, m->pmax);
  key(pk, "ProtocolMin"), uint(pk, m->pmin);
  key(pk, "Status"), sint(pk, m->status);
  key(pk, "Tags");
  pk.pack_map(static_cast<std::uint32_t>(m->tags.size()));
  for (const auto& [k, v] : m->tags) raw(pk, k), raw(pk, v);
}

void encodeRelay(std::string& out, const RelayHeader& h, std::string_view innerMessage) {
  typeByte(out, MessageType::relay);
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(2);
  key(pk, "DestAddr");
  pk.pack_map(3);
  key(pk, "IP"), bytes(pk, h.destIp);
  key(pk, "Port"), sint(pk, h.destPort);
  key(pk, "Zone"), raw(pk, h.destZone);
  key(pk, "DestName"), raw(pk, h.destName);
  out.append(innerMessage);
}

Result<Join> decodeJoin(std::string_view body) {
  return decodeWhole<Join>(body, [](Join& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, m.ltime);
    if (k == "Node") return getBytes(v, m.node);
    return {};
  });
}

Result<Leave> decodeLeave(std::string_view body) {
  return decodeWhole<Leave>(body, [](Leave& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, m.ltime);
    if (k == "Node") return getBytes(v, m.node);
    if (k == "Prune") return getBool(v, m.prune);
    return {};
  });
}

Result<PushPull> decodePushPull(std::string_view body) {
  return decodeWhole<PushPull>(body, [](PushPull& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, m.ltime);
    if (k == "EventLTime") return getUint(v, m.eventLTime);
    if (k == "QueryLTime") return getUint(v, m.queryLTime);
    if (k == "LeftMembers") return getStrings(v, m.leftMembers);
    if (k == "StatusLTimes") {
      m.statusLTimes.clear();
      if (v.type == msgpack::type::NIL) return {};
      if (v.type != msgpack::type::MAP) return Error(errc::malformed, "StatusLTimes is not a map");
      for (std::uint32_t i = 0; i < v.via.map.size; ++i) {
        std::string name;
        LamportTime t = 0;
        if (auto r = getBytes(v.via.map.ptr[i].key, name); !r) return r;
        if (auto r = getUint(v.via.map.ptr[i].val, t); !r) return r;
        m.statusLTimes[std::move(name)] = t;
      }
      return {};
    }
    if (k == "Events") {
      m.events.clear();
      if (v.type == msgpack::type::NIL) return {};
      if (v.type != msgpack::type::ARRAY) return Error(errc::malformed, "Events is not a list");
      for (std::uint32_t i = 0; i < v.via.array.size; ++i) {
        if (v.via.array.ptr[i].type == msgpack::type::NIL) continue;  // a nil *userEvents
        UserEvents u;
        if (auto r = getUserEvents(v.via.array.ptr[i], u); !r) return r;
        m.events.push_back(std::move(u));
      }
      return {};
    }
    return {};
  });
}

Result<UserEventMessage> decodeUserEvent(std::string_view body) {
  return decodeWhole<UserEventMessage>(body, [](UserEventMessage& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, m.ltime);
    if (k == "Name") return getBytes(v, m.name);
    if (k == "Payload") return getBytes(v, m.payload);
    if (k == "CC") return getBool(v, m.cc);
    return {};
  });
}

Result<Query> decodeQuery(std::string_view body) {
  return decodeWhole<Query>(body, [](Query& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, m.ltime);
    if (k == "ID") return getUint(v, m.id);
    if (k == "Addr") return getBytes(v, m.addr);
    if (k == "Port") return getUint(v, m.port);
    if (k == "SourceNode") return getBytes(v, m.sourceNode);
    if (k == "Filters") return getStrings(v, m.filters);
    if (k == "Flags") return getUint(v, m.flags);
    if (k == "RelayFactor") return getUint(v, m.relayFactor);
    if (k == "Timeout") {
      std::int64_t ns = 0;
      if (auto r = getInt(v, ns); !r) return r;
      if (ns < 0) return Error(errc::malformed, "negative query timeout");
      m.timeout = std::chrono::nanoseconds(ns);
      return {};
    }
    if (k == "Name") return getBytes(v, m.name);
    if (k == "Payload") return getBytes(v, m.payload);
    return {};
  });
}

Result<QueryResponse> decodeQueryResponse(std::string_view body) {
  return decodeWhole<QueryResponse>(body, [](QueryResponse& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "LTime") return getUint(v, m.ltime);
    if (k == "ID") return getUint(v, m.id);
    if (k == "From") return getBytes(v, m.from);
    if (k == "Flags") return getUint(v, m.flags);
    if (k == "Payload") return getBytes(v, m.payload);
    return {};
  });
}

Result<KeyRequest> decodeKeyRequest(std::string_view body) {
  return decodeWhole<KeyRequest>(body, [](KeyRequest& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Key") return getBytes(v, m.key);
    return {};
  });
}

Result<KeyResponse> decodeKeyResponse(std::string_view body) {
  return decodeWhole<KeyResponse>(body, [](KeyResponse& m, std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "Result") return getBool(v, m.result);
    if (k == "Message") return getBytes(v, m.message);
    if (k == "Keys") return getStrings(v, m.keys);
    if (k == "PrimaryKey") return getBytes(v, m.primaryKey);
    return {};
  });
}

Result<std::pair<RelayHeader, std::string_view>> decodeRelay(std::string_view body) {
  std::size_t off = 0;
  auto oh = one(body, off);
  if (!oh) return oh.error();
  RelayHeader h;
  auto r = forEachField(oh->get(), [&](std::string_view k, const msgpack::object& v) -> Result<void> {
    if (k == "DestName") return getBytes(v, h.destName);
    if (k == "DestAddr") {
      return forEachField(v, [&](std::string_view ak, const msgpack::object& av) -> Result<void> {
        if (ak == "IP") return getBytes(av, h.destIp);
        if (ak == "Zone") return getBytes(av, h.destZone);
        if (ak == "Port") {
          std::int64_t port = 0;
          if (auto pr = getInt(av, port); !pr) return pr;
          if (port < 0 || port > 65535) return Error(errc::malformed, "relay port out of range");
          h.destPort = static_cast<int>(port);
        }
        return {};
      });
    }
    return {};
  });
  if (!r) return r.error();
  if (off >= body.size()) return Error(errc::truncated, "relay without a message");
  return std::pair{h, body.substr(off)};
}

std::string encodeNodeFilter(const std::vector<std::string>& nodes) {
  std::string out(1, '\0');
  Sink sink{out};
  Packer pk(sink);
  pk.pack_array(static_cast<std::uint32_t>(nodes.size()));
  for (const auto& n : nodes) raw(pk, n);
  return out;
}

std::string encodeTagFilter(const std::string& tag, const std::string& expr) {
  std::string out(1, '\1');
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(2);
  key(pk, "Expr"), raw(pk, expr);
  key(pk, "Tag"), raw(pk, tag);
  return out;
}

Result<Filter> decodeFilter(std::string_view f) {
  if (f.empty()) return Error(errc::truncated, "empty filter");
  std::size_t off = 0;
  auto oh = one(f.substr(1), off);
  if (!oh) return oh.error();
  Filter out;
  if (f[0] == 0) {
    out.kind = Filter::Kind::nodes;
    if (auto r = getStrings(oh->get(), out.nodes); !r) return r.error();
    return out;
  }
  if (f[0] == 1) {
    out.kind = Filter::Kind::tag;
    auto r = forEachField(oh->get(), [&](std::string_view k, const msgpack::object& v) -> Result<void> {
      if (k == "Tag") return getBytes(v, out.tag);
      if (k == "Expr") return getBytes(v, out.expr);
      return {};
    });
    if (!r) return r.error();
    return out;
  }
  return Error(errc::unknown_type, "unknown filter type " + std::to_string(static_cast<std::uint8_t>(f[0])));
}

std::string encodeTags(const std::map<std::string, std::string>& tags) {
  std::string out(1, '\xff');
  Sink sink{out};
  Packer pk(sink);
  pk.pack_map(static_cast<std::uint32_t>(tags.size()));
  for (const auto& [k, v] : tags) raw(pk, k), raw(pk, v);
  return out;
}

Result<std::map<std::string, std::string>> decodeTags(std::string_view meta) {
  std::map<std::string, std::string> tags;
  if (meta.empty() || static_cast<std::uint8_t>(meta[0]) != 0xff) {
    tags["role"] = std::string(meta);
    return tags;
  }
  std::size_t off = 0;
  auto oh = one(meta.substr(1), off);
  if (!oh) return oh.error();
  const msgpack::object& o = oh->get();
  if (o.type != msgpack::type::MAP) return Error(errc::malformed, "tags are not a map");
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    std::string k, v;
    if (auto r = getBytes(o.via.map.ptr[i].key, k); !r) return r.error();
    if (auto r = getBytes(o.via.map.ptr[i].val, v); !r) return r.error();
    tags[std::move(k)] = std::move(v);
  }
  return tags;
}

}  // namespace mesh::gossip::serf
