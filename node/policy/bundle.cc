#include "node/policy/bundle.h"

#include <capnp/serialize-packed.h>
#include <kj/io.h>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "common/errc.h"
#include "schemas/policy.capnp.h"

namespace mesh::policy {

namespace {
Result<std::string> unhex(std::string_view s) {
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (s.size() % 2) return Error(errc::malformed, "odd number of hex digits");
  std::string out;
  for (std::size_t i = 0; i < s.size(); i += 2) {
    int hi = v(s[i]), lo = v(s[i + 1]);
    if (hi < 0 || lo < 0) return Error(errc::malformed, "not hex");
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}
}  // namespace

std::string encodeSigned(const Signed& s) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<schema::SignedPolicy>();
  const auto& e = s.envelope;
  r.setKind(e.kind);
  r.setName(e.name);
  r.setVersion(e.version);
  r.setBodyDigest(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(e.bodyDigest.data()), e.bodyDigest.size()));
  r.setIssuedAt(e.issuedAt);
  r.setExpiresAt(e.expiresAt);
  auto ids = r.initSignerKeyIds(static_cast<unsigned>(e.signerKeyIds.size()));
  for (unsigned i = 0; i < ids.size(); ++i) ids.set(i, e.signerKeyIds[i]);
  auto sigs = r.initSignatures(static_cast<unsigned>(e.signatures.size()));
  for (unsigned i = 0; i < sigs.size(); ++i) {
    sigs[i].setKeyId(e.signatures[i].keyId);
    const auto& sig = e.signatures[i].signature;
    sigs[i].setSignature(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(sig.data()), sig.size()));
  }
  r.setBody(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(s.body.data()), s.body.size()));
  // Packed: a body is mostly zero bytes (Cap'n Proto's word layout), and records are what pulls
  // carry and the store keeps.
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, mb);
  auto bytes = out.getArray();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

Result<Signed> decodeSigned(std::string_view bytes) {
  if (bytes.size() > kMaxSignedBytes) {
    return Error(errc::too_large, "signed policy of " + std::to_string(bytes.size()) + " bytes is above the limit of " +
                                      std::to_string(kMaxSignedBytes));
  }
  if (bytes.empty()) return Error(errc::malformed, "empty signed policy record");
  try {
    kj::ArrayInputStream in(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
    capnp::ReaderOptions opts;
    // Unpacked, a record is at most twice the largest body (the reader refuses bigger ones
    // before allocating them).
    opts.traversalLimitInWords = kMaxSignedBytes / 8 * 2;
    opts.nestingLimit = 16;
    Result<Signed> out = Error(errc::malformed, "signed policy record");
    {
      capnp::PackedMessageReader reader(in, opts);
      auto r = reader.getRoot<schema::SignedPolicy>();
      Signed s;
      auto& e = s.envelope;
      e.kind = r.getKind().cStr();
      e.name = r.getName().cStr();
      e.version = r.getVersion();
      auto d = r.getBodyDigest();
      e.bodyDigest.assign(reinterpret_cast<const char*>(d.begin()), d.size());
      e.issuedAt = r.getIssuedAt();
      e.expiresAt = r.getExpiresAt();
      if (r.getSignerKeyIds().size() > 16 || r.getSignatures().size() > 16) {
        return Error(errc::malformed, "signed policy with more than 16 signers");
      }
      for (auto id : r.getSignerKeyIds()) e.signerKeyIds.emplace_back(id.cStr());
      for (auto sig : r.getSignatures()) {
        auto b = sig.getSignature();
        e.signatures.push_back(Signature{sig.getKeyId().cStr(), std::string(reinterpret_cast<const char*>(b.begin()), b.size())});
      }
      auto body = r.getBody();
      s.body.assign(reinterpret_cast<const char*>(body.begin()), body.size());
      out = std::move(s);
    }
    if (in.tryGetReadBuffer().size() != 0) return Error(errc::malformed, "signed policy record with trailing bytes");
    return out;
  } catch (const kj::Exception& ex) {
    return Error(errc::malformed, std::string("signed policy record does not decode: ") + ex.getDescription().cStr());
  }
}

std::string signedToJson(const Signed& s) {
  const auto& e = s.envelope;
  nlohmann::ordered_json j;
  j["kind"] = e.kind;
  j["name"] = e.name;
  j["version"] = e.version;
  j["issuedAt"] = e.issuedAt;
  j["expiresAt"] = e.expiresAt;
  j["bodyDigest"] = hex(e.bodyDigest);
  j["signers"] = e.signerKeyIds;
  j["signatures"] = nlohmann::ordered_json::array();
  for (const auto& sig : e.signatures) j["signatures"].push_back({{"keyId", sig.keyId}, {"signature", base64Encode(sig.signature)}});
  j["body"] = base64Encode(s.body);
  return j.dump(2) + "\n";
}

Result<Signed> signedFromJson(std::string_view text) {
  if (text.size() > kMaxSignedBytes * 2) return Error(errc::too_large, "signed policy file above the size limit");
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error(errc::malformed, "not a signed policy (JSON)");
  auto str = [&](const char* k) -> Result<std::string> {
    if (!j.contains(k) || !j[k].is_string()) return Error(errc::malformed, std::string("signed policy: '") + k + "' missing or not a string");
    return j[k].get<std::string>();
  };
  auto num = [&](const char* k, bool isSigned) -> Result<std::int64_t> {
    if (!j.contains(k) || !j[k].is_number_integer() || (!isSigned && j[k].get<std::int64_t>() < 0)) {
      return Error(errc::malformed, std::string("signed policy: '") + k + "' missing or not a whole number");
    }
    return j[k].get<std::int64_t>();
  };
  Signed s;
  auto& e = s.envelope;
  auto kind = str("kind");
  auto name = str("name");
  auto digest = str("bodyDigest");
  auto body = str("body");
  auto issued = num("issuedAt", true);
  auto expires = num("expiresAt", true);
  if (!kind) return kind.error();
  if (!name) return name.error();
  if (!digest) return digest.error();
  if (!body) return body.error();
  if (!issued) return issued.error();
  if (!expires) return expires.error();
  if (!j.contains("version") || !j["version"].is_number_unsigned()) return Error(errc::malformed, "signed policy: 'version' missing or not a whole number");
  e.kind = *kind;
  e.name = *name;
  e.version = j["version"].get<std::uint64_t>();
  e.issuedAt = *issued;
  e.expiresAt = *expires;
  auto d = unhex(*digest);
  if (!d) return Error(errc::malformed, "signed policy: bodyDigest: " + d.error().message());
  e.bodyDigest = *d;
  auto b = base64Decode(*body);
  if (!b) return Error(errc::malformed, "signed policy: body: " + b.error().message());
  s.body = *b;
  if (!j.contains("signers") || !j["signers"].is_array() || j["signers"].size() > 16) return Error(errc::malformed, "signed policy: 'signers' missing or not a list of at most 16");
  for (const auto& id : j["signers"]) {
    if (!id.is_string()) return Error(errc::malformed, "signed policy: a signer that is not a key id");
    e.signerKeyIds.push_back(id.get<std::string>());
  }
  if (!j.contains("signatures") || !j["signatures"].is_array() || j["signatures"].size() > 16) return Error(errc::malformed, "signed policy: 'signatures' missing or not a list of at most 16");
  for (const auto& sig : j["signatures"]) {
    if (!sig.is_object() || !sig.contains("keyId") || !sig["keyId"].is_string() || !sig.contains("signature") || !sig["signature"].is_string()) {
      return Error(errc::malformed, "signed policy: a signature is not {keyId, signature}");
    }
    auto raw = base64Decode(sig["signature"].get<std::string>());
    if (!raw) return Error(errc::malformed, "signed policy: signature: " + raw.error().message());
    e.signatures.push_back(Signature{sig["keyId"].get<std::string>(), *raw});
  }
  return s;
}

Result<Signed> signDocument(const Document& doc, std::uint64_t version, std::int64_t issuedAt, std::int64_t expiresAt,
                            const std::vector<KeyPair>& keys) {
  if (version == 0) version = doc.version;
  if (version == 0) return Error(errc::invalid_argument, doc.key() + ": no version (give metadata.version or --version)");
  auto e = sign(kindName(doc.kind), doc.name, version, doc.body, issuedAt, expiresAt, keys);
  if (!e) return e.error();
  return Signed{std::move(*e), doc.body};
}

}  // namespace mesh::policy
