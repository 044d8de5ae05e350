// Figures for the shared HTTP/1.1 pieces: request parsing (picohttpparser plus our smuggling
// checks) and metrics rendering. Prints; asserts nothing. Run on a Release build (make bench).

#include <chrono>
#include <cstdio>
#include <string>

#include "common/http/request_parser.h"
#include "common/metrics.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double nsPerOp(std::size_t iterations, F&& f) {
  for (std::size_t i = 0; i < iterations / 10; ++i) f();  // warm up
  auto start = Clock::now();
  for (std::size_t i = 0; i < iterations; ++i) f();
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / iterations;
}

}  // namespace

int main() {
  using namespace mesh;
  const std::string req =
      "GET /api/v1/reviews/1234?color=blue HTTP/1.1\r\nHost: reviews\r\nUser-Agent: curl/7.88\r\n"
      "Accept: */*\r\nx-request-id: 5f1b7c2e-9d3a-4c8b-a1e2-3f4d5c6b7a89\r\n"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
  http::RequestLimits limits;
  std::size_t sink = 0;
  double parse = nsPerOp(1'000'000, [&] {
    auto p = http::parseRequest(req, limits);
    sink += p.consumed;
  });
  std::printf("http_request_parse  %8.0f ns/request  %10.0f requests/s/core  (%zu bytes, 6 headers)\n",
              parse, 1e9 / parse, req.size());

  metrics::Registry r;
  for (int i = 0; i < 50; ++i) {
    r.counter("mesh_bench_requests_total", "x", {{"service", "svc" + std::to_string(i)}, {"code", "200"}}).inc(i);
    r.histogram("mesh_bench_latency_seconds", "x", metrics::latencyBuckets(),
                {{"service", "svc" + std::to_string(i)}}).observe(0.001 * i);
  }
  std::size_t bytes = 0;
  double render = nsPerOp(2'000, [&] { bytes = r.render().size(); });
  std::printf("metrics_render      %8.0f us/scrape    (100 series, %zu bytes)\n", render / 1000, bytes);
  auto& c = r.counter("mesh_bench_hot_total", "x");
  double inc = nsPerOp(50'000'000, [&] { c.inc(); });
  std::printf("metrics_counter_inc %8.2f ns/op\n", inc);
  return sink == 0 ? 1 : 0;
}
