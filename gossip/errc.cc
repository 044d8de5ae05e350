#include "gossip/errc.h"

#include <string>

namespace mesh::gossip {
namespace {

class GossipCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mesh.gossip"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::truncated: return "truncated input";
      case errc::malformed: return "malformed message";
      case errc::too_large: return "message too large";
      case errc::unknown_type: return "unknown message type";
      case errc::bad_checksum: return "CRC-32 mismatch";
      case errc::decrypt_failed: return "no installed key could decrypt the message";
      case errc::not_encrypted: return "encryption is configured but the message is not encrypted";
      case errc::encryption_not_configured: return "message is encrypted and encryption is not configured";
      case errc::label_mismatch: return "label mismatch";
      case errc::incompatible_version: return "incompatible protocol version";
      case errc::remote_error: return "remote error";
      case errc::timeout: return "timed out";
      case errc::unreachable: return "peer unreachable";
      case errc::shutdown: return "memberlist is shut down";
      case errc::bad_key: return "bad key";
      case errc::left: return "this node has left";
      case errc::closed: return "EOF";
    }
    return "unknown error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& gossipCategory() {
  static const GossipCategory c;
  return c;
}

const char* errcName(errc e) {
  switch (e) {
    case errc::ok: return "ok";
    case errc::truncated: return "truncated";
    case errc::malformed: return "malformed";
    case errc::too_large: return "too_large";
    case errc::unknown_type: return "unknown_type";
    case errc::bad_checksum: return "bad_checksum";
    case errc::decrypt_failed: return "decrypt_failed";
    case errc::not_encrypted: return "not_encrypted";
    case errc::encryption_not_configured: return "encryption_not_configured";
    case errc::label_mismatch: return "label_mismatch";
    case errc::incompatible_version: return "incompatible_version";
    case errc::remote_error: return "remote_error";
    case errc::timeout: return "timeout";
    case errc::unreachable: return "unreachable";
    case errc::shutdown: return "shutdown";
    case errc::bad_key: return "bad_key";
    case errc::left: return "left";
    case errc::closed: return "closed";
  }
  return "unknown";
}

}  // namespace mesh::gossip
