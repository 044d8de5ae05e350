#include "gossip/keyring.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>

#include "common/base64.h"
#include "gossip/errc.h"

namespace mesh::gossip {
namespace {

constexpr std::size_t kBlock = 16;

const EVP_CIPHER* cipherFor(std::size_t keyLen) {
  switch (keyLen) {
    case 16: return EVP_aes_128_gcm();
    case 24: return EVP_aes_192_gcm();
    case 32: return EVP_aes_256_gcm();
    default: return nullptr;
  }
}

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// AES-GCM open of ciphertext||tag; nullopt-like error when the tag does not verify.
Result<std::string> open(std::string_view key, std::string_view nonce, std::string_view sealed,
                         std::string_view aad) {
  const EVP_CIPHER* cipher = cipherFor(key.size());
  if (!cipher) return Error(errc::bad_key, "key must be 16, 24 or 32 bytes");
  if (sealed.size() < kTagSize) return Error(errc::decrypt_failed, "envelope too short");
  const std::string_view ct = sealed.substr(0, sealed.size() - kTagSize);
  const std::string_view tag = sealed.substr(sealed.size() - kTagSize);
  Ctx ctx(EVP_CIPHER_CTX_new());
  std::string plain(ct.size(), '\0');
  int len = 0;
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce.size()), nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, u8(key), u8(nonce)) == 1;
  if (ok && !aad.empty()) {
    ok = EVP_DecryptUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) == 1;
  }
  if (ok) {
    ok = EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &len, u8(ct),
                           static_cast<int>(ct.size())) == 1;
  }
  if (ok) {
    ok = EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize),
                             const_cast<char*>(tag.data())) == 1;
  }
  int fin = 0;
  if (ok) ok = EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()) + len, &fin) == 1;
  if (!ok) return Error(errc::decrypt_failed, "authentication failed");
  return plain;
}

}  // namespace

std::size_t encryptOverhead(std::uint8_t version) { return version == 0 ? 45 : 29; }

std::size_t encryptedLength(std::uint8_t version, std::size_t plainLen) {
  if (version >= 1) return 1 + kNonceSize + plainLen + kTagSize;
  return 1 + kNonceSize + plainLen + (kBlock - plainLen % kBlock) + kTagSize;
}

Result<void> encryptPayload(std::uint8_t version, std::string_view key, std::string_view plain,
                            std::string_view aad, std::string& out) {
  const EVP_CIPHER* cipher = cipherFor(key.size());
  if (!cipher) return Error(errc::bad_key, "key must be 16, 24 or 32 bytes");
  if (version > 1) return Error(errc::malformed, "unsupported encryption version");
  unsigned char nonce[kNonceSize];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return Error(errc::malformed, "no randomness for a nonce");
  std::string padded;
  std::string_view src = plain;
  if (version == 0) {
    // PKCS#7: always 1 to 16 bytes, each the pad length.
    const std::size_t more = kBlock - plain.size() % kBlock;
    padded.reserve(plain.size() + more);
    padded.append(plain);
    padded.append(more, static_cast<char>(more));
    src = padded;
  }
  const std::size_t start = out.size();
  out.resize(start + 1 + kNonceSize + src.size() + kTagSize);
  auto* p = reinterpret_cast<unsigned char*>(out.data() + start);
  p[0] = version;
  std::copy(nonce, nonce + kNonceSize, p + 1);
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, u8(key), nonce) == 1;
  if (ok && !aad.empty()) ok = EVP_EncryptUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) == 1;
  if (ok) ok = EVP_EncryptUpdate(ctx.get(), p + 1 + kNonceSize, &len, u8(src), static_cast<int>(src.size())) == 1;
  if (ok) ok = EVP_EncryptFinal_ex(ctx.get(), p + 1 + kNonceSize + len, &fin) == 1;
  if (ok) ok = EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, p + 1 + kNonceSize + src.size()) == 1;
  if (!ok) {
    out.resize(start);
    return Error(errc::malformed, "AES-GCM encryption failed");
  }
  return {};
}

Result<std::string> decryptPayload(const std::vector<std::string>& keys, std::string_view envelope,
                                   std::string_view aad) {
  if (envelope.empty()) return Error(errc::decrypt_failed, "cannot decrypt an empty payload");
  const auto version = static_cast<std::uint8_t>(envelope[0]);
  if (version > 1) return Error(errc::decrypt_failed, "unsupported encryption version " + std::to_string(version));
  if (envelope.size() < encryptedLength(version, 0)) {
    return Error(errc::decrypt_failed, "payload is too small to decrypt");
  }
  const std::string_view nonce = envelope.substr(1, kNonceSize);
  const std::string_view sealed = envelope.substr(1 + kNonceSize);
  for (const auto& key : keys) {
    auto plain = open(key, nonce, sealed, aad);
    if (!plain) continue;
    if (version == 0) {
      // Strip PKCS#7; a bad pad from a key that happened to authenticate is still refused.
      if (plain->empty()) return Error(errc::decrypt_failed, "empty padded payload");
      const auto pad = static_cast<std::uint8_t>(plain->back());
      if (pad == 0 || pad > kBlock || pad > plain->size()) return Error(errc::decrypt_failed, "bad padding");
      plain->resize(plain->size() - pad);
    }
    return plain;
  }
  return Error(errc::decrypt_failed, "no installed keys could decrypt the message");
}

Result<void> Keyring::validateKey(std::string_view key) {
  if (!cipherFor(key.size())) {
    return Error(errc::bad_key, "key size must be 16, 24 or 32 bytes (got " + std::to_string(key.size()) + ")");
  }
  return {};
}

Result<Keyring> Keyring::create(std::vector<std::string> keys) {
  Keyring k;
  for (auto& key : keys) {
    if (auto r = k.addKey(std::move(key)); !r) return r.error();
  }
  return k;
}

Result<void> Keyring::addKey(std::string key) {
  if (auto r = validateKey(key); !r) return r;
  if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) keys_.push_back(std::move(key));
  return {};
}

Result<void> Keyring::useKey(std::string_view key) {
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) return Error(errc::bad_key, "Requested key is not in the keyring");
  std::rotate(keys_.begin(), it, it + 1);
  return {};
}

Result<void> Keyring::removeKey(std::string_view key) {
  if (!keys_.empty() && keys_.front() == key) return Error(errc::bad_key, "Removing the primary key is not allowed");
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it != keys_.end()) keys_.erase(it);
  return {};
}

std::string base64Encode(std::string_view in) { return mesh::base64Encode(in); }

Result<std::string> base64Decode(std::string_view in) {
  // Keys: empty is not a key, and a bad one says so with the keyring's own code.
  auto r = in.empty() ? Result<std::string>(Error(errc::bad_key)) : mesh::base64Decode(in);
  if (!r) return Error(errc::bad_key, "not valid base64");
  return r;
}

}  // namespace mesh::gossip
