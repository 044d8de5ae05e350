#pragma once
// What a process knows about itself, read from /proc (Linux): for /metrics.

#include <cstdint>
#include <optional>

namespace mesh::process {

// Resident set size in bytes (VmRSS of /proc/self/status).
std::optional<std::uint64_t> residentBytes();
// User plus system CPU time in seconds (getrusage).
double cpuSeconds();
// Number of open file descriptors (entries of /proc/self/fd).
std::optional<std::uint64_t> openFds();
// Unix time at which the process started, in seconds (taken when first called: call it early).
double startTimeSeconds();

}  // namespace mesh::process

namespace mesh::metrics {
class Registry;
// Registers process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds and
// process_start_time_seconds, the names Prometheus' own clients use, so that stock dashboards work.
void registerProcessMetrics(Registry& registry);
}  // namespace mesh::metrics
