#pragma once
// A signed policy document (envelope + body) as it is stored, travels between nodes and is
// posted to a node (Cap'n Proto SignedPolicy, schemas/policy.capnp), and as the file
// `meshcli policy sign` writes (JSON, body and signatures in base64). Both decoders are
// bounded and never trust a length they read.

#include <string>
#include <string_view>

#include "common/result.h"
#include "node/policy/document.h"
#include "node/policy/signing.h"

namespace mesh::policy {

struct Signed {
  Envelope envelope;
  std::string body;
  std::string key() const { return envelope.kind + "/" + envelope.name; }
};

// The largest signed record accepted (a body of kMaxBodyBytes and its envelope).
inline constexpr std::size_t kMaxSignedBytes = (1 << 20) + 64 * 1024;

std::string encodeSigned(const Signed& s);
Result<Signed> decodeSigned(std::string_view bytes);

std::string signedToJson(const Signed& s);
Result<Signed> signedFromJson(std::string_view text);

// Signs a parsed document: version and expiry given here (the document's own version is
// used when it has one and version is 0).
Result<Signed> signDocument(const Document& doc, std::uint64_t version, std::int64_t issuedAt,
                            std::int64_t expiresAt, const std::vector<KeyPair>& keys);

}  // namespace mesh::policy
