#pragma once
// TLS between proxies (issue 7): OpenSSL contexts built from the node's identity. TLS 1.3 only;
// both sides present their certificate chain and verify the other's against the trust domain's
// root; the peer's SPIFFE ID must be in our trust domain (there is no host name to check: the
// SPIFFE ID is the name). A peer without a valid certificate never completes a handshake.
//
// For .cc files that drive handshakes (the proxy's listeners and pools): it exposes SSL_CTX.

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "common/result.h"
#include "node/identity/identity.h"

namespace mesh::identity {

class MeshTls {
 public:
  // Contexts for both directions; errors name what OpenSSL refused.
  static Result<std::shared_ptr<MeshTls>> create(const NodeIdentity& id);
  ~MeshTls();
  MeshTls(const MeshTls&) = delete;
  MeshTls& operator=(const MeshTls&) = delete;

  SSL_CTX* server() const { return server_; }  // inbound: requires a client certificate
  SSL_CTX* client() const { return client_; }  // outbound: presents ours, checks theirs
  const std::string& trustDomain() const { return trustDomain_; }

  // After a completed handshake: the peer's SPIFFE ID (its chain verified by OpenSSL during
  // the handshake, its SPIFFE ID checked against our trust domain here).
  Result<std::string> peerIdentity(SSL* ssl) const;

 private:
  MeshTls() = default;
  SSL_CTX* server_ = nullptr;
  SSL_CTX* client_ = nullptr;
  std::string trustDomain_;
};

}  // namespace mesh::identity
