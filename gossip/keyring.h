#pragma once
// memberlist's gossip encryption (security.go, keyring.go; PROTOCOL-NOTES.md section 8):
// AES-GCM with a 16, 24 or 32-byte key (AES-128/192/256), a random 12-byte nonce and a 16-byte
// tag. Envelope: [version][nonce][ciphertext][tag]; version 1 has no padding, version 0 pads the
// plaintext with PKCS#7 to whole 16-byte blocks first (sent only at protocol version 1).
// The primary key encrypts; every installed key is tried to decrypt.
//
// Thread rules: a Keyring is owned by one Memberlist and used on its loop; key changes made
// elsewhere (the serf key-rotation queries) are posted to that loop.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::gossip {

inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;

// Bytes an envelope adds: 29 for version 1, at most 45 for version 0.
std::size_t encryptOverhead(std::uint8_t version);
// The exact envelope size for a plaintext of `plainLen` bytes.
std::size_t encryptedLength(std::uint8_t version, std::size_t plainLen);

// Seals `plain` under `key` into out (appended). aad may be empty.
Result<void> encryptPayload(std::uint8_t version, std::string_view key, std::string_view plain,
                            std::string_view aad, std::string& out);
// Opens an envelope with the first key that works.
Result<std::string> decryptPayload(const std::vector<std::string>& keys, std::string_view envelope,
                                   std::string_view aad);

class Keyring {
 public:
  Keyring() = default;
  // The first key becomes the primary. Every key must be 16, 24 or 32 bytes.
  static Result<Keyring> create(std::vector<std::string> keys);

  static Result<void> validateKey(std::string_view key);

  bool empty() const { return keys_.empty(); }
  // keys()[0] is the primary key.
  const std::vector<std::string>& keys() const { return keys_; }
  const std::string& primary() const { return keys_.front(); }

  // Adds a key (no-op when present). It is not used to encrypt until useKey().
  Result<void> addKey(std::string key);
  // Makes an installed key the primary.
  Result<void> useKey(std::string_view key);
  // Removes a key; the primary key cannot be removed.
  Result<void> removeKey(std::string_view key);

 private:
  std::vector<std::string> keys_;
};

// Base64 (standard alphabet, padded), as serf and `--encrypt` write keys.
std::string base64Encode(std::string_view in);
Result<std::string> base64Decode(std::string_view in);

}  // namespace mesh::gossip
