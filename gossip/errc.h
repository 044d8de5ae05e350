#pragma once
// Error codes of the gossip module. Decoders return these for hostile or broken input; the
// caller counts them (mesh_gossip_decode_errors_total{reason}) and drops the packet or stream.

#include <system_error>

namespace mesh::gossip {

enum class errc {
  ok = 0,
  truncated,          // input ended inside a value
  malformed,          // not the msgpack or framing we expect
  too_large,          // above a size cap
  unknown_type,       // message type we do not know
  bad_checksum,       // CRC-32 mismatch
  decrypt_failed,     // no installed key opens it, or it is not encrypted when it must be
  not_encrypted,      // plaintext where encryption is required
  encryption_not_configured,  // encrypted input and we have no keyring
  label_mismatch,     // packet or stream label differs from ours
  incompatible_version,  // protocol or delegate version outside the agreed range
  remote_error,       // the peer answered with an err message
  timeout,
  unreachable,        // could not connect or send
  shutdown,           // the memberlist has been shut down
  bad_key,            // a keyring key of the wrong length, or removing the primary key
  left,               // operation not allowed after leaving
  closed,             // the peer closed the stream before sending anything
};

const std::error_category& gossipCategory();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), gossipCategory()}; }
// A short label for metrics ("truncated", "bad_checksum", ...).
const char* errcName(errc e);

}  // namespace mesh::gossip

template <>
struct std::is_error_code_enum<mesh::gossip::errc> : std::true_type {};
