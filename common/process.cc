#include "common/process.h"

#include <dirent.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/metrics.h"

namespace mesh::process {

std::optional<std::uint64_t> residentBytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return std::nullopt;
  char line[256];
  std::optional<std::uint64_t> out;
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long kb = 0;
    if (std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
      out = static_cast<std::uint64_t>(kb) * 1024;
      break;
    }
  }
  std::fclose(f);
  return out;
}

double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

std::optional<std::uint64_t> openFds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return std::nullopt;
  std::uint64_t n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;  // minus the descriptor of the directory we are reading
}

double startTimeSeconds() {
  static const double start =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return start;
}

}  // namespace mesh::process

namespace mesh::metrics {

void registerProcessMetrics(Registry& registry) {
  process::startTimeSeconds();
  registry.gaugeFn("process_resident_memory_bytes", "Resident memory size in bytes.", {},
                   [] { return static_cast<double>(process::residentBytes().value_or(0)); });
  registry.counterFn("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                     {}, [] { return process::cpuSeconds(); });
  registry.gaugeFn("process_open_fds", "Number of open file descriptors.", {},
                   [] { return static_cast<double>(process::openFds().value_or(0)); });
  registry.gaugeFn("process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.", {},
                   [] { return process::startTimeSeconds(); });
}

}  // namespace mesh::metrics
