#pragma once
// Signing policy (issue 6, first part): Ed25519 operator keys, and the signed envelope every
// policy document travels in. A node accepts a document only when at least `threshold` of the
// keys it trusts signed the envelope (TUF-style), the body matches the signed digest, and the
// envelope has not expired; version checks (rollback, replay) come with the store of policies.
//
// What is signed: a canonical byte string of kind, name, version, body digest (SHA-256),
// issued-at, expiry and the signer key ids (each field length-prefixed, so that no two different
// envelopes sign the same bytes).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::policy {

// An Ed25519 key pair. keyId: the first 16 hex digits of SHA-256 of the raw public key.
struct KeyPair {
  std::string privateKey;  // 32 raw bytes (seed)
  std::string publicKey;   // 32 raw bytes
  std::string keyId;
};

struct PublicKey {
  std::string publicKey;  // 32 raw bytes
  std::string keyId;
};

Result<KeyPair> generateKey();
std::string keyIdOf(std::string_view publicKey);

// Key files: the private key as PKCS#8 PEM, written with mode 0600 (refused if the file exists);
// the public key as SubjectPublicKeyInfo PEM. Reading refuses a private key file that others can
// read.
Result<void> writeKeyFiles(const KeyPair& key, const std::string& privatePath, const std::string& publicPath);
Result<KeyPair> readPrivateKeyFile(const std::string& path);
Result<PublicKey> readPublicKeyFile(const std::string& path);
Result<PublicKey> parsePublicKeyPem(std::string_view pem);

struct Signature {
  std::string keyId;
  std::string signature;  // 64 raw bytes
};

struct Envelope {
  std::string kind;  // Route, DestinationPolicy, ...
  std::string name;
  std::uint64_t version = 0;
  std::string bodyDigest;    // SHA-256 of the body, 32 raw bytes
  std::int64_t issuedAt = 0;  // Unix seconds
  std::int64_t expiresAt = 0;  // Unix seconds; 0: never
  std::vector<std::string> signerKeyIds;  // sorted; part of what is signed
  std::vector<Signature> signatures;
};

std::string sha256(std::string_view data);
std::string hex(std::string_view bytes);  // lower case
// The bytes each signer signs.
std::string signingBytes(const Envelope& e);

// Fills the digest from body, the signer list from keys, and one signature per key.
Result<Envelope> sign(std::string kind, std::string name, std::uint64_t version, std::string_view body,
                      std::int64_t issuedAt, std::int64_t expiresAt, const std::vector<KeyPair>& keys);

struct VerifyError {
  enum class Reason { untrusted_signer, bad_signature, digest_mismatch, expired, below_threshold, malformed } reason;
  std::string message;
};

// Checks body against the digest, the expiry against now, every signature from a trusted key,
// and that at least `threshold` distinct trusted keys signed. Unknown signers are refused (not
// ignored): a document signed by a key nobody trusts is a mistake worth reporting.
std::optional<VerifyError> verify(const Envelope& e, std::string_view body, const std::vector<PublicKey>& trusted,
                                  int threshold, std::int64_t now);

}  // namespace mesh::policy
