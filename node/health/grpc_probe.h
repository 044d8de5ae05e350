#pragma once
// The gRPC health check (grpc.health.v1.Health/Check) over h2c with nghttp2: SERVING passes;
// NOT_SERVING, SERVICE_UNKNOWN, a gRPC error status, no answer in time, or no HTTP/2 server is
// critical. The check's target is HOST:PORT, or HOST:PORT/SERVICE to ask about one service.

#include <functional>

#include "node/health/check.h"

namespace boost::asio {
class io_context;
}

namespace mesh::health {

void grpcProbe(boost::asio::io_context& io, const CheckDef& def, std::function<void(ProbeResult)> done);

// The protobuf and gRPC framing the check speaks (exposed for tests and the test server).
std::string grpcHealthRequest(const std::string& service);           // a whole gRPC message frame
// The ServingStatus of a HealthCheckResponse frame (1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN).
Result<int> grpcHealthStatus(std::string_view frame);
std::string grpcHealthResponse(int status);                           // a whole gRPC message frame

}  // namespace mesh::health
