#include "node/identity/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/errc.h"
#include "node/identity/openssl_error.h"

namespace mesh::identity {

namespace {

// Our chain, key and roots into one context.
Result<void> load(SSL_CTX* ctx, const NodeIdentity& id) {
  std::unique_ptr<BIO, decltype(&BIO_free)> chain(BIO_new_mem_buf(id.chainPem.data(), static_cast<int>(id.chainPem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> leaf(PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr), X509_free);
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) return Error(errc::invalid_argument, "certificate: " + sslError());
  // The intermediates follow the leaf; the peer needs them to reach the root.
  while (X509* c = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, c) != 1) {
      X509_free(c);
      return Error(errc::invalid_argument, "chain certificate: " + sslError());
    }
  }
  ERR_clear_error();
  std::unique_ptr<BIO, decltype(&BIO_free)> keyBio(BIO_new_mem_buf(id.keyPem.data(), static_cast<int>(id.keyPem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!key || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return Error(errc::invalid_argument, "key: " + sslError());
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> rootBio(BIO_new_mem_buf(id.rootsPem.data(), static_cast<int>(id.rootsPem.size())), BIO_free);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int roots = 0;
  while (X509* c = PEM_read_bio_X509(rootBio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, c);
    X509_free(c);
    ++roots;
  }
  ERR_clear_error();
  if (roots == 0) return Error(errc::invalid_argument, "no root certificate in the trust bundle");
  return {};
}

}  // namespace

Result<std::shared_ptr<MeshTls>> MeshTls::create(const NodeIdentity& id) {
  std::shared_ptr<MeshTls> t(new MeshTls());
  t->trustDomain_ = id.trustDomain;
  for (bool server : {true, false}) {
    SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) return Error(errc::io_error, "SSL_CTX_new: " + sslError());
    (server ? t->server_ : t->client_) = ctx;
    // TLS 1.3 only between proxies: both ends are ours.
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (auto l = load(ctx, id); !l) return Error(l.error().code, std::string(server ? "server" : "client") + " TLS context: " + l.error().message());
    // Both sides verify the other's chain to our roots; a client without a certificate is
    // refused in the handshake.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
    SSL_CTX_set_verify_depth(ctx, 4);
  }
  return t;
}

MeshTls::~MeshTls() {
  SSL_CTX_free(server_);
  SSL_CTX_free(client_);
}

Result<std::string> MeshTls::peerIdentity(SSL* ssl) const {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (!peer) return Error(errc::invalid_argument, "the peer presented no certificate");
  if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
    return Error(errc::invalid_argument, std::string("peer certificate: ") + X509_verify_cert_error_string(v));
  }
  unsigned char* buf = nullptr;
  const int n = i2d_X509(peer, &buf);
  if (n <= 0) return Error(errc::malformed, "peer certificate: " + sslError());
  std::string der(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
  OPENSSL_free(buf);
  auto id = spiffeIdOf(der);
  if (!id) return Error(id.error().code, "peer certificate: " + id.error().message());
  if (id->rfind("spiffe://" + trustDomain_ + "/", 0) != 0) {
    return Error(errc::invalid_argument, "peer certificate: " + *id + " is not in trust domain " + trustDomain_);
  }
  return id;
}

}  // namespace mesh::identity
