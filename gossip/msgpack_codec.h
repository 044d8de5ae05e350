#pragma once
// msgpack as go-msgpack (0.5.5, zero-value MsgpackHandle) writes and reads Go structs: the
// helpers memberlist's and serf's codecs share. Internal to gossip/: include it in .cc files
// only (msgpack-cxx costs seconds of compile time per file).

#include <msgpack.hpp>

#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "gossip/errc.h"
#include "gossip/wire.h"

namespace mesh::gossip::mp {

// ---------------------------------------------------------------------------------------------
// Encoding.

struct Sink {
  std::string& s;
  void write(const char* p, std::size_t n) { s.append(p, n); }
};
using Packer = msgpack::packer<Sink>;

inline void raw(Packer& pk, std::string_view v) {
  pk.pack_v4raw(static_cast<std::uint32_t>(v.size()));
  pk.pack_v4raw_body(v.data(), static_cast<std::uint32_t>(v.size()));
}
inline void key(Packer& pk, std::string_view k) { raw(pk, k); }
// Go writes a nil []byte as nil; an empty one we hold is indistinguishable, so write nil too.
inline void bytes(Packer& pk, std::string_view v) {
  if (v.empty()) {
    pk.pack_nil();
  } else {
    raw(pk, v);
  }
}
inline void uint(Packer& pk, std::uint64_t v) { pk.pack_uint64(v); }
inline void sint(Packer& pk, std::int64_t v) { pk.pack_int64(v); }
inline void boolean(Packer& pk, bool v) { v ? pk.pack_true() : pk.pack_false(); }

// ---------------------------------------------------------------------------------------------
// Decoding. msgpack-cxx does the parsing (bounds-checked, with size limits); its exceptions
// become error codes here, at the boundary.

// Caps on what one packet or stream value may declare: container sizes and string lengths.
// Strings are bounded by the input anyway; these keep a forged header from asking for more.
inline const msgpack::unpack_limit kLimits(/*array=*/1u << 20, /*map=*/64, /*str=*/kMaxPushStateBytes,
                                    /*bin=*/kMaxPushStateBytes, /*ext=*/0, /*depth=*/4);

inline Error fail(errc e, std::string detail) { return Error(e, std::move(detail)); }

// Parses one msgpack value at `off`, advancing it.
inline Result<msgpack::object_handle> unpackOne(std::string_view in, std::size_t& off,
                                               const msgpack::unpack_limit& limits = kLimits) {
  try {
    return msgpack::unpack(in.data(), in.size(), off, nullptr, nullptr, limits);
  } catch (const msgpack::insufficient_bytes&) {
    return fail(errc::truncated, "input ends inside a msgpack value");
  } catch (const msgpack::size_overflow&) {
    // Also depth_size_overflow, which derives from it.
    return fail(errc::too_large, "msgpack value above the size or depth caps");
  } catch (const std::exception& e) {
    return fail(errc::malformed, std::string("bad msgpack: ") + e.what());
  }
}

inline std::optional<std::string_view> asRaw(const msgpack::object& o) {
  if (o.type == msgpack::type::STR) return std::string_view(o.via.str.ptr, o.via.str.size);
  if (o.type == msgpack::type::BIN) return std::string_view(o.via.bin.ptr, o.via.bin.size);
  return std::nullopt;
}

inline Result<void> getBytes(const msgpack::object& o, std::string& out) {
  if (o.type == msgpack::type::NIL) {
    out.clear();
    return {};
  }
  auto r = asRaw(o);
  if (!r) return fail(errc::malformed, "expected bytes");
  out.assign(*r);
  return {};
}

template <typename T>
Result<void> getUint(const msgpack::object& o, T& out) {
  if (o.type == msgpack::type::NIL) {
    out = 0;
    return {};
  }
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > std::numeric_limits<T>::max()) return fail(errc::malformed, "integer overflows its field");
    out = static_cast<T>(o.via.u64);
    return {};
  }
  return fail(errc::malformed, "expected an unsigned integer");
}

inline Result<void> getInt(const msgpack::object& o, std::int64_t& out) {
  if (o.type == msgpack::type::NIL) {
    out = 0;
  } else if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return fail(errc::malformed, "integer overflows its field");
    }
    out = static_cast<std::int64_t>(o.via.u64);
  } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    out = o.via.i64;
  } else {
    return fail(errc::malformed, "expected an integer");
  }
  return {};
}

inline Result<void> getBool(const msgpack::object& o, bool& out) {
  if (o.type == msgpack::type::NIL) {
    out = false;
  } else if (o.type == msgpack::type::BOOLEAN) {
    out = o.via.boolean;
  } else {
    return fail(errc::malformed, "expected a bool");
  }
  return {};
}

// Calls f(key, value) for each entry of a map with string keys; unknown keys are f's to ignore.
template <typename F>
Result<void> forEachField(const msgpack::object& o, F&& f) {
  if (o.type != msgpack::type::MAP) return fail(errc::malformed, "expected a map");
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    auto k = asRaw(o.via.map.ptr[i].key);
    if (!k) return fail(errc::malformed, "map key is not a string");
    if (auto r = f(*k, o.via.map.ptr[i].val); !r) return r;
  }
  return {};
}

// Decodes a whole body made of one map into T with a field setter.
template <typename T, typename Setter>
Result<T> decodeStruct(std::string_view body, Setter&& set, const msgpack::unpack_limit& limits = kLimits) {
  std::size_t off = 0;
  auto oh = unpackOne(body, off, limits);
  if (!oh) return oh.error();
  T out{};
  if (auto r = forEachField(oh->get(), [&](std::string_view k, const msgpack::object& v) { return set(out, k, v); });
      !r) {
    return r.error();
  }
  return out;
}


}  // namespace mesh::gossip::mp
