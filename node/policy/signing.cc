#include "node/policy/signing.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

#include "common/errc.h"
#include "common/files.h"

namespace mesh::policy {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

Result<KeyPair> fromPkey(EVP_PKEY* k) {
  KeyPair kp;
  std::size_t n = 32;
  kp.privateKey.resize(32);
  kp.publicKey.resize(32);
  if (EVP_PKEY_get_raw_private_key(k, reinterpret_cast<unsigned char*>(kp.privateKey.data()), &n) != 1 || n != 32) {
    return Error(errc::malformed, "not an Ed25519 private key");
  }
  n = 32;
  if (EVP_PKEY_get_raw_public_key(k, reinterpret_cast<unsigned char*>(kp.publicKey.data()), &n) != 1 || n != 32) {
    return Error(errc::malformed, "not an Ed25519 key");
  }
  kp.keyId = keyIdOf(kp.publicKey);
  return kp;
}

void putField(std::string& out, std::string_view f) {
  const auto n = static_cast<std::uint32_t>(f.size());
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.append(f);
}

}  // namespace

std::string hex(std::string_view b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) out.push_back(d[c >> 4]), out.push_back(d[c & 15]);
  return out;
}

std::string sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n, EVP_sha256(), nullptr);
  return out;
}

std::string keyIdOf(std::string_view publicKey) { return hex(sha256(publicKey)).substr(0, 16); }

Result<KeyPair> generateKey() {
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr),
                                                                  EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return Error(errc::io_error, "Ed25519 key generation failed");
  }
  Pkey k(raw);
  return fromPkey(k.get());
}

Result<void> writeKeyFiles(const KeyPair& key, const std::string& privatePath, const std::string& publicPath) {
  Pkey k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, u8(key.privateKey), key.privateKey.size()));
  if (!k) return Error(errc::invalid_argument, "not an Ed25519 private key");
  auto pem = [&](bool priv) -> std::string {
    Bio b(BIO_new(BIO_s_mem()));
    if (priv) {
      PEM_write_bio_PrivateKey(b.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr);
    } else {
      PEM_write_bio_PUBKEY(b.get(), k.get());
    }
    char* data = nullptr;
    const long n = BIO_get_mem_data(b.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
  };
  // Never overwritten: an existing key may be the only copy of a trusted key.
  if (auto w = files::createNew(privatePath, pem(true), 0600); !w) return w;
  if (auto w = files::createNew(publicPath, pem(false), 0644); !w) return w;
  return {};
}

Result<KeyPair> readPrivateKeyFile(const std::string& path) {
  auto text = files::readPrivate(path);
  if (!text) return text.error();
  Bio b(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  Pkey k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
  if (!k || EVP_PKEY_get_id(k.get()) != EVP_PKEY_ED25519) return Error(errc::malformed, path + ": not an Ed25519 private key (PEM)");
  return fromPkey(k.get());
}

Result<PublicKey> parsePublicKeyPem(std::string_view pem) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Pkey k(PEM_read_bio_PUBKEY(b.get(), nullptr, nullptr, nullptr));
  if (!k || EVP_PKEY_get_id(k.get()) != EVP_PKEY_ED25519) return Error(errc::malformed, "not an Ed25519 public key (PEM)");
  PublicKey p;
  p.publicKey.resize(32);
  std::size_t n = 32;
  if (EVP_PKEY_get_raw_public_key(k.get(), reinterpret_cast<unsigned char*>(p.publicKey.data()), &n) != 1 || n != 32) {
    return Error(errc::malformed, "not an Ed25519 public key");
  }
  p.keyId = keyIdOf(p.publicKey);
  return p;
}

Result<PublicKey> readPublicKeyFile(const std::string& path) {
  auto text = files::read(path);
  if (!text) return text.error();
  auto k = parsePublicKeyPem(*text);
  if (!k) return Error(k.error().code, path + ": " + k.error().message());
  return k;
}

std::string signingBytes(const Envelope& e) {
  std::string out = "mesh-policy-v1";
  putField(out, e.kind);
  putField(out, e.name);
  putField(out, std::to_string(e.version));
  putField(out, e.bodyDigest);
  putField(out, std::to_string(e.issuedAt));
  putField(out, std::to_string(e.expiresAt));
  for (const auto& id : e.signerKeyIds) putField(out, id);
  return out;
}

Result<Envelope> sign(std::string kind, std::string name, std::uint64_t version, std::string_view body,
                      std::int64_t issuedAt, std::int64_t expiresAt, const std::vector<KeyPair>& keys) {
  if (keys.empty()) return Error(errc::invalid_argument, "no signing key");
  Envelope e{std::move(kind), std::move(name), version, sha256(body), issuedAt, expiresAt, {}, {}};
  for (const auto& k : keys) e.signerKeyIds.push_back(k.keyId);
  std::sort(e.signerKeyIds.begin(), e.signerKeyIds.end());
  const std::string msg = signingBytes(e);
  for (const auto& k : keys) {
    Pkey pk(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, u8(k.privateKey), k.privateKey.size()));
    MdCtx ctx(EVP_MD_CTX_new());
    std::string sig(64, '\0');
    std::size_t n = sig.size();
    if (!pk || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pk.get()) != 1 ||
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n, u8(msg), msg.size()) != 1) {
      return Error(errc::io_error, "signing with key " + k.keyId + " failed");
    }
    e.signatures.push_back({k.keyId, sig});
  }
  return e;
}

std::optional<VerifyError> verify(const Envelope& e, std::string_view body, const std::vector<PublicKey>& trusted,
                                  int threshold, std::int64_t now) {
  using R = VerifyError::Reason;
  if (e.bodyDigest.size() != 32) return VerifyError{R::malformed, "the envelope has no SHA-256 body digest"};
  if (sha256(body) != e.bodyDigest) return VerifyError{R::digest_mismatch, "the body does not match the signed digest"};
  if (e.expiresAt != 0 && now >= e.expiresAt) {
    return VerifyError{R::expired, "expired at " + std::to_string(e.expiresAt) + " (now " + std::to_string(now) + ")"};
  }
  if (e.signatures.empty()) return VerifyError{R::below_threshold, "not signed"};
  const std::string msg = signingBytes(e);
  std::set<std::string> good;
  for (const auto& s : e.signatures) {
    if (std::find(e.signerKeyIds.begin(), e.signerKeyIds.end(), s.keyId) == e.signerKeyIds.end()) {
      return VerifyError{R::malformed, "signature by " + s.keyId + ", who is not among the listed signers"};
    }
    auto key = std::find_if(trusted.begin(), trusted.end(), [&](const PublicKey& k) { return k.keyId == s.keyId; });
    if (key == trusted.end()) return VerifyError{R::untrusted_signer, "signed by key " + s.keyId + ", which this node does not trust"};
    Pkey pk(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, u8(key->publicKey), key->publicKey.size()));
    MdCtx ctx(EVP_MD_CTX_new());
    const bool ok = pk && ctx && s.signature.size() == 64 &&
                    EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pk.get()) == 1 &&
                    EVP_DigestVerify(ctx.get(), u8(s.signature), s.signature.size(), u8(msg), msg.size()) == 1;
    if (!ok) return VerifyError{R::bad_signature, "the signature of key " + s.keyId + " does not verify"};
    good.insert(s.keyId);
  }
  if (static_cast<int>(good.size()) < threshold) {
    return VerifyError{R::below_threshold, "signed by " + std::to_string(good.size()) + " trusted key(s); " +
                                               std::to_string(threshold) + " required"};
  }
  return std::nullopt;
}

}  // namespace mesh::policy
