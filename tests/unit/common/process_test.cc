#include "common/process.h"

#include <gtest/gtest.h>

#include <csignal>
#include <atomic>
#include <chrono>
#include <thread>

#include "common/metrics.h"
#include "common/signals.h"

namespace mesh {
namespace {

TEST(Process, ReadsItsOwnFigures) {
  auto rss = process::residentBytes();
  ASSERT_TRUE(rss.has_value());
  EXPECT_GT(*rss, 100u * 1024);
  EXPECT_GE(process::cpuSeconds(), 0.0);
  auto fds = process::openFds();
  ASSERT_TRUE(fds.has_value());
  EXPECT_GE(*fds, 3u);  // stdin, stdout, stderr at least
  EXPECT_GT(process::startTimeSeconds(), 1.7e9);
}

TEST(Process, MetricsUseStandardNames) {
  metrics::Registry r;
  metrics::registerProcessMetrics(r);
  std::string out = r.render();
  for (const char* name : {"process_resident_memory_bytes ", "process_cpu_seconds_total ",
                           "process_open_fds ", "process_start_time_seconds "}) {
    EXPECT_NE(out.find(std::string("\n") + name), std::string::npos) << name;
  }
}

TEST(Signals, StopSignalReachesTheWatcherThreadNotTheProcess) {
  signals::blockStopSignals();
  std::atomic<int> got{0};
  {
    signals::StopSignalWatcher watcher([&](int sig) { got = sig; });
    ::kill(::getpid(), SIGTERM);  // would end the process if it were not blocked and watched
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (got == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  EXPECT_EQ(got.load(), SIGTERM);
}

}  // namespace
}  // namespace mesh
