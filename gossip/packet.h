#pragma once
// The layers around a memberlist message (PROTOCOL-NOTES.md sections 5, 6, 8, 11), outermost
// first. UDP packet: [label header] [encryption envelope | plaintext] where the plaintext is
// [hasCrc + CRC-32] [compress] [message | compound]. TCP stream: [label header] then one
// message, either [10][u32 length][envelope] or plaintext, the plaintext always LZW-compressed
// when compression is on.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "gossip/keyring.h"

namespace mesh::gossip {

struct CodecSettings {
  bool compress = true;              // EnableCompression
  const Keyring* keyring = nullptr;  // encryption is on when this is non-null and not empty
  bool verifyIncoming = true;        // GossipVerifyIncoming: refuse plaintext when keyed
  bool verifyOutgoing = true;        // GossipVerifyOutgoing: encrypt what we send when keyed
  std::uint8_t encryptionVersion = 1;  // 0 only at protocol version 1
  std::string label;                 // "" = no label header (memberlist 0.2.2 has none)
  bool skipInboundLabelCheck = false;  // inbound must carry no header; treated as ours
  std::size_t maxDecompressed = kMaxDecompressedDefault;
  static constexpr std::size_t kMaxDecompressedDefault = 20u << 20;

  bool encryptionEnabled() const { return keyring && !keyring->empty(); }
};

// Wraps a message (or compound) for UDP: compress when that is shorter, add the CRC when
// `withCrc` (the peer speaks protocol 5), encrypt, prefix the label.
Result<std::string> sealPacket(std::string_view msg, bool withCrc, const CodecSettings& s);

// Unwraps a received UDP packet down to a message: checks the label, decrypts (or, keyed with
// verifyIncoming off, takes undecryptable bytes as plaintext), checks and strips the CRC.
// Compression and compounds are left to the dispatcher, which recurses. Never returns an empty
// message.
Result<std::string> openPacket(std::string_view packet, const CodecSettings& s);

// LZW compress message wrapped as [9][compress{0, lzw(msg)}].
std::string compressMessage(std::string_view msg);
// Body after a [9] type byte -> the decompressed message (type byte first).
Result<std::string> decompressMessage(std::string_view body, std::size_t maxOutput);

// Wraps one stream message (type byte first) for TCP: label header, compression (always, when
// on), encryption with the stream AAD.
Result<std::string> sealStream(std::string_view msg, const CodecSettings& s);

// Reads one message from a stream. Feed it everything received so far; it answers "need more"
// (nullopt), an error, or the plaintext message (type byte first, decrypted and decompressed).
class StreamReader {
 public:
  explicit StreamReader(const CodecSettings& s, std::size_t maxBytes = kMaxPushStateBytesForStreams)
      : settings_(s), maxBytes_(maxBytes) {}
  static constexpr std::size_t kMaxPushStateBytesForStreams = (20u << 20) + 64;

  Result<std::optional<std::string>> feed(std::string_view data);
  // Bytes after the message (a second message on the same stream), once one has been returned.
  std::string_view leftover() const;

 private:
  const CodecSettings& settings_;
  std::size_t maxBytes_;
  std::string buf_;
  std::size_t start_ = 0;  // after the label header, once checked
  bool labelChecked_ = false;
  std::size_t consumed_ = 0;
};

// The label header [244][len][label] (1 to 255 bytes of label).
std::string labelHeader(std::string_view label);

std::uint32_t crc32(std::string_view data);

}  // namespace mesh::gossip
