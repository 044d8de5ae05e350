#pragma once
// The Prober meshd uses: real HTTP/1.1 GETs, TCP connects and commands, on the control thread's
// io_context, each bounded by the check's timeout.
//
// HTTP: a status within the check's range passes, 429 is a warning (the service asks for less
// traffic), anything else or no answer in time is critical. TCP: a completed connect passes.
// exec: exit 0 passes, 1 is a warning, anything else critical (Consul's and Nagios' rule).
// gRPC: the standard health service over h2c (grpc_probe.h): SERVING passes.

#include <memory>

#include "node/health/check.h"

namespace boost::asio {
class io_context;
}

namespace mesh::health {

class AsioProber final : public Prober {
 public:
  explicit AsioProber(boost::asio::io_context& io);
  ~AsioProber() override;
  void probe(const CheckDef& def, std::function<void(ProbeResult)> done) override;

 private:
  boost::asio::io_context& io_;
};

}  // namespace mesh::health
