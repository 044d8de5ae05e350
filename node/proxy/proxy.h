#pragma once
// The data plane (issue 7): N workers, each its own event loop with its own SO_REUSEPORT
// listeners, connection pools and load-balancer state, so nothing is shared on the request
// path. The control thread compiles snapshots (snapshot.h) and publishes them by atomic swap;
// each worker notices the new version at its next request.
//
// Listeners: outbound (plain HTTP/1.1 from local apps, the service named by Host; TCP
// redirected by iptables, found by SO_ORIGINAL_DST) and inbound (mTLS only, TLS 1.3; the
// instance named by SNI; HTTP/1.1 relayed to the local app, TCP spliced).
//
// Thread rules: start(), publish(), drain() and stop() from the control thread.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/net_address.h"
#include "common/result.h"
#include "node/proxy/http1.h"
#include "node/proxy/phases.h"
#include "node/proxy/snapshot.h"

namespace mesh::metrics {
class Registry;
}
namespace mesh::identity {
class MeshTls;
}

namespace mesh::proxy {

struct ProxyOptions {
  HostPort outbound{"127.0.0.1", 15001, false, true};
  HostPort inbound{"0.0.0.0", 15006, false, true};
  int workers = 0;  // 0: one per core
  h1::Limits limits;
  std::chrono::milliseconds connectTimeout{2000};        // TCP connect plus TLS handshake upstream
  std::chrono::milliseconds handshakeTimeout{5000};      // inbound TLS handshake
  std::chrono::milliseconds requestHeadTimeout{10'000};  // from the first byte of a head to its end
  std::chrono::milliseconds idleTimeout{60'000};         // a keep-alive connection with no request
  std::chrono::milliseconds upstreamTimeout{30'000};     // request sent until the response head
  std::chrono::milliseconds bodyTimeout{60'000};         // between two reads of a body
  std::chrono::milliseconds poolIdleTimeout{30'000};     // an idle upstream connection is closed after
  std::size_t maxIdlePerEndpoint = 64;                   // idle upstream connections kept, per worker
  int connectAttempts = 3;                               // endpoints tried when connects fail
  // HTTP/1.1 requests to HTTP services go to peers over HTTP/2 (multiplexed), as those to
  // http2/grpc services always do; false: over HTTP/1.1 (a pooled connection per request).
  bool http2Upstream = true;
  // JSON access log lines ("" off, "stdout", "stderr" or a file path).
  std::string accessLog;
  // TLS origination to external hosts: the CA file their certificates are verified against
  // ("": the system's default paths).
  std::string egressCaFile;
};

class Proxy {
 public:
  // Binds both listeners on every worker and starts the workers. tls: required (the inbound
  // listener is mTLS only and the outbound side presents this node's certificate).
  static Result<std::unique_ptr<Proxy>> start(ProxyOptions options, std::shared_ptr<const identity::MeshTls> tls,
                                              std::shared_ptr<const Snapshot> initial,
                                              std::vector<std::shared_ptr<Filter>> filters,
                                              metrics::Registry& registry);
  ~Proxy();  // stop()
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  void publish(std::shared_ptr<const Snapshot> snapshot);
  std::shared_ptr<const Snapshot> snapshot() const;

  // Graceful drain (SIGTERM): the listeners close; idle connections close; each busy one
  // finishes its current request, answers with Connection: close and closes. Returns at once;
  // openConnections() tells when it is over.
  void beginDrain();
  // beginDrain(), then waits (blocking) until every connection closed or `timeout`, then stop().
  void drain(std::chrono::milliseconds timeout);
  void stop();

  HostPort outboundAddress() const;  // as bound (port 0 resolved)
  HostPort inboundAddress() const;
  std::size_t openConnections() const;

 private:
  Proxy() = default;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace mesh::proxy
