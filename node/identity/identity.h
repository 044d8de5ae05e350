#pragma once
// Mesh identity (issue 7, first part): a root CA per trust domain, node certificates carrying a
// SPIFFE ID, and the checks a proxy makes on its own certificate at start and on a peer's during
// the handshake. ECDSA P-256 keys and SHA-256 signatures throughout (what every TLS 1.3 stack
// takes).
//
// Files (PEM):
//   meshcli ca init --trust-domain D --out CA   CA/ca.crt (root, self-signed, URI SAN spiffe://D),
//                                               CA/ca.key (0600)
//   meshcli cert issue --ca CA --node N --out T T/node.crt (the node's certificate, URI SAN
//                                               spiffe://D/node/N, then its intermediate),
//                                               T/node.key (0600), T/ca.crt (the root),
//                                               T/node-ca.crt and T/node-ca.key (0600): the node's
//                                               intermediate CA (path length 0, name-constrained
//                                               to spiffe://D), to mint workload certificates
//   meshd --tls-dir T                           loads and checks T at start
//
// Every function takes `now` (Unix seconds): validity is checked against it, never the clock.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mesh::identity {

// A SPIFFE trust domain: lower-case letters, digits, '.', '-' and '_', 1-255 characters.
bool validTrustDomain(std::string_view s);
// A node name as it goes into a SPIFFE path segment: letters, digits, '.', '-' and '_'.
bool validNodeName(std::string_view s);
std::string nodeSpiffeId(std::string_view trustDomain, std::string_view node);

struct CertInfo {
  std::string subject;
  std::string spiffeId;  // the URI SAN ("" when none)
  std::int64_t notBefore = 0, notAfter = 0;
  bool isCa = false;
};

Result<CertInfo> initCa(const std::string& trustDomain, const std::string& dir, int days, std::int64_t now);
Result<CertInfo> issueNode(const std::string& caDir, const std::string& node, const std::string& outDir, int days,
                           std::int64_t now);

struct NodeIdentity {
  std::string trustDomain;
  std::string spiffeId;
  std::int64_t notAfter = 0;
  std::string chainPem;  // node.crt: the node's certificate and its intermediate
  std::string keyPem;
  std::string rootsPem;  // ca.crt
};

// meshd --tls-dir: the files are there, the key is private and matches the certificate, the
// chain verifies to the root at `now`, and the certificate's SPIFFE ID is in the root's trust
// domain. Errors name the file and what is wrong.
Result<NodeIdentity> loadTlsDir(const std::string& dir, std::int64_t now);

// A peer's certificate chain (DER, the peer's own first) against our roots at `now`: it must
// verify, carry exactly one spiffe:// URI SAN, and be in `trustDomain`. Returns the SPIFFE ID.
Result<std::string> verifyPeer(const std::vector<std::string>& derChain, const std::string& rootsPem,
                               const std::string& trustDomain, std::int64_t now);

// The one spiffe:// URI SAN of a certificate (DER); an error when it has none or several.
Result<std::string> spiffeIdOf(const std::string& der);

// Certificates of a PEM bundle as DER (for verifyPeer and tests).
Result<std::vector<std::string>> pemToDer(const std::string& pem);

}  // namespace mesh::identity
