#include "gossip/packet.h"

#include <zlib.h>

#include "gossip/errc.h"
#include "gossip/lzw.h"
#include "gossip/wire.h"

namespace mesh::gossip {
namespace {

constexpr auto kLabelType = static_cast<char>(MessageType::hasLabel);

// Splits a label header off the front: the label ("" when none) and what follows.
Result<std::pair<std::string_view, std::string_view>> splitLabel(std::string_view in) {
  if (in.empty() || in[0] != kLabelType) return std::pair{std::string_view{}, in};
  if (in.size() < 2) return Error(errc::truncated, "truncated label header");
  const std::size_t n = static_cast<std::uint8_t>(in[1]);
  if (n == 0) return Error(errc::malformed, "empty label in a label header");
  if (in.size() < 2 + n) return Error(errc::truncated, "truncated label");
  return std::pair{in.substr(2, n), in.substr(2 + n)};
}

Result<void> checkLabel(std::string_view got, bool hadHeader, const CodecSettings& s) {
  if (s.skipInboundLabelCheck) {
    if (hadHeader) return Error(errc::label_mismatch, "a label header arrived where none is expected");
    return {};
  }
  if (got != s.label) {
    return Error(errc::label_mismatch, "label '" + std::string(got) + "' where '" + s.label + "' is expected");
  }
  return {};
}

void putU32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

std::uint32_t getU32(std::string_view in) {
  return (std::uint32_t(std::uint8_t(in[0])) << 24) | (std::uint32_t(std::uint8_t(in[1])) << 16) |
         (std::uint32_t(std::uint8_t(in[2])) << 8) | std::uint32_t(std::uint8_t(in[3]));
}

}  // namespace

std::uint32_t crc32(std::string_view data) {
  return static_cast<std::uint32_t>(
      ::crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

std::string labelHeader(std::string_view label) {
  std::string out;
  if (label.empty()) return out;
  out.push_back(kLabelType);
  out.push_back(static_cast<char>(label.size()));
  out.append(label);
  return out;
}

std::string compressMessage(std::string_view msg) {
  std::string out;
  encode(out, Compress{0, lzw::compress(msg)});
  return out;
}

Result<std::string> decompressMessage(std::string_view body, std::size_t maxOutput) {
  auto c = decodeCompress(body);
  if (!c) return c.error();
  if (c->algo != 0) return Error(errc::malformed, "cannot decompress unknown algorithm " + std::to_string(c->algo));
  auto plain = lzw::decompress(c->buf, maxOutput);
  if (!plain) return plain.error();
  if (plain->empty()) return Error(errc::malformed, "compressed payload is empty");
  return plain;
}

Result<std::string> sealPacket(std::string_view msg, bool withCrc, const CodecSettings& s) {
  std::string body;
  if (s.compress) {
    std::string c = compressMessage(msg);
    if (c.size() < msg.size()) body = std::move(c);
  }
  if (body.empty()) body.assign(msg);
  if (withCrc) {
    std::string framed;
    framed.reserve(5 + body.size());
    framed.push_back(static_cast<char>(MessageType::hasCrc));
    putU32(framed, crc32(body));
    framed.append(body);
    body = std::move(framed);
  }
  std::string out = labelHeader(s.label);
  if (s.encryptionEnabled() && s.verifyOutgoing) {
    // For UDP the label (if any) is the AAD.
    if (auto r = encryptPayload(s.encryptionVersion, s.keyring->primary(), body, s.label, out); !r) {
      return r.error();
    }
  } else {
    out.append(body);
  }
  return out;
}

Result<std::string> openPacket(std::string_view packet, const CodecSettings& s) {
  if (packet.empty()) return Error(errc::truncated, "empty packet");
  auto split = splitLabel(packet);
  if (!split) return split.error();
  auto [label, rest] = *split;
  const bool hadHeader = rest.size() != packet.size();
  if (auto r = checkLabel(label, hadHeader, s); !r) return r.error();
  const std::string_view aad = s.skipInboundLabelCheck ? std::string_view(s.label) : label;

  std::string buf;
  if (s.encryptionEnabled()) {
    auto plain = decryptPayload(s.keyring->keys(), rest, aad);
    if (plain) {
      buf = std::move(*plain);
    } else if (!s.verifyIncoming) {
      buf.assign(rest);
    } else {
      return plain.error();
    }
  } else {
    buf.assign(rest);
  }
  if (buf.size() >= 5 && static_cast<std::uint8_t>(buf[0]) == static_cast<std::uint8_t>(MessageType::hasCrc)) {
    const std::uint32_t expected = getU32(std::string_view(buf).substr(1, 4));
    if (crc32(std::string_view(buf).substr(5)) != expected) {
      return Error(errc::bad_checksum, "invalid checksum for UDP packet");
    }
    buf.erase(0, 5);
  }
  // A Go node indexes buf[0] unchecked; we refuse the empty message instead.
  if (buf.empty()) return Error(errc::truncated, "empty message");
  return buf;
}

Result<std::string> sealStream(std::string_view msg, const CodecSettings& s) {
  std::string body;
  if (s.compress) {
    body = compressMessage(msg);
  } else {
    body.assign(msg);
  }
  std::string out = labelHeader(s.label);
  if (s.encryptionEnabled() && s.verifyOutgoing) {
    const std::size_t headerAt = out.size();
    out.push_back(static_cast<char>(MessageType::encrypt));
    putU32(out, static_cast<std::uint32_t>(encryptedLength(s.encryptionVersion, body.size())));
    // Stream AAD: the 5 header bytes, then the label.
    std::string aad = out.substr(headerAt, 5) + s.label;
    if (auto r = encryptPayload(s.encryptionVersion, s.keyring->primary(), body, aad, out); !r) {
      return r.error();
    }
  } else {
    out.append(body);
  }
  return out;
}

Result<std::optional<std::string>> StreamReader::feed(std::string_view data) {
  using Out = std::optional<std::string>;
  buf_.append(data);
  if (!labelChecked_) {
    if (buf_.empty()) return Out{};
    if (buf_[0] == kLabelType) {
      if (buf_.size() < 2) return Out{};
      const std::size_t n = static_cast<std::uint8_t>(buf_[1]);
      if (buf_.size() < 2 + n) return Out{};
    }
    auto split = splitLabel(buf_);
    if (!split) return split.error();
    const bool hadHeader = split->second.size() != buf_.size();
    if (auto r = checkLabel(split->first, hadHeader, settings_); !r) return r.error();
    start_ = buf_.size() - split->second.size();
    labelChecked_ = true;
  }
  std::string_view rest = std::string_view(buf_).substr(start_);
  auto len = streamMessageLength(rest, maxBytes_);
  if (!len) return len.error();
  if (!*len) return Out{};
  const std::string_view frame = rest.substr(0, **len);
  consumed_ = start_ + **len;

  std::string plain;
  const auto type = static_cast<std::uint8_t>(frame[0]);
  if (type == static_cast<std::uint8_t>(MessageType::encrypt)) {
    if (!settings_.encryptionEnabled()) {
      return Error(errc::encryption_not_configured, "Remote state is encrypted and encryption is not configured");
    }
    std::string aad(frame.substr(0, 5));
    aad += settings_.label;
    auto p = decryptPayload(settings_.keyring->keys(), frame.substr(5), aad);
    if (!p) return p.error();
    plain = std::move(*p);
  } else if (settings_.encryptionEnabled() && settings_.verifyIncoming) {
    return Error(errc::not_encrypted, "Encryption is configured but remote state is not encrypted");
  } else {
    plain.assign(frame);
  }
  if (plain.empty()) return Error(errc::truncated, "empty stream message");
  if (static_cast<std::uint8_t>(plain[0]) == static_cast<std::uint8_t>(MessageType::compress)) {
    auto d = decompressMessage(std::string_view(plain).substr(1), settings_.maxDecompressed);
    if (!d) return d.error();
    plain = std::move(*d);
  }
  return Out{std::move(plain)};
}

std::string_view StreamReader::leftover() const { return std::string_view(buf_).substr(consumed_); }

}  // namespace mesh::gossip
