#include "node/identity/identity.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "common/errc.h"
#include "node/identity/openssl_error.h"
#include "common/files.h"

namespace mesh::identity {

namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const { Free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO_free>>;
using Bn = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
struct CertStackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }  // a macro: no function to point at
};
using CertStack = std::unique_ptr<STACK_OF(X509), CertStackFree>;
using Names = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;


Result<Pkey> newKey() {
  Pkey k(EVP_EC_gen("P-256"));
  if (!k) return Error(errc::io_error, "P-256 key generation failed: " + sslError());
  return k;
}

std::string pemOf(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), c);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string pemOf(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Result<std::vector<Cert>> readCerts(const std::string& pem, const std::string& what) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<Cert> out;
  while (X509* c = PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)) out.emplace_back(c);
  ERR_clear_error();  // the end of the bundle reads as an error
  if (out.empty()) return Error(errc::malformed, what + ": no PEM certificate in it");
  return out;
}

Result<Pkey> readKey(const std::string& pem, const std::string& what) {
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Pkey k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
  if (!k) return Error(errc::malformed, what + ": not a PEM private key: " + sslError());
  return k;
}

struct Ext {
  int nid;
  std::string value;
};

Result<Cert> makeCert(EVP_PKEY* subjectKey, const std::string& org, const std::string& cn, X509* issuer, EVP_PKEY* issuerKey,
                      const std::vector<Ext>& exts, std::int64_t notBefore, std::int64_t notAfter) {
  Cert x(X509_new());
  if (!x || X509_set_version(x.get(), X509_VERSION_3) != 1) return Error(errc::io_error, "X509_new: " + sslError());
  // A random 127-bit serial (positive, as RFC 5280 wants).
  Bn serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x.get()))) {
    return Error(errc::io_error, "serial number: " + sslError());
  }
  ASN1_TIME_set(X509_getm_notBefore(x.get()), static_cast<time_t>(notBefore));
  ASN1_TIME_set(X509_getm_notAfter(x.get()), static_cast<time_t>(notAfter));
  X509_set_pubkey(x.get(), subjectKey);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  for (const auto& e : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, e.nid, e.value.c_str());
    if (!ext) return Error(errc::invalid_argument, "extension " + e.value + ": " + sslError());
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), issuerKey, EVP_sha256()) == 0) return Error(errc::io_error, "signing the certificate: " + sslError());
  return x;
}

// The spiffe:// URI SANs of a certificate.
std::vector<std::string> spiffeIds(X509* c) {
  std::vector<std::string> out;
  Names names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names.get(), i);
    if (g->type != GEN_URI) continue;
    const ASN1_STRING* s = g->d.uniformResourceIdentifier;
    std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s)));
    if (uri.rfind("spiffe://", 0) == 0) out.push_back(uri);
  }
  return out;
}

std::int64_t unixOf(const ASN1_TIME* t) {
  struct tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

CertInfo infoOf(X509* c) {
  CertInfo i;
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(c), buf, sizeof buf);
  i.subject = buf;
  auto ids = spiffeIds(c);
  if (!ids.empty()) i.spiffeId = ids.front();
  i.notBefore = unixOf(X509_get0_notBefore(c));
  i.notAfter = unixOf(X509_get0_notAfter(c));
  i.isCa = X509_check_ca(c) != 0;
  return i;
}

std::string trustDomainOf(const std::string& spiffeId) {
  std::string rest = spiffeId.substr(std::string_view("spiffe://").size());
  return rest.substr(0, rest.find('/'));
}

// Verifies chain[0] through chain[1..] to one of roots at `now`.
Result<void> verifyChain(const std::vector<Cert>& chain, const std::vector<Cert>& roots, std::int64_t now) {
  Store store(X509_STORE_new());
  for (const auto& r : roots) X509_STORE_add_cert(store.get(), r.get());
  CertStack untrusted(sk_X509_new_null());
  for (std::size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());
  StoreCtx ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted.get()) != 1) {
    return Error(errc::io_error, "X509_STORE_CTX_init: " + sslError());
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), static_cast<time_t>(now));
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return Error(errc::invalid_argument, X509_verify_cert_error_string(err));
  }
  return {};
}

Result<void> makeDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(errc::io_error, dir + ": cannot create: " + ec.message());
  ::chmod(dir.c_str(), 0700);
  return {};
}

}  // namespace

std::string sslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool validTrustDomain(std::string_view s) {
  if (s.empty() || s.size() > 255) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
  });
}

bool validNodeName(std::string_view s) {
  if (s.empty() || s.size() > 128 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
  });
}

std::string nodeSpiffeId(std::string_view trustDomain, std::string_view node) {
  return "spiffe://" + std::string(trustDomain) + "/node/" + std::string(node);
}

Result<CertInfo> initCa(const std::string& trustDomain, const std::string& dir, int days, std::int64_t now) {
  if (!validTrustDomain(trustDomain)) {
    return Error(errc::invalid_argument, "'" + trustDomain + "' is not a trust domain (lower-case letters, digits, '.', '-', '_')");
  }
  if (days <= 0 || days > 36500) return Error(errc::invalid_argument, "days must be 1 to 36500");
  if (auto d = makeDir(dir); !d) return d.error();
  auto key = newKey();
  if (!key) return key.error();
  auto root = makeCert(key->get(), trustDomain, "mesh root CA " + trustDomain, nullptr, key->get(),
                       {{NID_basic_constraints, "critical,CA:TRUE"},
                        {NID_key_usage, "critical,keyCertSign,cRLSign"},
                        {NID_subject_key_identifier, "hash"},
                        {NID_subject_alt_name, "URI:spiffe://" + trustDomain}},
                       now - 300, now + std::int64_t{days} * 86400);
  if (!root) return root.error();
  // The key first: a root without its key is useless, a key without its root is harmless.
  if (auto w = files::createNew(dir + "/ca.key", pemOf(key->get()), 0600); !w) return w.error();
  if (auto w = files::createNew(dir + "/ca.crt", pemOf(root->get()), 0644); !w) return w.error();
  return infoOf(root->get());
}

Result<CertInfo> issueNode(const std::string& caDir, const std::string& node, const std::string& outDir, int days,
                           std::int64_t now) {
  if (!validNodeName(node)) return Error(errc::invalid_argument, "'" + node + "' is not a node name (letters, digits, '.', '-', '_')");
  if (days <= 0 || days > 3650) return Error(errc::invalid_argument, "days must be 1 to 3650");
  auto rootPem = files::read(caDir + "/ca.crt");
  if (!rootPem) return rootPem.error();
  auto roots = readCerts(*rootPem, caDir + "/ca.crt");
  if (!roots) return roots.error();
  auto keyPem = files::readPrivate(caDir + "/ca.key");
  if (!keyPem) return keyPem.error();
  auto caKey = readKey(*keyPem, caDir + "/ca.key");
  if (!caKey) return caKey.error();
  X509* root = roots->front().get();
  if (X509_check_private_key(root, caKey->get()) != 1) {
    ERR_clear_error();
    return Error(errc::invalid_argument, caDir + "/ca.key does not belong to " + caDir + "/ca.crt");
  }
  auto ids = spiffeIds(root);
  if (ids.size() != 1) return Error(errc::invalid_argument, caDir + "/ca.crt names no trust domain (spiffe:// URI SAN): not made by meshcli ca init");
  const std::string td = trustDomainOf(ids.front());
  const std::string id = nodeSpiffeId(td, node);
  const std::int64_t rootEnd = unixOf(X509_get0_notAfter(root));
  const std::int64_t end = std::min(now + std::int64_t{days} * 86400, rootEnd);
  if (end <= now) return Error(errc::invalid_argument, caDir + "/ca.crt has expired");
  if (auto d = makeDir(outDir); !d) return d.error();

  auto interKey = newKey();
  if (!interKey) return interKey.error();
  auto inter = makeCert(interKey->get(), td, "mesh node CA " + node, root, caKey->get(),
                        {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"},
                         {NID_authority_key_identifier, "keyid:always"},
                         // It mints workload certificates of this trust domain only.
                         {NID_name_constraints, "critical,permitted;URI:" + td},
                         {NID_subject_alt_name, "URI:" + id}},
                        now - 300, end);
  if (!inter) return inter.error();
  auto leafKey = newKey();
  if (!leafKey) return leafKey.error();
  auto leaf = makeCert(leafKey->get(), td, node, inter->get(), interKey->get(),
                       {{NID_basic_constraints, "critical,CA:FALSE"},
                        {NID_key_usage, "critical,digitalSignature"},
                        {NID_ext_key_usage, "serverAuth,clientAuth"},
                        {NID_subject_key_identifier, "hash"},
                        {NID_authority_key_identifier, "keyid:always"},
                        {NID_subject_alt_name, "URI:" + id}},
                       now - 300, end);
  if (!leaf) return leaf.error();
  // All or nothing: refuse before writing anything when any of the files is there already.
  for (const char* name : {"node.key", "node-ca.key", "node.crt", "node-ca.crt", "ca.crt"}) {
    if (std::filesystem::exists(outDir + "/" + name)) {
      return Error(errc::already_exists, outDir + "/" + name + " exists: remove the old files first (keys are never overwritten)");
    }
  }
  for (const auto& [name, text, mode] : std::vector<std::tuple<std::string, std::string, unsigned>>{
           {"node.key", pemOf(leafKey->get()), 0600},
           {"node-ca.key", pemOf(interKey->get()), 0600},
           {"node.crt", pemOf(leaf->get()) + pemOf(inter->get()), 0644},
           {"node-ca.crt", pemOf(inter->get()), 0644},
           {"ca.crt", *rootPem, 0644}}) {
    if (auto w = files::createNew(outDir + "/" + name, text, mode); !w) return w.error();
  }
  return infoOf(leaf->get());
}

Result<NodeIdentity> loadTlsDir(const std::string& dir, std::int64_t now) {
  NodeIdentity out;
  auto chainPem = files::read(dir + "/node.crt");
  if (!chainPem) return chainPem.error();
  auto keyPem = files::readPrivate(dir + "/node.key");
  if (!keyPem) return keyPem.error();
  auto rootsPem = files::read(dir + "/ca.crt");
  if (!rootsPem) return rootsPem.error();
  auto chain = readCerts(*chainPem, dir + "/node.crt");
  if (!chain) return chain.error();
  auto roots = readCerts(*rootsPem, dir + "/ca.crt");
  if (!roots) return roots.error();
  auto key = readKey(*keyPem, dir + "/node.key");
  if (!key) return key.error();
  if (X509_check_private_key(chain->front().get(), key->get()) != 1) {
    ERR_clear_error();
    return Error(errc::invalid_argument, dir + "/node.key does not belong to the certificate in " + dir + "/node.crt");
  }
  if (auto v = verifyChain(*chain, *roots, now); !v) {
    return Error(errc::invalid_argument, dir + "/node.crt does not verify against " + dir + "/ca.crt: " + v.error().message());
  }
  auto rootIds = spiffeIds(roots->front().get());
  if (rootIds.size() != 1) return Error(errc::invalid_argument, dir + "/ca.crt names no trust domain (spiffe:// URI SAN)");
  out.trustDomain = trustDomainOf(rootIds.front());
  auto ids = spiffeIds(chain->front().get());
  if (ids.size() != 1) return Error(errc::invalid_argument, dir + "/node.crt: the certificate needs exactly one spiffe:// URI SAN");
  if (ids.front().rfind("spiffe://" + out.trustDomain + "/", 0) != 0) {
    return Error(errc::invalid_argument, dir + "/node.crt: " + ids.front() + " is not in trust domain " + out.trustDomain);
  }
  out.spiffeId = ids.front();
  out.notAfter = unixOf(X509_get0_notAfter(chain->front().get()));
  out.chainPem = std::move(*chainPem);
  out.keyPem = std::move(*keyPem);
  out.rootsPem = std::move(*rootsPem);
  return out;
}

Result<std::string> spiffeIdOf(const std::string& der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  Cert c(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!c) {
    ERR_clear_error();
    return Error(errc::malformed, "a certificate that does not parse");
  }
  auto ids = spiffeIds(c.get());
  if (ids.size() != 1) return Error(errc::invalid_argument, "the certificate needs exactly one spiffe:// URI SAN");
  return ids.front();
}

Result<std::vector<std::string>> pemToDer(const std::string& pem) {
  auto certs = readCerts(pem, "PEM bundle");
  if (!certs) return certs.error();
  std::vector<std::string> out;
  for (const auto& c : *certs) {
    unsigned char* buf = nullptr;
    const int n = i2d_X509(c.get(), &buf);
    if (n <= 0) return Error(errc::malformed, "i2d_X509: " + sslError());
    out.emplace_back(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
    OPENSSL_free(buf);
  }
  return out;
}

Result<std::string> verifyPeer(const std::vector<std::string>& derChain, const std::string& rootsPem,
                               const std::string& trustDomain, std::int64_t now) {
  if (derChain.empty()) return Error(errc::invalid_argument, "the peer sent no certificate");
  if (derChain.size() > 8) return Error(errc::invalid_argument, "the peer's chain is longer than 8 certificates");
  std::vector<Cert> chain;
  for (const auto& der : derChain) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    Cert c(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (!c || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
      ERR_clear_error();
      return Error(errc::malformed, "the peer sent a certificate that does not parse");
    }
    chain.push_back(std::move(c));
  }
  auto roots = readCerts(rootsPem, "trust bundle");
  if (!roots) return roots.error();
  if (auto v = verifyChain(chain, *roots, now); !v) return Error(v.error().code, "peer certificate: " + v.error().message());
  auto ids = spiffeIds(chain.front().get());
  if (ids.size() != 1) return Error(errc::invalid_argument, "peer certificate: needs exactly one spiffe:// URI SAN");
  if (trustDomainOf(ids.front()) != trustDomain) {
    return Error(errc::invalid_argument, "peer certificate: " + ids.front() + " is not in trust domain " + trustDomain);
  }
  return ids.front();
}

}  // namespace mesh::identity
